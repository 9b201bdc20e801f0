"""Alert rules (owned by users) and the alert events they trigger (readable by their owner)."""

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

import sqlalchemy as sa
from pydantic import AwareDatetime, StrictBool, StrictStr, field_validator, model_validator
from pydantic import Field as PydanticField
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from database.errors import describe_pattern
from database.schema.base import (
    AccessClass,
    CreatedAtMixin,
    IdMixin,
    Page,
    TimestampsMixin,
    access_info,
    check,
    document_check,
    unset,
    utc_now,
)
from database.schema.documents import AtLeastOne, AtMost, DocDecimal, Document
from database.schema.market import PatternType, Side
from database.schema.rules import Int, Text
from database.schema.types import (
    ADDRESS_PATTERN,
    NAME_PATTERN,
    SYMBOL_PATTERN,
    Chain,
    Timeframe,
)

_TEXT: Any = sa.Text
_TS: Any = sa.DateTime(timezone=True)

MAX_RULES_PER_USER = 100
MAX_WATCHED_ADDRESSES = 100
MAX_CHANNELS = 5
MAX_COOLDOWN_SECONDS = 30 * 86_400


class AlertType(StrEnum):
    WHALE_TRANSACTION = "whale_transaction"
    PRICE_LEVEL = "price_level"
    LIQUIDITY_ZONE = "liquidity_zone"
    SMC_PATTERN = "smc_pattern"


class EventSource(StrEnum):
    """The stream tables whose rows trigger alert events (database.schema.streams)."""

    WHALE_TRANSACTIONS = "whale_transactions"
    MARKET_DATA = "market_data"
    LIQUIDITY_ZONES = "liquidity_zones"
    SMC_PATTERNS = "smc_patterns"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


# -- the values documents carry (stored exactly as sent: see database.schema.documents) ------

DocName = Annotated[StrictStr, Text(min_length=1, max_length=64, pattern=NAME_PATTERN)]
DocSymbol = Annotated[StrictStr, Text(min_length=1, max_length=32, pattern=SYMBOL_PATTERN)]
DocAddress = Annotated[StrictStr, Text(pattern=ADDRESS_PATTERN)]
DocEth = Annotated[Decimal, DocDecimal, PydanticField(ge=0, le=10**12, decimal_places=18)]
DocUsd = Annotated[Decimal, DocDecimal, PydanticField(ge=0, le=10**15, decimal_places=2)]
DocScore = Annotated[Decimal, DocDecimal, PydanticField(ge=0, le=1, decimal_places=4)]
DocPrice = Annotated[Decimal, DocDecimal, PydanticField(gt=0, le=10**20, decimal_places=18)]

#: An HTTPS endpoint by host name: no user, no IP literal (the last label starts with a letter),
#: a port at most. Where the name points (public or not) is the apps' to check, when a rule is
#: saved and again at every delivery: DNS can change, and development may allow local hosts.
WEBHOOK_URL_PATTERN = describe_pattern(
    r"^https://([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)*[a-z]([a-z0-9-]*[a-z0-9])?(:[0-9]{1,5})?"
    r"(/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?(\?[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$",
    "must be an https:// URL on a host name (lower-case, no user, no IP address)",
)
WebhookUrl = Annotated[StrictStr, Text(max_length=2048, pattern=WEBHOOK_URL_PATTERN)]


# -- conditions: one document per alert type, chosen by the `alert_type` tag ----------------


class WhaleTransactionConditions(Document):
    document_rules = (
        AtLeastOne(("min_value_eth", "min_value_usd", "addresses", "chain", "min_whale_score")),
    )

    alert_type: Literal[AlertType.WHALE_TRANSACTION] = AlertType.WHALE_TRANSACTION
    min_value_eth: DocEth | None = None
    min_value_usd: DocUsd | None = None
    addresses: list[DocAddress] = PydanticField(
        default_factory=list, max_length=MAX_WATCHED_ADDRESSES
    )
    chain: Chain | None = None
    min_whale_score: DocScore | None = None

    @field_validator("addresses")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))  # repeats are harmless: kept once


class PriceLevelConditions(Document):
    alert_type: Literal[AlertType.PRICE_LEVEL] = AlertType.PRICE_LEVEL
    symbol: DocSymbol
    exchange: DocName | None = None
    direction: Literal["above", "below"]
    price: DocPrice


