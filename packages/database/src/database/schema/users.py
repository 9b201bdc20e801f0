"""Users' own data, Supabase style: profiles (keyed by auth.users.id) and watchlists."""

import re
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

import sqlalchemy as sa
from pydantic import Field as PydanticField
from pydantic import StrictBool, StrictInt, StrictStr, model_validator
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from database.errors import describe_pattern
from database.schema.base import (
    AccessClass,
    IdMixin,
    Page,
    TimestampsMixin,
    access_info,
    check,
    document_check,
    unset,
)
from database.schema.documents import Document
from database.schema.rules import Int, Text
from database.schema.types import ADDRESS_PATTERN

_TEXT: Any = sa.Text
USERNAME_PATTERN = describe_pattern(
    "^[a-z0-9_]{3,32}$", "must be 3-32 lower-case letters, digits or underscores"
)
TIMEZONE_PATTERN = describe_pattern(
    "^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$",
    "must be an IANA time zone name such as 'Europe/Berlin'",
)
MAX_WATCHLIST_ENTRIES = 1_000
TimeZone = Annotated[StrictStr, Text(min_length=1, max_length=64, pattern=TIMEZONE_PATTERN)]


class NotificationDefaults(Document):
    in_app: StrictBool = True
    webhook: StrictBool = False
    # Default cooldown for new alert rules, seconds.
    cooldown_seconds: Annotated[StrictInt, Int(ge=0, le=2_592_000)] = 300


class Preferences(Document):
    """profiles.preferences: unknown keys are refused, so typos do not pass silently. The time
    zone is checked for its shape (the database and Python know different zone lists)."""

    timezone: TimeZone = "UTC"
    notifications: NotificationDefaults = PydanticField(default_factory=NotificationDefaults)


Username = Annotated[
    str, Text(min_length=3, max_length=32, pattern=USERNAME_PATTERN, lower=True, strip=True)
]
DisplayName = Annotated[str, Text(min_length=1, max_length=100)]


# -- profiles --------------------------------------------------------------------------------


class ProfileBase(SQLModel):
    username: Username = Field(sa_type=_TEXT, unique=True)
    display_name: DisplayName | None = Field(default=None, sa_type=_TEXT)


# One row per auth user; the user reads and edits their own (RLS keyed by id).
class Profile(TimestampsMixin, ProfileBase, table=True):
    __tablename__ = "profiles"
    __table_args__ = (
        document_check("preferences", Preferences, name="profile_preferences"),
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
    username: Username = unset()
    display_name: DisplayName | None = unset()
    preferences: Preferences = unset()


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


Reference = Annotated[str, Text(min_length=1, max_length=200)]
Label = Annotated[str, Text(min_length=1, max_length=100)]


class WatchlistEntryBase(SQLModel):
    kind: WatchKind = Field(sa_type=_TEXT)
    reference: Reference = Field(sa_type=_TEXT)
    label: Label | None = Field(default=None, sa_type=_TEXT)

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
        check(
            f"(kind = 'address' and reference ~ '{ADDRESS_PATTERN}')"
            f" or (kind <> 'address' and reference ~ '{NETWORK_REFERENCE_PATTERN}')",
            "reference_format",
        ),
        access_info(
            AccessClass.USER_OWNED,
            owner="user_id",
            quota=MAX_WATCHLIST_ENTRIES,
            noun=("watchlist", "watchlist entries"),
        ),
    )

    user_id: uuid.UUID = Field(foreign_key="auth.users.id", ondelete="CASCADE")


class WatchlistEntryCreate(WatchlistEntryBase):
    pass


class WatchlistEntryUpdate(SQLModel):
    label: Label | None = unset()


class WatchlistEntryPublic(WatchlistEntryBase):
    id: uuid.UUID
    user_id: uuid.UUID
    created_at: datetime
    updated_at: datetime


class WatchlistEntriesPublic(Page[WatchlistEntryPublic]):
    pass
