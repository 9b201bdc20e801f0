"""DEX reference data (GeckoTerminal-style): exchanges, tokens, pools. Public data."""

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Self

import sqlalchemy as sa
from pydantic import BeforeValidator, model_validator
from pydantic import Field as PydanticField
from sqlmodel import Field, SQLModel

from database.schema.base import AccessClass, IdMixin, Page, TimestampsMixin, access_info, check
from database.schema.types import Name, Symbol

_TEXT: Any = sa.Text


def _chain_address(value: object) -> object:
    # EVM addresses are case-insensitive: store them lower-case. Others (base58) keep case.
    if isinstance(value, str):
        value = value.strip()
        if value.startswith(("0x", "0X")):
            return value.lower()
    return value


#: An address on any network: EVM hex (lower-cased) or base58 and friends.
ChainAddress = Annotated[
    str,
    BeforeValidator(_chain_address),
    PydanticField(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$"),
]
DexId = Annotated[str, PydanticField(min_length=1, max_length=64, pattern=r"^[a-z0-9_-]+$")]


# -- dexes -----------------------------------------------------------------------------------


class DexBase(SQLModel):
    name: str = Field(min_length=1, max_length=100, sa_type=_TEXT)
    network: Name = Field(sa_type=_TEXT)


class Dex(TimestampsMixin, DexBase, table=True):
    __tablename__ = "dexes"
    __table_args__ = (
        check("id ~ '^[a-z0-9_-]{1,64}$'", "id_format"),
        sa.Index("ix_dexes_network", "network"),
        access_info(AccessClass.PUBLIC_DATA),
    )

    id: str = Field(primary_key=True, sa_type=_TEXT)


class DexCreate(DexBase):
    id: DexId


class DexUpdate(SQLModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)


class DexPublic(DexBase):
    id: str
    created_at: datetime
    updated_at: datetime


# -- tokens ----------------------------------------------------------------------------------


class TokenBase(SQLModel):
    network: Name = Field(sa_type=_TEXT)
    address: ChainAddress = Field(sa_type=_TEXT)
    symbol: Symbol = Field(sa_type=_TEXT)
    name: str = Field(min_length=1, max_length=200, sa_type=_TEXT)
    decimals: int = Field(ge=0, le=36, sa_type=sa.SmallInteger)


class Token(TimestampsMixin, TokenBase, IdMixin, table=True):
    __tablename__ = "tokens"
    __table_args__ = (
        sa.UniqueConstraint("network", "address"),
        check("decimals between 0 and 36", "decimals_range"),
        access_info(AccessClass.PUBLIC_DATA),
    )


class TokenCreate(TokenBase):
    pass


class TokenUpdate(SQLModel):
    symbol: Symbol | None = None
    name: str | None = Field(default=None, min_length=1, max_length=200)
    decimals: int | None = Field(default=None, ge=0, le=36)


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
    reserve_usd: Decimal | None = Field(default=None, ge=0, max_digits=30, decimal_places=2)

    @model_validator(mode="after")
    def _distinct_tokens(self) -> Self:
        if self.base_token_id == self.quote_token_id:
            raise ValueError("base_token_id and quote_token_id must differ")
        return self


class Pool(TimestampsMixin, PoolBase, IdMixin, table=True):
    __tablename__ = "pools"
    __table_args__ = (
        sa.UniqueConstraint("network", "address"),
        check("reserve_usd >= 0", "reserve_usd_nonnegative"),
        check("base_token_id <> quote_token_id", "distinct_tokens"),
        access_info(AccessClass.PUBLIC_DATA),
    )


class PoolCreate(PoolBase):
    pass


class PoolUpdate(SQLModel):
    reserve_usd: Decimal | None = Field(default=None, ge=0, max_digits=30, decimal_places=2)


class PoolPublic(PoolBase):
    id: uuid.UUID
    created_at: datetime
    updated_at: datetime


class PoolsPublic(Page[PoolPublic]):
    pass