class LiquidityZoneConditions(Document):
    alert_type: Literal[AlertType.LIQUIDITY_ZONE] = AlertType.LIQUIDITY_ZONE
    symbol: DocSymbol
    exchange: DocName | None = None
    side: Side | None = None
    min_strength: DocScore | None = None


class SmcPatternConditions(Document):
    alert_type: Literal[AlertType.SMC_PATTERN] = AlertType.SMC_PATTERN
    symbol: DocSymbol
    exchange: DocName | None = None
    pattern_types: list[PatternType] = PydanticField(min_length=1, max_length=len(PatternType))
    time_frames: list[Timeframe] = PydanticField(default_factory=list, max_length=len(Timeframe))
    min_confidence: DocScore | None = None


AlertConditions = Annotated[
    WhaleTransactionConditions
    | PriceLevelConditions
    | LiquidityZoneConditions
    | SmcPatternConditions,
    PydanticField(discriminator="alert_type"),
]


# -- delivery channels ------------------------------------------------------------------------


class InAppChannel(Document):
    type: Literal["in_app"] = "in_app"


class WebhookChannel(Document):
    type: Literal["webhook"] = "webhook"
    url: WebhookUrl


DeliveryChannel = Annotated[InAppChannel | WebhookChannel, PydanticField(discriminator="type")]
#: One to five channels, at most one of them a webhook (a rule has one signing secret).
Channels = Annotated[
    list[DeliveryChannel],
    PydanticField(min_length=1, max_length=MAX_CHANNELS),
    AtMost(1, "type", "webhook"),
]


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


# -- alerts ----------------------------------------------------------------------------------

AlertName = Annotated[str, Text(min_length=1, max_length=100)]
Cooldown = Annotated[int, Int(ge=0, le=MAX_COOLDOWN_SECONDS)]
DisabledReason = Annotated[str, Text(max_length=500)]


class AlertBase(SQLModel):
    name: AlertName = Field(sa_type=_TEXT)
    alert_type: AlertType = Field(sa_type=_TEXT)
    enabled: StrictBool = Field(default=True, sa_column_kwargs={"server_default": sa.true()})
    cooldown_seconds: Cooldown = Field(default=300, sa_column_kwargs={"server_default": "300"})


# A user's rule. The user owns it (RLS on user_id; at most MAX_RULES_PER_USER, counted by the
# database); the evaluator reads all enabled rules. Its webhook signing secret lives in
# alert_webhook_secrets, out of the user's reach.
class Alert(TimestampsMixin, AlertBase, IdMixin, table=True):
    __tablename__ = "alerts"
    __table_args__ = (
        # Leads with user_id: the RLS policy column and "my rules, newest first".
        sa.Index("ix_alerts_user_id_created_at", "user_id", "created_at"),
        # The evaluator's scan: enabled rules of one type.
        sa.Index("ix_alerts_enabled_alert_type", "alert_type", postgresql_where=sa.text("enabled")),
        document_check("conditions", AlertConditions, name="alert_conditions"),
        document_check("channels", Channels, name="alert_channels"),
        check("conditions ->> 'alert_type' = alert_type", "conditions_match_type"),
        access_info(
            AccessClass.USER_OWNED,
            owner="user_id",
            quota=MAX_RULES_PER_USER,
            noun=("rule", "rules"),
        ),
    )

    user_id: uuid.UUID = Field(foreign_key="auth.users.id", ondelete="CASCADE")
    conditions: dict[str, Any] = Field(sa_type=JSONB)
    channels: list[dict[str, Any]] = Field(
        default_factory=lambda: [{"type": "in_app"}],
        sa_type=JSONB,
        sa_column_kwargs={"server_default": sa.text('\'[{"type": "in_app"}]\'::jsonb')},
    )
    # Why the evaluator switched the rule off (its stored data failed the match): the server's
    # to write, the owner's to read; cleared by the database when the rule is enabled again.
    disabled_reason: DisabledReason | None = Field(default=None, sa_type=_TEXT)


