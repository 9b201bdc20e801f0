"""DEX data (GeckoTerminal-style): exchanges, tokens, pools and the swaps in them. Public data."""

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Self

import sqlalchemy as sa
from pydantic import AwareDatetime, BeforeValidator, model_validator
from pydantic import Field as PydanticField
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
from database.schema.rules import Int, SmallInt, Text
from database.schema.types import (
    PRICE_DIGITS,
    PRICE_SCALE,
    Name,
    NonNegativeBigInt,
    PlainDigits,
    Price,
    Size,
    Symbol,
    TradeSide,
    UsdAmount,
)

#: USD reserves to the cent.
Reserve = Annotated[Decimal, PydanticField(ge=0, max_digits=30, decimal_places=2), PlainDigits]

_TEXT: Any = sa.Text


def _chain_address(value: object) -> object:
    # EVM addresses are case-insensitive: store them lower-case. Others (base58) keep case.
    if isinstance(value, str):
        value = value.strip()
        if value.startswith(("0x", "0X")):
            return value.lower()
    return value


CHAIN_ADDRESS_PATTERN = describe_pattern(
    "^[A-Za-z0-9_.:-]+$", "must be letters, digits and _ . : - (an address on its network)"
)
DEX_ID_PATTERN = describe_pattern("^[a-z0-9_-]+$", "must be lower-case letters, digits, _ or -")

#: An address on any network: EVM hex (lower-cased; the database checks it is) or base58.
ChainAddress = Annotated[
    str,
    BeforeValidator(_chain_address),
    Text(min_length=1, max_length=128, pattern=CHAIN_ADDRESS_PATTERN),
]
_EVM_LOWER = "address !~ '^0[xX]' or address = lower(address)"


def _evm_lower(column: str) -> str:
    return f"{column} !~ '^0[xX]' or {column} = lower({column})"


TX_HASH_PATTERN = describe_pattern(
    "^[A-Za-z0-9]+$", "must be letters and digits (a transaction hash or signature)"
)
#: A transaction on any network: EVM hex (lower-cased) or a base58 signature (case kept).
ChainTxHash = Annotated[
    str,
    BeforeValidator(_chain_address),
    Text(min_length=1, max_length=128, pattern=TX_HASH_PATTERN),
]
DexId = Annotated[str, Text(min_length=1, max_length=64, pattern=DEX_ID_PATTERN)]
DexName = Annotated[str, Text(min_length=1, max_length=100)]
TokenName = Annotated[str, Text(min_length=1, max_length=200)]
Decimals = Annotated[int, SmallInt(ge=0, le=36)]


# -- dexes -----------------------------------------------------------------------------------


class DexBase(SQLModel):
    name: DexName = Field(sa_type=_TEXT)
    network: Name = Field(sa_type=_TEXT)


class Dex(TimestampsMixin, DexBase, table=True):
    __tablename__ = "dexes"
    __table_args__ = (
        sa.Index("ix_dexes_network", "network"),
        access_info(AccessClass.PUBLIC_DATA),
    )

    id: DexId = Field(primary_key=True, sa_type=_TEXT)


class DexCreate(DexBase):
    id: DexId


class DexUpdate(SQLModel):
    name: DexName = unset()


class DexPublic(DexBase):
    id: str
    created_at: datetime
    updated_at: datetime


# -- tokens ----------------------------------------------------------------------------------


class TokenBase(SQLModel):
    network: Name = Field(sa_type=_TEXT)
    address: ChainAddress = Field(sa_type=_TEXT)
    symbol: Symbol = Field(sa_type=_TEXT)
    name: TokenName = Field(sa_type=_TEXT)
    decimals: Decimals = Field(sa_type=sa.SmallInteger)


class Token(TimestampsMixin, TokenBase, IdMixin, table=True):
    __tablename__ = "tokens"
    __table_args__ = (
        sa.UniqueConstraint("network", "address"),
        check(_EVM_LOWER, "address_evm_lowercase"),
        access_info(AccessClass.PUBLIC_DATA),
    )


class TokenCreate(TokenBase):
    pass


class TokenUpdate(SQLModel):
    symbol: Symbol = unset()
    name: TokenName = unset()
    decimals: Decimals = unset()


class TokenPublic(TokenBase):
    id: uuid.UUID
    created_at: datetime
    updated_at: datetime


class TokensPublic(Page[TokenPublic]):
    pass


# -- pools -----------------------------------------------------------------------------------


