"""Units and the whale score.

The score places a transfer's size on a log scale between two thresholds: at or below
`floor_eth` it is 0, at or above `ceiling_eth` it is 1, and every tenfold step in between adds
the same amount. With the defaults (100 ETH -> 0, 100,000 ETH -> 1), 1,000 ETH scores 0.3333
and 10,000 ETH 0.6667. Exact Decimal arithmetic throughout; no floats.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext

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
    if not Decimal(0) < floor_eth < ceiling_eth:
        raise ValueError("thresholds must satisfy 0 < floor < ceiling")
    if value_eth <= floor_eth:
        return Decimal(0).quantize(_SCORE_QUANTUM)
    if value_eth >= ceiling_eth:
        return Decimal(1).quantize(_SCORE_QUANTUM)
    with localcontext() as ctx:
        ctx.prec = 28
        ratio = (value_eth / floor_eth).log10() / (ceiling_eth / floor_eth).log10()
    return ratio.quantize(_SCORE_QUANTUM, rounding=ROUND_HALF_EVEN)


def usd(value_eth: Decimal, eth_usd: Decimal) -> Decimal:
    return (value_eth * eth_usd).quantize(_CENT, rounding=ROUND_HALF_EVEN)
