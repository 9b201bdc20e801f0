"""Alert rules (owned by users) and the alert events they trigger (readable by their owner)."""

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

import sqlalchemy as sa
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    HttpUrl,
    field_validator,
    model_validator,
)
from pydantic import (
    Field as PydanticField,
)
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
    utc_now,
)
from database.schema.market import PatternType, Side
from database.schema.types import Address, Chain, Name, Price, Score, Symbol, Timeframe

_TEXT: Any = sa.Text
_TS: Any = sa.DateTime(timezone=True)

MAX_CONDITIONS_BYTES = 8_192
MAX_WATCHED_ADDRESSES = 100
MAX_COOLDOWN_SECONDS = 30 * 86_400


class AlertType(StrEnum):
    WHALE_TRANSACTION = "whale_transaction"
    PRICE_LEVEL = "price_level"
    LIQUIDITY_ZONE = "liquidity_zone"
    SMC_PATTERN = "smc_pattern"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


# -- conditions: one model per alert type, chosen by the `alert_type` tag --------------------


class _Conditions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WhaleTransactionConditions(_Conditions):
    alert_type: Literal[AlertType.WHALE_TRANSACTION] = AlertType.WHALE_TRANSACTION
    min_value_eth: Decimal | None = PydanticField(
        default=None, ge=0, max_digits=30, decimal_places=18
    )
    min_value_usd: Decimal | None = PydanticField(
        default=None, ge=0, max_digits=20, decimal_places=2
    )
    addresses: list[Address] = PydanticField(default_factory=list, max_length=MAX_WATCHED_ADDRESSES)
    chain: Chain | None = None
    min_whale_score: Score | None = None

    @field_validator("addresses")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        fields = (self.min_value_eth, self.min_value_usd, self.chain, self.min_whale_score)
        if not self.addresses and all(v is None for v in fields):
            raise ValueError(
                "set at least one of min_value_eth, min_value_usd, addresses, chain,"
                " min_whale_score"
            )
        return self


class PriceLevelConditions(_Conditions):
    alert_type: Literal[AlertType.PRICE_LEVEL] = AlertType.PRICE_LEVEL
    symbol: Symbol
    exchange: Name | None = None
    direction: Literal["above", "below"]
    price: Price


class LiquidityZoneConditions(_Conditions):
    alert_type: Literal[AlertType.LIQUIDITY_ZONE] = AlertType.LIQUIDITY_ZONE
    symbol: Symbol
    exchange: Name | None = None
    side: Side | None = None
    min_strength: Score | None = None


class SmcPatternConditions(_Conditions):
    alert_type: Literal[AlertType.SMC_PATTERN] = AlertType.SMC_PATTERN
    symbol: Symbol
    exchange: Name | None = None
    pattern_types: list[PatternType] = PydanticField(min_length=1, max_length=len(PatternType))
    time_frames: list[Timeframe] = PydanticField(default_factory=list, max_length=len(Timeframe))
    min_confidence: Score | None = None


AlertConditions = Annotated[
    WhaleTransactionConditions
    | PriceLevelConditions
    | LiquidityZoneConditions
    | SmcPatternConditions,
    PydanticField(discriminator="alert_type"),
]


# -- delivery channels ------------------------------------------------------------------------


class InAppChannel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["in_app"] = "in_app"


class WebhookChannel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["webhook"] = "webhook"
    url: HttpUrl

    @field_validator("url")
    @classmethod
    def _https(cls, value: HttpUrl) -> HttpUrl:
        if value.scheme != "https":
            raise ValueError("webhook url must use https")
        return value


DeliveryChannel = Annotated[InAppChannel | WebhookChannel, PydanticField(discriminator="type")]


def _in_app_only() -> list[InAppChannel | WebhookChannel]:
    return [InAppChannel()]


def _with_alert_type(data: Any) -> Any:
    """Let clients send `conditions` without repeating `alert_type` inside it."""
    if isinstance(data, dict):
        conditions = data.get("conditions")
        if (
            isinstance(conditions, dict)
            and "alert_type" not in conditions
            and data.get("alert_type")
        ):
            data = {**data, "conditions": {**conditions, "alert_type": data["alert_type"]}}
    return data


def _conditions_size(conditions: BaseModel) -> None:
    if len(conditions.model_dump_json()) > MAX_CONDITIONS_BYTES:
        raise ValueError(f"conditions must serialize to at most {MAX_CONDITIONS_BYTES} bytes")


# -- alerts ----------------------------------------------------------------------------------


class AlertBase(SQLModel):
    name: str = Field(min_length=1, max_length=100, sa_type=_TEXT)
    alert_type: AlertType = Field(sa_type=_TEXT)
    enabled: bool = Field(default=True, sa_column_kwargs={"server_default": sa.true()})
    cooldown_seconds: int = Field(
        default=300, ge=0, le=MAX_COOLDOWN_SECONDS, sa_column_kwargs={"server_default": "300"}
    )