class AlertCreate(AlertBase):
    conditions: AlertConditions
    channels: Channels = PydanticField(default_factory=_in_app_only)

    _tag_conditions = model_validator(mode="before")(_with_alert_type)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.conditions.alert_type != self.alert_type:
            raise ValueError("conditions.alert_type must equal alert_type")
        return self


class AlertUpdate(SQLModel):
    name: AlertName = unset()
    enabled: StrictBool = unset()
    cooldown_seconds: Cooldown = unset()
    conditions: AlertConditions = unset()
    channels: Channels = unset()


class AlertPublic(AlertBase):
    id: uuid.UUID
    user_id: uuid.UUID
    conditions: AlertConditions
    channels: Channels
    disabled_reason: DisabledReason | None = None
    created_at: datetime
    updated_at: datetime


class AlertsPublic(Page[AlertPublic]):
    pass


# -- alert_webhook_secrets ---------------------------------------------------------------------

SECRET_PATTERN = describe_pattern("^[0-9a-f]{64}$", "must be 64 hex digits")
WebhookSecret = Annotated[str, Text(pattern=SECRET_PATTERN)]


class AlertWebhookSecretBase(SQLModel):
    alert_id: uuid.UUID = Field(primary_key=True, foreign_key="alerts.id", ondelete="CASCADE")
    secret: WebhookSecret = Field(sa_type=_TEXT)


# Signs a rule's webhook deliveries (HMAC-SHA256). Issued by the database when a rule gains a
# webhook channel (a trigger), read by the delivery worker; its owner sees it once, through
# private.webhook_secret() right after it was issued, and can rotate it.
class AlertWebhookSecret(CreatedAtMixin, AlertWebhookSecretBase, table=True):
    __tablename__ = "alert_webhook_secrets"
    __table_args__ = (access_info(AccessClass.INTERNAL),)


class AlertWebhookSecretCreate(AlertWebhookSecretBase):
    pass


class AlertWebhookSecretPublic(AlertWebhookSecretBase):
    created_at: datetime


# -- alert_events ----------------------------------------------------------------------------

Attempts = Annotated[int, Int(ge=0)]
DeliveryError = Annotated[str, Text(max_length=2_000)]


class AlertEventBase(SQLModel):
    alert_id: uuid.UUID = Field(foreign_key="alerts.id", ondelete="CASCADE")
    user_id: uuid.UUID = Field(foreign_key="auth.users.id", ondelete="CASCADE")
    # The stream row that triggered the event: its table and id. No foreign key: an event is
    # its owner's history and outlives the row (quotes, zones and patterns are time series
    # that retention drops), so the payload describes the row.
    source: EventSource = Field(sa_type=_TEXT)
    source_id: uuid.UUID
    triggered_at: AwareDatetime = Field(
        default_factory=utc_now,
        sa_type=_TS,
        sa_column_kwargs={"server_default": sa.text("now()"), "nullable": False},
    )


# Written by the evaluator (service); each user reads their own.
class AlertEvent(AlertEventBase, IdMixin, table=True):
    __tablename__ = "alert_events"
    __table_args__ = (
        # An event is recorded once per (rule, source row): a retried or second evaluator
        # cannot duplicate it.
        sa.UniqueConstraint("alert_id", "source", "source_id"),
        # Leads with user_id: the RLS policy column and "my events, newest first".
        sa.Index("ix_alert_events_user_id_triggered_at_id", "user_id", "triggered_at", "id"),
        # The delivery loop's queue: pending events whose next attempt is due.
        sa.Index(
            "ix_alert_events_pending",
            "next_attempt_at",
            postgresql_where=sa.text("delivery_status = 'pending'"),
        ),
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
    attempts: Attempts = Field(default=0, sa_column_kwargs={"server_default": "0"})
    last_error: DeliveryError | None = Field(default=None, sa_type=_TEXT)
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
    delivery_status: DeliveryStatus = unset()
    attempts: Attempts = unset()
    last_error: DeliveryError | None = unset()
    next_attempt_at: AwareDatetime = unset()


class AlertEventPublic(AlertEventBase):
    id: uuid.UUID
    payload: dict[str, Any]
    delivery_status: DeliveryStatus
    attempts: int
    last_error: str | None
    updated_at: datetime


class AlertEventsPublic(Page[AlertEventPublic]):
    pass
