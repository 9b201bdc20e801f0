"""Market data: quotes, OHLCV bars, order-book liquidity zones, smart-money-concept patterns."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

import sqlalchemy as sa
from pydantic import AwareDatetime, model_validator
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
    unset,
)
from database.schema.partitions import (
    PARTITIONED_MAPPER,
    Interval,
    Partitioning,
    Retired,
    partitioned,
)
from database.schema.rules import Text
from database.schema.streams import StreamMixin, restamps_stream, stream_index
from database.schema.types import (
    PRICE_DIGITS,
    PRICE_SCALE,
    SCORE_SQL_TYPE,
    WEEK_ORIGIN_SECONDS,
    Amount,
    Name,
    Percent,
    Price,
    Score,
    Size,
    Symbol,
    Timeframe,
)

_TEXT: Any = sa.Text
_TS: Any = sa.DateTime(timezone=True)
_NUM = sa.Numeric(PRICE_DIGITS, PRICE_SCALE)


class Side(StrEnum):
    BID = "bid"
    ASK = "ask"


class PatternType(StrEnum):
    ORDER_BLOCK = "order_block"
    FAIR_VALUE_GAP = "fair_value_gap"
    BREAK_OF_STRUCTURE = "break_of_structure"
    CHANGE_OF_CHARACTER = "change_of_character"
    LIQUIDITY_SWEEP = "liquidity_sweep"


class PatternStatus(StrEnum):
    ACTIVE = "active"
    MITIGATED = "mitigated"
    INVALIDATED = "invalidated"
    EXPIRED = "expired"


# -- market_data: quotes ---------------------------------------------------------------------


class MarketDataBase(SQLModel):
    exchange: Name = Field(sa_type=_TEXT)
    symbol: Symbol = Field(sa_type=_TEXT)
    price: Price = Field(sa_type=_NUM)
    bid: Price | None = Field(default=None, sa_type=_NUM)
    ask: Price | None = Field(default=None, sa_type=_NUM)
    volume_24h: Amount | None = Field(default=None, sa_type=_NUM)
    change_24h_pct: Percent | None = Field(default=None, sa_type=sa.Numeric(12, 4))
    observed_at: AwareDatetime = Field(sa_type=_TS)

    @model_validator(mode="after")
    def _bid_not_above_ask(self) -> Self:
        if self.bid is not None and self.ask is not None and self.bid > self.ask:
            raise ValueError("bid must not be above ask")
        return self


#: Quotes come fast and age fast: a week per partition, twelve weeks kept, then dropped.
MARKET_DATA_PARTITIONS = Partitioning(
    column="observed_at",
    interval=Interval.WEEK,
    premake=2,
    retention="12 weeks",
    retired=Retired.DROP,
)


# Quotes are written by collectors (service) and read by everyone.
class MarketData(CreatedAtMixin, MarketDataBase, IdMixin, StreamMixin, table=True):
    __tablename__ = "market_data"
    __table_args__ = (
        # Alert sources read in commit order; this reads one index probe per partition.
        stream_index("market_data"),
        sa.UniqueConstraint("exchange", "symbol", "observed_at"),
        # "Latest quote for a symbol" across exchanges walks this index backwards.
        sa.Index("ix_market_data_symbol_observed_at", "symbol", "observed_at"),
        check("bid <= ask", "bid_not_above_ask"),
        partitioned(access_info(AccessClass.PUBLIC_DATA), MARKET_DATA_PARTITIONS),
    )
    __mapper_args__ = PARTITIONED_MAPPER

    # Part of the primary key (id, observed_at): a partitioned table's keys hold its key.
    observed_at: AwareDatetime = Field(sa_type=_TS, primary_key=True)


class MarketDataCreate(MarketDataBase):
    pass


class MarketDataUpdate(SQLModel):
    price: Price = unset()
    bid: Price | None = unset()
    ask: Price | None = unset()
    volume_24h: Amount | None = unset()
    change_24h_pct: Percent | None = unset()


class MarketDataPublic(MarketDataBase):
    id: uuid.UUID
    created_at: datetime


class MarketDataListPublic(Page[MarketDataPublic]):
    pass


# -- ohlcv: candles --------------------------------------------------------------------------

_ALIGNED_SQL = (
    "case timeframe"
    + "".join(
        f" when '{tf.value}' then mod(extract(epoch from bucket_start)::bigint"
        f"{f' - {WEEK_ORIGIN_SECONDS}' if tf is Timeframe.W1 else ''}, {tf.seconds}) = 0"
        for tf in Timeframe
    )
    + " else true end"  # an unknown timeframe is ck_ohlcv_timeframe_valid's to report
)


#: An exchange ("binance") or a pool ("<network>:<pool address>"): no whitespace.
SOURCE_PATTERN = describe_pattern("^[!-~]+$", "must be printable ASCII without spaces")
Source = Annotated[str, Text(min_length=1, max_length=128, pattern=SOURCE_PATTERN)]


class OhlcvBase(SQLModel):
    source: Source = Field(sa_type=_TEXT)
    symbol: Symbol = Field(sa_type=_TEXT)
    timeframe: Timeframe = Field(sa_type=_TEXT)
    bucket_start: AwareDatetime = Field(sa_type=_TS)
    open: Price = Field(sa_type=_NUM)
    high: Price = Field(sa_type=_NUM)
    low: Price = Field(sa_type=_NUM)
    close: Price = Field(sa_type=_NUM)
    volume: Amount = Field(sa_type=_NUM)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not (self.low <= min(self.open, self.close) and max(self.open, self.close) <= self.high):
            raise ValueError("prices must satisfy low <= open, close <= high")
        epoch = int(self.bucket_start.timestamp())
        origin = WEEK_ORIGIN_SECONDS if self.timeframe is Timeframe.W1 else 0
        if (epoch - origin) % self.timeframe.seconds or self.bucket_start.microsecond:
            raise ValueError(f"bucket_start must be aligned to the {self.timeframe.value} grid")
        return self


#: ~1.4 M one-minute bars a day for 1,000 symbols: a month per partition, two years kept,
#: then moved to the archive schema.
OHLCV_PARTITIONS = Partitioning(
    column="bucket_start",
    interval=Interval.MONTH,
    premake=3,
    retention="24 months",
    retired=Retired.ARCHIVE,
)


# Bars are written in bulk by collectors and read by everyone.
class Ohlcv(CreatedAtMixin, OhlcvBase, IdMixin, table=True):
    __tablename__ = "ohlcv"
    __table_args__ = (
        # The natural key; it also serves range and latest-N queries (source, symbol, tf, time).
        sa.UniqueConstraint("source", "symbol", "timeframe", "bucket_start"),
        check("low <= open and low <= close and open <= high and close <= high", "low_high_bound"),
        check(_ALIGNED_SQL, "bucket_start_aligned"),
        partitioned(access_info(AccessClass.PUBLIC_DATA), OHLCV_PARTITIONS),
    )
    __mapper_args__ = PARTITIONED_MAPPER

    # Part of the primary key (id, bucket_start): a partitioned table's keys hold its key.
    bucket_start: AwareDatetime = Field(sa_type=_TS, primary_key=True)


class OhlcvCreate(OhlcvBase):
    pass


class OhlcvUpdate(SQLModel):
    open: Price = unset()
    high: Price = unset()
    low: Price = unset()
    close: Price = unset()
    volume: Amount = unset()


class OhlcvPublic(OhlcvBase):
    id: uuid.UUID
    created_at: datetime


class OhlcvListPublic(Page[OhlcvPublic]):
    pass


# -- liquidity_zones -------------------------------------------------------------------------


class LiquidityZoneBase(SQLModel):
    exchange: Name = Field(sa_type=_TEXT)
    symbol: Symbol = Field(sa_type=_TEXT)
    price_level: Price = Field(sa_type=_NUM)
    side: Side = Field(sa_type=_TEXT)
    size: Size = Field(sa_type=sa.Numeric(30, 18))
    # A zone that grows stronger is news to alert rules (a minimum strength it now meets).
    strength: Score | None = Field(
        default=None,
        sa_type=SCORE_SQL_TYPE,
        sa_column_kwargs=restamps_stream("new.strength > coalesce(old.strength, -1)"),
    )


class LiquidityZone(TimestampsMixin, LiquidityZoneBase, IdMixin, StreamMixin, table=True):
    __tablename__ = "liquidity_zones"
    __table_args__ = (
        stream_index("liquidity_zones"),  # alert sources: read in commit order
        # Natural key, leading with (exchange, symbol, price_level): serves price-range reads.
        sa.UniqueConstraint("exchange", "symbol", "price_level", "side"),
        access_info(AccessClass.PUBLIC_DATA),
    )


class LiquidityZoneCreate(LiquidityZoneBase):
    pass


class LiquidityZoneUpdate(SQLModel):
    size: Size = unset()
    strength: Score | None = unset()


class LiquidityZonePublic(LiquidityZoneBase):
    id: uuid.UUID
    created_at: datetime
    updated_at: datetime


class LiquidityZonesPublic(Page[LiquidityZonePublic]):
    pass


# -- smc_patterns ----------------------------------------------------------------------------


class SmcPatternBase(SQLModel):
    exchange: Name = Field(sa_type=_TEXT)
    symbol: Symbol = Field(sa_type=_TEXT)
    pattern_type: PatternType = Field(sa_type=_TEXT)
    time_frame: Timeframe = Field(sa_type=_TEXT)
    price_level: Price = Field(sa_type=_NUM)
    confidence_score: Score = Field(sa_type=SCORE_SQL_TYPE)
    status: PatternStatus = Field(
        default=PatternStatus.ACTIVE,
        sa_type=_TEXT,
        sa_column_kwargs={"server_default": PatternStatus.ACTIVE.value},
    )


_PATTERN_METADATA_MAX_BYTES = 16_384


class SmcPattern(TimestampsMixin, SmcPatternBase, IdMixin, StreamMixin, table=True):
    __tablename__ = "smc_patterns"
    __table_args__ = (
        stream_index("smc_patterns"),  # alert sources: read in commit order
        sa.Index("ix_smc_patterns_exchange_symbol_status", "exchange", "symbol", "status"),
        sa.Index("ix_smc_patterns_pattern_type", "pattern_type"),
        sa.Index("ix_smc_patterns_price_level", "price_level"),
        check("jsonb_typeof(metadata) = 'object'", "metadata_is_object"),
        access_info(AccessClass.PUBLIC_DATA),
    )

    # Column "metadata"; the Python name avoids SQLModel's class-level `metadata`.
    pattern_metadata: dict[str, Any] = Field(
        default_factory=dict,
        sa_type=JSONB,
        sa_column_kwargs={"name": "metadata", "server_default": sa.text("'{}'::jsonb")},
    )


def _bounded_json(value: dict[str, Any]) -> dict[str, Any]:
    import json

    if len(json.dumps(value, default=str)) > _PATTERN_METADATA_MAX_BYTES:
        raise ValueError(f"must serialize to at most {_PATTERN_METADATA_MAX_BYTES} bytes")
    return value


class SmcPatternCreate(SmcPatternBase):
    pattern_metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _metadata_size(self) -> Self:
        _bounded_json(self.pattern_metadata)
        return self


class SmcPatternUpdate(SQLModel):
    status: PatternStatus = unset()
    confidence_score: Score = unset()
    pattern_metadata: dict[str, Any] = unset()


class SmcPatternPublic(SmcPatternBase):
    id: uuid.UUID
    pattern_metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class SmcPatternsPublic(Page[SmcPatternPublic]):
    pass
