"""Field types shared by the tables: each is a rule declared once (see `database.schema.rules`):
pydantic-core validates it, and the database checks the same rule as a CHECK constraint.
"""

import os
import random
import time
import uuid
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

import sqlalchemy as sa
from pydantic import Field, PlainSerializer

from database.errors import describe_pattern
from database.schema.rules import BigInt, Text

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


def uuid7_run(count: int) -> range:
    """`count` UUIDv7s as ascending integers: one timestamp, a random 12 + 61 bits, then a
    counter in the low bits (RFC 9562 section 6.2, method 2). One random draw per call, not per
    id: a bulk write's chunk gets its ids for the cost of formatting them."""
    if not 0 <= count < 1 << 61:
        raise ValueError("count out of range")
    start = (
        (time.time_ns() // 1_000_000) << 80
        | 0x7 << 76
        | _random.getrandbits(12) << 64
        | 0x2 << 62
        | _random.getrandbits(61)  # the top bit of the counter field stays free for the count
    )
    return range(start, start + count)


def _uuid7_int() -> int:
    value = (time.time_ns() // 1_000_000) << 80 | _random.getrandbits(80)
    return value & _UUID7_CLEAR | _UUID7_SET


# -- on-chain strings ------------------------------------------------------------------------
# Lower-cased and stripped by pydantic-core, then matched against the pattern; the database
# checks the same pattern (rendered by `database.schema.rules`).

HASH_PATTERN = describe_pattern(
    "^0x[0-9a-f]{64}$", "must be 0x followed by 64 hex digits (a transaction hash)"
)
ADDRESS_PATTERN = describe_pattern(
    "^0x[0-9a-f]{40}$", "must be 0x followed by 40 hex digits (an address)"
)
NAME_PATTERN = describe_pattern(
    "^[a-z0-9]([a-z0-9._ -]*[a-z0-9])?$",
    "must be lower-case letters, digits, '.', '_', '-' or inner spaces",
)
SYMBOL_PATTERN = describe_pattern(
    "^[A-Z0-9._/:-]+$", "must be upper-case letters, digits and . _ / : - (e.g. ETH/USDT)"
)

TxHash = Annotated[str, Text(pattern=HASH_PATTERN, lower=True, strip=True)]
Address = Annotated[str, Text(pattern=ADDRESS_PATTERN, lower=True, strip=True)]

#: Exchange names, networks: short, lower-case, no surrounding whitespace.
Name = Annotated[
    str, Text(min_length=1, max_length=64, pattern=NAME_PATTERN, lower=True, strip=True)
]
Symbol = Annotated[
    str, Text(min_length=1, max_length=32, pattern=SYMBOL_PATTERN, upper=True, strip=True)
]

# -- numbers ---------------------------------------------------------------------------------


def _plain(value: Decimal) -> str:
    return format(value, "f")


#: JSON renders a numeric column's value as a string of plain digits, never an exponent
#: ("0.00000010", not "1.0E-7"): exact, and read the same by every client.
PlainDigits = PlainSerializer(_plain, return_type=str, when_used="json")

#: Prices, sizes and volumes: wide enough for BTC and for micro-cap tokens alike.
PRICE_DIGITS, PRICE_SCALE = 38, 18
Price = Annotated[
    Decimal, Field(gt=0, max_digits=PRICE_DIGITS, decimal_places=PRICE_SCALE), PlainDigits
]
Amount = Annotated[
    Decimal, Field(ge=0, max_digits=PRICE_DIGITS, decimal_places=PRICE_SCALE), PlainDigits
]
Score = Annotated[Decimal, Field(ge=0, le=1, max_digits=5, decimal_places=4), PlainDigits]
#: Column type of a Score (SQLModel loses Annotated metadata on Optional fields).
SCORE_SQL_TYPE = sa.Numeric(5, 4)
#: ETH amounts to the wei (NUMERIC(30, 18)); USD to the cent (NUMERIC(20, 2)).
EthAmount = Annotated[Decimal, Field(ge=0, max_digits=30, decimal_places=18), PlainDigits]
UsdAmount = Annotated[Decimal, Field(ge=0, max_digits=20, decimal_places=2), PlainDigits]
NonNegativeBigInt = Annotated[int, BigInt(ge=0)]
#: A signed percentage change to 0.01 basis point (NUMERIC(12, 4)); an order-book size.
Percent = Annotated[Decimal, Field(max_digits=12, decimal_places=4), PlainDigits]
Size = Annotated[Decimal, Field(gt=0, max_digits=30, decimal_places=18), PlainDigits]
#: A score with a direction, -1 (bearish) to 1 (bullish): sentiment, signal components.
SignedScore = Annotated[Decimal, Field(ge=-1, le=1, max_digits=5, decimal_places=4), PlainDigits]
#: Money that may be negative (profit and loss), in the quote currency, to 18 places.
Pnl = Annotated[Decimal, Field(max_digits=PRICE_DIGITS, decimal_places=PRICE_SCALE), PlainDigits]
PNL_SQL_TYPE = sa.Numeric(PRICE_DIGITS, PRICE_SCALE)

# -- text ------------------------------------------------------------------------------------

URL_PATTERN = describe_pattern(
    r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?([/?#][!-~]*)?$",
    "must be an http:// or https:// URL in printable ASCII (percent-encode the rest)",
)
Url = Annotated[str, Text(max_length=2048, pattern=URL_PATTERN, strip=True)]
#: Words found in a text (sentiment keywords, event keywords): lower-case, trimmed.
Keyword = Annotated[str, Text(min_length=1, max_length=64, lower=True, strip=True)]

# -- closed sets -----------------------------------------------------------------------------


class TradeSide(StrEnum):
    """Which way a trade or an order goes: the taker buys or sells the base asset."""

    BUY = "buy"
    SELL = "sell"


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
