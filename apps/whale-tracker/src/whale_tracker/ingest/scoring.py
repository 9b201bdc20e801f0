"""Units and the whale score.

The score places a transfer's size on a log scale between two thresholds: at or below
`floor_eth` it is 0, at or above `ceiling_eth` it is 1, and every tenfold step in between adds
the same amount. With the defaults (100 ETH -> 0, 100,000 ETH -> 1), 1,000 ETH scores 0.3333
and 10,000 ETH 0.6667. Exact Decimal arithmetic throughout; no floats.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation, localcontext
from functools import cache, partial
from itertools import repeat

WEI_PER_ETH = Decimal(10) ** 18
DEFAULT_FLOOR_ETH = Decimal(100)
DEFAULT_CEILING_ETH = Decimal(100_000)
_SCORE_QUANTUM = Decimal("0.0001")
_CENT = Decimal("0.01")


def wei_to_eth(wei: int | str) -> Decimal:
    """Wei (an integer, or its decimal string as Etherscan sends it) as exact ETH."""
    value = int(wei)
    if value < 0:
        raise ValueError("value must not be negative")
    with localcontext() as ctx:
        ctx.prec = 80
        return (Decimal(value) / WEI_PER_ETH).normalize() if value else Decimal(0)


def whale_score(
    value_eth: Decimal,
    *,
    floor_eth: Decimal = DEFAULT_FLOOR_ETH,
    ceiling_eth: Decimal = DEFAULT_CEILING_ETH,
) -> Decimal:
    """log(value/floor) / log(ceiling/floor), clamped to [0, 1], rounded half-up to 4 places.

    Computed by binary search in the table of values where the rounded score steps up (built
    once per pair of thresholds, exactly, in Decimal): a logarithm per row would cost more than
    the rest of the ingest pipeline together.
    """
    steps = _steps(floor_eth, ceiling_eth)
    return _SCORES[bisect_right(steps, value_eth)]


_SCORES = [Decimal(k).scaleb(-4) for k in range(10_001)]  # 0.0000 … 1.0000


def scorer(
    *, floor_eth: Decimal = DEFAULT_FLOOR_ETH, ceiling_eth: Decimal = DEFAULT_CEILING_ETH
) -> Callable[[Decimal], Decimal]:
    """`whale_score` with its thresholds bound: the table is looked up once, not per row."""
    steps, scores = _steps(floor_eth, ceiling_eth), _SCORES

    def score(value_eth: Decimal) -> Decimal:
        return scores[bisect_right(steps, value_eth)]

    return score


def batch_scorer(
    *, floor_eth: Decimal = DEFAULT_FLOOR_ETH, ceiling_eth: Decimal = DEFAULT_CEILING_ETH
) -> Callable[[list[Decimal]], list[Decimal]]:
    """`whale_score` of many values in one call: C-level maps, no Python frame per value."""
    find, get = partial(bisect_right, _steps(floor_eth, ceiling_eth)), _SCORES.__getitem__

    def scores(values: list[Decimal]) -> list[Decimal]:
        return list(map(get, map(find, values)))

    return scores


@cache
def _steps(floor_eth: Decimal, ceiling_eth: Decimal) -> list[Decimal]:
    """steps[k-1]: the smallest value whose score rounds (half up) to k/10000, k = 1 … 10000."""
    if not Decimal(0) < floor_eth < ceiling_eth:
        raise ValueError("thresholds must satisfy 0 < floor < ceiling")
    with localcontext() as ctx:
        # steps[k] = floor * exp((2k + 1) / 20000 * ln(ceiling / floor)): a geometric series.
        # One exp() and 10,000 products at 60 digits (a product's rounding error stays below
        # 1e-55 after them all), each step rounded to 40: the same table as 10,000 exp() calls
        # at 40 digits, computed in a few milliseconds instead of a tenth of a second.
        ctx.prec = 60
        ln_span = (ceiling_eth / floor_eth).ln()
        ratio = (ln_span / 10_000).exp()
        step = floor_eth * (ln_span / 20_000).exp()
        exact = []
        for _ in range(10_000):
            exact.append(step)
            step *= ratio
        ctx.prec = 40
        return [+value for value in exact]  # unary plus rounds to the context's precision


def usd(value_eth: Decimal, eth_usd: Decimal) -> Decimal:
    """The USD value to the cent, exactly (half-even): the product is never rounded first."""
    return _EXACT.multiply(value_eth, eth_usd).quantize(_CENT, rounding=ROUND_HALF_EVEN)


class UsdPrice:
    """ETH -> USD at one price, to the cent; a value needing more than `max_digits` digits
    (the column's precision) raises ValueError instead of failing its write."""

    def __init__(self, eth_usd: Decimal, *, max_digits: int) -> None:
        self.eth_usd = eth_usd
        self.max_digits = max_digits
        # quantize() signals InvalidOperation when the result needs more digits than `prec`.
        self._limit = Context(prec=max_digits, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation])

    def __call__(self, value_eth: Decimal) -> Decimal:
        product = _EXACT.multiply(value_eth, self.eth_usd)
        try:
            return self._limit.quantize(product, _CENT)
        except InvalidOperation:
            raise ValueError(
                f"{value_eth} ETH at {self.eth_usd} USD needs more than {self.max_digits} digits"
            ) from None

    def many(self, values: list[Decimal]) -> list[Decimal] | None:
        """The USD values of many, in C-level maps; None when any is out of range (then ask
        one by one, to learn which)."""
        products = map(_EXACT.multiply, values, repeat(self.eth_usd))
        try:
            return list(map(self._limit.quantize, products, repeat(_CENT)))
        except InvalidOperation:
            return None


#: Wide enough for any product of two column values: exact, never rounded.
_EXACT = Context(prec=80, traps=[InvalidOperation])
