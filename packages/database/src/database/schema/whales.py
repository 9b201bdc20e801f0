"""Whale transactions: large on-chain transfers, scored, public data."""

import uuid
from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from pydantic import AwareDatetime
from sqlmodel import Field, SQLModel

from database.schema.base import (
    AccessClass,
    IdMixin,
    Page,
    TimestampsMixin,
    access_info,
    metadata,
    unset,
)
from database.schema.streams import StreamMixin, stream_index
from database.schema.types import (
    SCORE_SQL_TYPE,
    Address,
    Chain,
    EthAmount,
    NonNegativeBigInt,
    Score,
    TxHash,
    UsdAmount,
)

#: pg_notify channel (a stream's is its table's name): one notification per INSERT statement.
NOTIFY_CHANNEL = "whale_transactions"


# Fields every role shares, validated: what an ingest sends.
class WhaleTransactionBase(SQLModel):
    hash: TxHash = Field(sa_type=sa.Text, unique=True)
    chain: Chain = Field(
        default=Chain.ETHEREUM,
        sa_type=sa.Text,
        sa_column_kwargs={"server_default": Chain.ETHEREUM.value},
    )
    from_address: Address = Field(sa_type=sa.Text, index=True)
    # A contract creation has no recipient.
    to_address: Address | None = Field(default=None, sa_type=sa.Text, index=True)
    value_eth: EthAmount
    value_usd: UsdAmount | None = Field(default=None, sa_type=sa.Numeric(20, 2))
    gas_price: NonNegativeBigInt = Field(sa_type=sa.BigInteger)
    gas_used: NonNegativeBigInt | None = Field(default=None, sa_type=sa.BigInteger)
    block_number: NonNegativeBigInt = Field(sa_type=sa.BigInteger, index=True)
    block_timestamp: AwareDatetime = Field(sa_type=sa.DateTime(timezone=True))
    whale_score: Score = Field(index=True, sa_type=SCORE_SQL_TYPE)


# The table. Rows are created by the service (ingest), read by everyone. Its CHECKs are rendered
# from the field types above (database.schema.rules).
class WhaleTransaction(TimestampsMixin, WhaleTransactionBase, IdMixin, StreamMixin, table=True):
    __tablename__ = "whale_transactions"
    __table_args__ = (
        # Newest first with a stable tie-break: the list endpoints' keyset order.
        sa.Index("ix_whale_transactions_block_timestamp_id", "block_timestamp", "id"),
        sa.Index("ix_whale_transactions_value_eth", "value_eth"),
        sa.Index("ix_whale_transactions_value_usd", "value_usd"),
        # Consumers (the alert evaluator) read new rows in commit order.
        stream_index("whale_transactions"),
        access_info(AccessClass.PUBLIC_DATA),
    )


# What the ingest sends.
class WhaleTransactionCreate(WhaleTransactionBase):
    pass


# A correction by the service: any field may be left out; an explicit null only where the
# column may be null.
class WhaleTransactionUpdate(SQLModel):
    chain: Chain = unset()
    from_address: Address = unset()
    to_address: Address | None = unset()
    value_eth: EthAmount = unset()
    value_usd: UsdAmount | None = unset()
    gas_price: NonNegativeBigInt = unset()
    gas_used: NonNegativeBigInt | None = unset()
    block_number: NonNegativeBigInt = unset()
    block_timestamp: AwareDatetime = unset()
    whale_score: Score = unset()


# What the API returns. Amounts are decimal strings in plain notation ("0.000000000000000000",
# never "0E-18"; `PlainDigits` on their types), so clients parse them exactly.
class WhaleTransactionPublic(WhaleTransactionBase):
    id: uuid.UUID
    created_at: datetime
    updated_at: datetime


class WhaleTransactionsPublic(Page[WhaleTransactionPublic]):
    pass


# A row of the whale_activity_daily view (security_invoker): activity per UTC day and chain.
class WhaleActivityDaily(SQLModel):
    day: date
    chain: Chain
    transactions: int
    total_value_eth: Decimal
    total_value_usd: Decimal | None
    max_whale_score: Decimal


WHALE_ACTIVITY_DAILY_SQL = """
select (block_timestamp at time zone 'UTC')::date as day,
       chain,
       count(*) as transactions,
       sum(value_eth) as total_value_eth,
       sum(value_usd) as total_value_usd,
       max(whale_score) as max_whale_score
  from public.whale_transactions
 group by 1, 2
"""


# Queryable like a table, created by the migration as a view (env.py keeps it out of autogenerate).
whale_activity_daily = sa.Table(
    "whale_activity_daily",
    metadata,
    sa.Column("day", sa.Date),
    sa.Column("chain", sa.Text),
    sa.Column("transactions", sa.BigInteger),
    sa.Column("total_value_eth", sa.Numeric),
    sa.Column("total_value_usd", sa.Numeric),
    sa.Column("max_whale_score", sa.Numeric),
    info={
        "view": True,
        "definition": WHALE_ACTIVITY_DAILY_SQL,
        **access_info(AccessClass.PUBLIC_DATA)["info"],
    },
)


# Query filters of the whale transaction listings (the read API's query parameters).
class WhaleTransactionFilters(SQLModel):
    chain: Chain | None = None
    address: Address | None = None  # from or to
    min_value_eth: EthAmount | None = None
    min_value_usd: UsdAmount | None = None
    since: AwareDatetime | None = None  # block_timestamp >= since
    until: AwareDatetime | None = None  # block_timestamp < until
    min_score: Score | None = None


# Per UTC day and chain, computed in SQL.
class WhaleDailyStats(SQLModel):
    day: date
    chain: Chain
    transactions: int
    total_value_eth: Decimal
    total_value_usd: Decimal | None
    median_value_eth: Decimal
    p90_value_eth: Decimal
    p99_value_eth: Decimal
    max_value_eth: Decimal
    max_whale_score: Decimal
