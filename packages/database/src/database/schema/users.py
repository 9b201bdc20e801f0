"""Users' own data, Supabase style: profiles (keyed by auth.users.id) and watchlists."""

import re
import uuid
import zoneinfo
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

import sqlalchemy as sa
from pydantic import BaseModel, BeforeValidator, ConfigDict, field_validator, model_validator
from pydantic import Field as PydanticField
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from database.schema.base import (
    AccessClass,
    IdMixin,
    Page,
    TimestampsMixin,
    access_info,
    check,
    enum_check,
)
from database.schema.types import ADDRESS_PATTERN

_TEXT: Any = sa.Text
USERNAME_PATTERN = "^[a-z0-9_]{3,32}$"


class NotificationDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    in_app: bool = True
    webhook: bool = False
    # Default cooldown for new alert rules, seconds.
    cooldown_seconds: int = PydanticField(default=300, ge=0, le=2_592_000)


class Preferences(BaseModel):
    """profiles.preferences: unknown keys are rejected so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = "UTC"
    notifications: NotificationDefaults = PydanticField(default_factory=NotificationDefaults)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone such as 'Europe/Berlin'") from None
        return value


def _username(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


Username = Annotated[
    str,
    BeforeValidator(_username),
    PydanticField(min_length=3, max_length=32, pattern=USERNAME_PATTERN),
]


# -- profiles --------------------------------------------------------------------------------


class ProfileBase(SQLModel):
    username: Username = Field(sa_type=_TEXT, unique=True)
    display_name: str | None = Field(default=None, min_length=1, max_length=100, sa_type=_TEXT)


# One row per auth user; the user reads and edits their own (RLS keyed by id).
class Profile(TimestampsMixin, ProfileBase, table=True):
    __tablename__ = "profiles"
    __table_args__ = (
        check(f"username ~ '{USERNAME_PATTERN}'", "username_format"),
        check("char_length(display_name) between 1 and 100", "display_name_length"),
        check("jsonb_typeof(preferences) = 'object'", "preferences_is_object"),
        access_info(AccessClass.USER_OWNED, owner="id"),
    )

    id: uuid.UUID = Field(primary_key=True, foreign_key="auth.users.id", ondelete="CASCADE")
    preferences: dict[str, Any] = Field(
        default_factory=dict,
        sa_type=JSONB,
        sa_column_kwargs={"server_default": sa.text("'{}'::jsonb")},
    )


class ProfileCreate(ProfileBase):
    preferences: Preferences = PydanticField(default_factory=Preferences)


class ProfileUpdate(SQLModel):
    username: Username | None = None
    display_name: str | None = Field(default=None, min_length=1, max_length=100)
    preferences: Preferences | None = None


class ProfilePublic(ProfileBase):
    id: uuid.UUID
    preferences: Preferences
    created_at: datetime
    updated_at: datetime


# -- watchlist_entries -----------------------------------------------------------------------


class WatchKind(StrEnum):
    ADDRESS = "address"
    TOKEN = "token"  # noqa: S105 - a kind of watched thing, not a secret
    POOL = "pool"


#: token / pool references are "<network>:<address>".
NETWORK_REFERENCE_PATTERN = "^[a-z0-9_-]+:[A-Za-z0-9_.-]{1,128}$"


class WatchlistEntryBase(SQLModel):
    kind: WatchKind = Field(sa_type=_TEXT)
    reference: str = Field(min_length=1, max_length=200, sa_type=_TEXT)
    label: str | None = Field(default=None, min_length=1, max_length=100, sa_type=_TEXT)

    @model_validator(mode="before")
    @classmethod
    def _normalize_reference(cls, data: Any) -> Any:
        # EVM hex is case-insensitive: lower-case it; other networks' addresses keep case.
        if isinstance(data, dict) and isinstance(data.get("reference"), str):
            network, sep, address = data["reference"].strip().partition(":")
            if not sep:
                reference = network.lower() if network.lower().startswith("0x") else network
            else:
                lowered = address.lower() if address.lower().startswith("0x") else address
                reference = f"{network.lower()}:{lowered}"
            data = {**data, "reference": reference}
        return data

    @model_validator(mode="after")
    def _reference_matches_kind(self) -> Self:
        if self.kind is WatchKind.ADDRESS:
            pattern, rule = ADDRESS_PATTERN, "an address (0x + 40 hex digits)"
        else:
            pattern, rule = NETWORK_REFERENCE_PATTERN, "'<network>:<address>'"
        if not re.fullmatch(pattern, self.reference):
            raise ValueError(f"reference must be {rule} for kind {self.kind}")
        return self


class WatchlistEntry(TimestampsMixin, WatchlistEntryBase, IdMixin, table=True):
    __tablename__ = "watchlist_entries"
    __table_args__ = (
        # Leads with user_id: the RLS policy column, and "my watchlist" reads.
        sa.UniqueConstraint("user_id", "kind", "reference"),
        enum_check("kind", WatchKind),
        check(
            f"(kind = 'address' and reference ~ '{ADDRESS_PATTERN}')"
            f" or (kind <> 'address' and reference ~ '{NETWORK_REFERENCE_PATTERN}')",
            "reference_format",
        ),
        check("char_length(label) between 1 and 100", "label_length"),
        access_info(AccessClass.USER_OWNED, owner="user_id"),
    )

    user_id: uuid.UUID = Field(foreign_key="auth.users.id", ondelete="CASCADE")


class WatchlistEntryCreate(WatchlistEntryBase):
    pass


class WatchlistEntryUpdate(SQLModel):
    label: str | None = Field(default=None, min_length=1, max_length=100)


class WatchlistEntryPublic(WatchlistEntryBase):
    id: uuid.UUID
    user_id: uuid.UUID
    created_at: datetime
    updated_at: datetime


class WatchlistEntriesPublic(Page[WatchlistEntryPublic]):
    pass
