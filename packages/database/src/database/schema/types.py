"""Field types shared by the models: validated in Python, mirrored by CHECKs in the database.

Each validator's message states the rule; pydantic adds the field's name (its `loc`).
"""

import os
import random
import re
import time
import uuid
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

import sqlalchemy as sa
from pydantic import AfterValidator, BeforeValidator, Field

# -- identifiers -----------------------------------------------------------------------------


# Not a secret, only unique: a fast PRNG seeded from the OS, re-seeded in forked children so
# two worker processes never draw the same sequence.
_random = random.Random(os.urandom(32))  # noqa: S311 - ids need uniqueness, not secrecy
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))


_UUID7_CLEAR = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_UUID7_SET = (0x7 << 76) | (0x2 << 62)  # version 7, RFC 9562 variant


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7): new rows land at the right edge of the index.

    48 bits of Unix milliseconds, then 74 random bits around the version and variant bits.
    """
    return uuid.UUID(int=_uuid7_int())


def uuid7_hex() -> str:
    """`uuid7()` as 32 hex digits: what COPY's text format needs, without building a UUID."""
    return "%032x" % _uuid7_int()  # noqa: UP031 - the fastest spelling on this hot path


def _uuid7_int() -> int:
    value = (time.time_ns() // 1_000_000) << 80 | _random.getrandbits(80)
    return value & _UUID7_CLEAR | _UUID7_SET


# -- on-chain strings ------------------------------------------------------------------------

HASH_PATTERN = "^0x[0-9a-f]{64}$"
ADDRESS_PATTERN = "^0x[0-9a-f]{40}$"
_HASH = re.compile(HASH_PATTERN)
_ADDRESS = re.compile(ADDRESS_PATTERN)


def _lower_stripped(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _hash(value: str) -> str:
    if not _HASH.fullmatch(value):
        raise ValueError("must be 0x followed by 64 hex digits (a transaction hash)")
    return value


def _address(value: str) -> str:
    if not _ADDRESS.fullmatch(value):
        raise ValueError("must be 0x followed by 40 hex digits (an address)")
    return value


TxHash = Annotated[str, BeforeValidator(_lower_stripped), AfterValidator(_hash)]
Address = Annotated[str, BeforeValidator(_lower_stripped), AfterValidator(_address)]

#: Exchange names, symbols, networks: short, no surrounding whitespace.
Name = Annotated[str, BeforeValidator(_lower_stripped), Field(min_length=1, max_length=64)]
Symbol = Annotated[
    str,
    BeforeValidator(lambda v: v.strip().upper() if isinstance(v, str) else v),
    Field(min_length=1, max_length=32, pattern=r"^[A-Z0-9._/:-]+$"),
]

# -- numbers ---------------------------------------------------------------------------------

#: Prices, sizes and volumes: wide enough for BTC and for micro-cap tokens alike.
PRICE_DIGITS, PRICE_SCALE = 38, 18
Price = Annotated[Decimal, Field(gt=0, max_digits=PRICE_DIGITS, decimal_places=PRICE_SCALE)]
Amount = Annotated[Decimal, Field(ge=0, max_digits=PRICE_DIGITS, decimal_places=PRICE_SCALE)]
Score = Annotated[Decimal, Field(ge=0, le=1, max_digits=5, decimal_places=4)]
#: Column type of a Score (SQLModel loses Annotated metadata on Optional fields).
SCORE_SQL_TYPE = sa.Numeric(5, 4)

# -- closed sets -----------------------------------------------------------------------------


class Chain(StrEnum):
    ETHEREUM = "ethereum"
    ARBITRUM = "arbitrum"
    OPTIMISM = "optimism"
    BASE = "base"
    POLYGON = "polygon"


class Timeframe(StrEnum):
    M1 = "1m"
    M5 = "5m"
    M15 = "15m"
    H1 = "1h"
    H4 = "4h"
    D1 = "1d"
    W1 = "1w"

    @property
    def seconds(self) -> int:
        return _TIMEFRAME_SECONDS[self]


_TIMEFRAME_SECONDS = {
    Timeframe.M1: 60,
    Timeframe.M5: 300,
    Timeframe.M15: 900,
    Timeframe.H1: 3600,
    Timeframe.H4: 14_400,
    Timeframe.D1: 86_400,
    Timeframe.W1: 604_800,
}
#: Weekly buckets start on Monday 00:00 UTC; 1970-01-05 was the first Monday of the epoch.
WEEK_ORIGIN_SECONDS = 345_600


def values_sql(enum: type[StrEnum]) -> str:
    """`'a', 'b', …` for a CHECK constraint listing an enum's values."""
    return ", ".join(f"'{member.value}'" for member in enum)