# A user's rule. The user owns it (RLS on user_id); the evaluator reads all enabled rules.
class Alert(TimestampsMixin, AlertBase, IdMixin, table=True):
    __tablename__ = "alerts"
    __table_args__ = (
        # Leads with user_id: the RLS policy column and "my rules, newest first".
        sa.Index("ix_alerts_user_id_created_at", "user_id", "created_at"),
        # The evaluator's scan: enabled rules of one type.
        sa.Index("ix_alerts_enabled_alert_type", "alert_type", postgresql_where=sa.text("enabled")),
        enum_check("alert_type", AlertType),
        check("char_length(name) between 1 and 100", "name_length"),
        check(f"cooldown_seconds between 0 and {MAX_COOLDOWN_SECONDS}", "cooldown_range"),
        check("jsonb_typeof(conditions) = 'object'", "conditions_is_object"),
        check("conditions ->> 'alert_type' = alert_type", "conditions_match_type"),
        check(f"pg_column_size(conditions) <= {MAX_CONDITIONS_BYTES}", "conditions_size"),
        check("char_length(webhook_secret) between 32 and 128", "webhook_secret_length"),
        check(
            "jsonb_typeof(channels) = 'array' and jsonb_array_length(channels) between 1 and 5",
            "channels_count",
        ),
        access_info(AccessClass.USER_OWNED, owner="user_id"),
    )

    user_id: uuid.UUID = Field(foreign_key="auth.users.id", ondelete="CASCADE")
    conditions: dict[str, Any] = Field(sa_type=JSONB)
    # Signs this rule's webhook deliveries (HMAC-SHA256). Set by the service when a rule has a
    # webhook channel; the owner can read it (RLS), no API response but creation shows it.
    webhook_secret: str | None = Field(default=None, sa_type=_TEXT)
    channels: list[dict[str, Any]] = Field(
        default_factory=lambda: [{"type": "in_app"}],
        sa_type=JSONB,
        sa_column_kwargs={"server_default": sa.text('\'[{"type": "in_app"}]\'::jsonb')},
    )


class AlertCreate(AlertBase):
    conditions: AlertConditions
    channels: list[DeliveryChannel] = PydanticField(
        default_factory=_in_app_only, min_length=1, max_length=5
    )

    _tag_conditions = model_validator(mode="before")(_with_alert_type)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.conditions.alert_type != self.alert_type:
            raise ValueError("conditions.alert_type must equal alert_type")
        _conditions_size(self.conditions)
        return self


class AlertUpdate(SQLModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    enabled: bool | None = None
    cooldown_seconds: int | None = Field(default=None, ge=0, le=MAX_COOLDOWN_SECONDS)
    conditions: AlertConditions | None = None
    channels: list[DeliveryChannel] | None = PydanticField(default=None, min_length=1, max_length=5)

    @model_validator(mode="after")
    def _size(self) -> Self:
        if self.conditions is not None:
            _conditions_size(self.conditions)
        return self


class AlertPublic(AlertBase):
    id: uuid.UUID
    user_id: uuid.UUID
    conditions: AlertConditions
    channels: list[DeliveryChannel]
    created_at: datetime
    updated_at: datetime


class AlertsPublic(Page[AlertPublic]):
    pass


# -- alert_events ----------------------------------------------------------------------------


class AlertEventBase(SQLModel):
    alert_id: uuid.UUID = Field(foreign_key="alerts.id", ondelete="CASCADE")
    user_id: uuid.UUID = Field(foreign_key="auth.users.id", ondelete="CASCADE")
    # Null for alert types that are not about a whale transaction.
    whale_transaction_id: uuid.UUID | None = Field(
        default=None, foreign_key="whale_transactions.id", ondelete="CASCADE", index=True
    )
    triggered_at: AwareDatetime = Field(
        default_factory=utc_now,
        sa_type=_TS,
        sa_column_kwargs={"server_default": sa.text("now()"), "nullable": False},
    )


# Written by the evaluator (service); each user reads their own.
class AlertEvent(AlertEventBase, IdMixin, table=True):
    __tablename__ = "alert_events"
    __table_args__ = (
        # An event is recorded once: a retried or second evaluator cannot duplicate it.
        sa.UniqueConstraint("alert_id", "whale_transaction_id"),
        # Leads with user_id: the RLS policy column and "my events, newest first".
        sa.Index("ix_alert_events_user_id_triggered_at_id", "user_id", "triggered_at", "id"),
        # The delivery loop's queue: pending events whose next attempt is due.
        sa.Index(
            "ix_alert_events_pending",
            "next_attempt_at",
            postgresql_where=sa.text("delivery_status = 'pending'"),
        ),
        enum_check("delivery_status", DeliveryStatus),
        check("attempts >= 0", "attempts_nonnegative"),
        check("jsonb_typeof(payload) = 'object'", "payload_is_object"),
        access_info(AccessClass.USER_READABLE, owner="user_id"),
    )

    payload: dict[str, Any] = Field(
        default_factory=dict,
        sa_type=JSONB,
        sa_column_kwargs={"server_default": sa.text("'{}'::jsonb")},
    )
    delivery_status: DeliveryStatus = Field(
        default=DeliveryStatus.PENDING,
        sa_type=_TEXT,
        sa_column_kwargs={"server_default": DeliveryStatus.PENDING.value},
    )
    attempts: int = Field(default=0, ge=0, sa_column_kwargs={"server_default": "0"})
    last_error: str | None = Field(default=None, max_length=2_000, sa_type=_TEXT)
    next_attempt_at: datetime = Field(
        default_factory=utc_now,
        sa_type=_TS,
        sa_column_kwargs={"server_default": sa.text("now()"), "nullable": False},
    )
    updated_at: datetime = Field(
        default_factory=utc_now,
        sa_type=_TS,
        sa_column_kwargs={"server_default": sa.text("now()"), "nullable": False},
    )


class AlertEventCreate(AlertEventBase):
    payload: dict[str, Any] = PydanticField(default_factory=dict)


class AlertEventUpdate(SQLModel):
    delivery_status: DeliveryStatus | None = None
    attempts: int | None = Field(default=None, ge=0)
    last_error: str | None = Field(default=None, max_length=2_000)
    next_attempt_at: AwareDatetime | None = None


class AlertEventPublic(AlertEventBase):
    id: uuid.UUID
    payload: dict[str, Any]
    delivery_status: DeliveryStatus
    attempts: int
    last_error: str | None
    updated_at: datetime


class AlertEventsPublic(Page[AlertEventPublic]):
    pass