class PoolBase(SQLModel):
    network: Name = Field(sa_type=_TEXT)
    address: ChainAddress = Field(sa_type=_TEXT)
    dex_id: DexId = Field(foreign_key="dexes.id", ondelete="RESTRICT", index=True, sa_type=_TEXT)
    base_token_id: uuid.UUID = Field(foreign_key="tokens.id", ondelete="RESTRICT", index=True)
    quote_token_id: uuid.UUID = Field(foreign_key="tokens.id", ondelete="RESTRICT", index=True)
    reserve_usd: Reserve | None = Field(default=None, sa_type=sa.Numeric(30, 2))

    @model_validator(mode="after")
    def _distinct_tokens(self) -> Self:
        if self.base_token_id == self.quote_token_id:
            raise ValueError("base_token_id and quote_token_id must differ")
        return self


class Pool(TimestampsMixin, PoolBase, IdMixin, table=True):
    __tablename__ = "pools"
    __table_args__ = (
        sa.UniqueConstraint("network", "address"),
        check(_EVM_LOWER, "address_evm_lowercase"),
        check("base_token_id <> quote_token_id", "distinct_tokens"),
        access_info(AccessClass.PUBLIC_DATA),
    )


class PoolCreate(PoolBase):
    pass


class PoolUpdate(SQLModel):
    reserve_usd: Reserve | None = unset()


class PoolPublic(PoolBase):
    id: uuid.UUID
    created_at: datetime
    updated_at: datetime


class PoolsPublic(Page[PoolPublic]):
    pass


# -- dex_trades ------------------------------------------------------------------------------

LogIndex = Annotated[int, Int(ge=0)]


class DexTradeBase(SQLModel):
    network: Name = Field(sa_type=_TEXT)
    pool_id: uuid.UUID = Field(foreign_key="pools.id", ondelete="CASCADE")
    tx_hash: ChainTxHash = Field(sa_type=_TEXT)
    # The swap's position in its transaction: one transaction may swap several times.
    log_index: LogIndex
    block_number: NonNegativeBigInt = Field(sa_type=sa.BigInteger)
    block_timestamp: AwareDatetime = Field(sa_type=sa.DateTime(timezone=True))
    # The taker buys or sells the pool's base token.
    side: TradeSide = Field(sa_type=_TEXT)
    base_amount: Size = Field(sa_type=sa.Numeric(30, 18))
    quote_amount: Size = Field(sa_type=sa.Numeric(30, 18))
    price_usd: Price | None = Field(default=None, sa_type=sa.Numeric(PRICE_DIGITS, PRICE_SCALE))
    volume_usd: UsdAmount | None = Field(default=None, sa_type=sa.Numeric(20, 2))
    trader_address: ChainAddress | None = Field(default=None, sa_type=_TEXT)


#: A week of swaps per partition, a year kept, then moved to the archive schema.
DEX_TRADES_PARTITIONS = Partitioning(
    column="block_timestamp",
    interval=Interval.WEEK,
    premake=2,
    retention="52 weeks",
    retired=Retired.ARCHIVE,
)


# Swaps, written in bulk by collectors (natural key: network, tx_hash, log_index and the block
# time, which a swap's transaction fixes, so the key is as unique as before); read by all.
class DexTrade(CreatedAtMixin, DexTradeBase, IdMixin, table=True):
    __tablename__ = "dex_trades"
    __table_args__ = (
        sa.UniqueConstraint("network", "tx_hash", "log_index", "block_timestamp"),
        # A pool's trades in time order: keyset pages and OHLCV bars built from them.
        sa.Index("ix_dex_trades_pool_id_block_timestamp_id", "pool_id", "block_timestamp", "id"),
        check(_evm_lower("tx_hash"), "tx_hash_evm_lowercase"),
        check(_evm_lower("trader_address"), "trader_address_evm_lowercase"),
        partitioned(access_info(AccessClass.PUBLIC_DATA), DEX_TRADES_PARTITIONS),
    )
    __mapper_args__ = PARTITIONED_MAPPER

    # Part of the primary key (id, block_timestamp): a partitioned table's keys hold its key.
    block_timestamp: AwareDatetime = Field(sa_type=sa.DateTime(timezone=True), primary_key=True)


class DexTradeCreate(DexTradeBase):
    pass


class DexTradeUpdate(SQLModel):
    price_usd: Price | None = unset()
    volume_usd: UsdAmount | None = unset()
    trader_address: ChainAddress | None = unset()


class DexTradePublic(DexTradeBase):
    id: uuid.UUID
    created_at: datetime


class DexTradesPublic(Page[DexTradePublic]):
    pass
