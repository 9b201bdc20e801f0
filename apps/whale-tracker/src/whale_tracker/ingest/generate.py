"""`whale-tracker generate`: a deterministic synthetic feed in any of the three formats.

Values follow a Pareto (heavy-tailed) distribution above a whale-sized minimum; hashes and
addresses have the real shapes, addresses repeat (a pool of busy wallets), about 1 % of rows are
contract creations (no recipient) and about 1 % carry a zero value. The same seed gives the
same bytes.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TextIO

from whale_tracker.ingest.scoring import WEI_PER_ETH
from whale_tracker.ingest.sources import Format

GENESIS = datetime(2026, 1, 1, tzinfo=UTC)
CSV_FIELDS = (
    "hash", "chain", "from_address", "to_address", "value_eth", "gas_price", "gas_used",
    "block_number", "block_timestamp",
)  # fmt: skip


@dataclass(frozen=True)
class Transfer:
    hash: str
    from_address: str
    to_address: str | None
    wei: int
    gas_price: int
    gas_used: int
    block_number: int
    timestamp: datetime

    @property
    def value_eth(self) -> Decimal:
        return (Decimal(self.wei) / WEI_PER_ETH).normalize() if self.wei else Decimal(0)


def transfers(count: int, *, seed: int = 1, wallets: int = 2_000) -> Iterator[Transfer]:
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    pool = [
        "0x" + hashlib.sha256(f"{seed}:wallet:{i}".encode()).hexdigest()[:40]
        for i in range(wallets)
    ]
    for i in range(count):
        roll = rng.random()
        wei = (
            0 if roll < 0.01 else int(rng.paretovariate(1.16) * 50 * 10**18) + rng.randrange(10**15)
        )
        yield Transfer(
            hash="0x" + hashlib.sha256(f"{seed}:tx:{i}".encode()).hexdigest(),
            from_address=rng.choice(pool),
            to_address=None if 0.01 <= roll < 0.02 else rng.choice(pool),
            wei=wei,
            gas_price=rng.randrange(5 * 10**9, 200 * 10**9),
            gas_used=rng.choice((21_000, 21_000, 46_109, 65_000, 1_200_000)),
            block_number=19_000_000 + i // 150,
            timestamp=GENESIS + timedelta(seconds=12 * (i // 150)),
        )


def write(out: TextIO, fmt: Format, count: int, *, seed: int = 1) -> None:
    feed = transfers(count, seed=seed)
    if fmt is Format.JSONL:
        for t in feed:
            out.write(json.dumps(_create_fields(t)) + "\n")
    elif fmt is Format.CSV:
        writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for t in feed:
            writer.writerow({k: ("" if v is None else v) for k, v in _create_fields(t).items()})
    else:
        # One response body, as Etherscan's txlist returns it (all numbers are strings).
        out.write('{"status": "1", "message": "OK", "result": [')
        for n, t in enumerate(feed):
            out.write(("," if n else "") + "\n  " + json.dumps(_etherscan_fields(t)))
        out.write("\n]}\n")


def _create_fields(t: Transfer) -> dict[str, object]:
    return {
        "hash": t.hash,
        "chain": "ethereum",
        "from_address": t.from_address,
        "to_address": t.to_address,
        "value_eth": str(t.value_eth),
        "gas_price": t.gas_price,
        "gas_used": t.gas_used,
        "block_number": t.block_number,
        "block_timestamp": t.timestamp.isoformat(),
    }


def _etherscan_fields(t: Transfer) -> dict[str, str]:
    return {
        "blockNumber": str(t.block_number),
        "timeStamp": str(int(t.timestamp.timestamp())),
        "hash": t.hash,
        "nonce": "0",
        "from": t.from_address,
        "to": t.to_address or "",
        "value": str(t.wei),
        "gas": str(t.gas_used + 10_000),
        "gasPrice": str(t.gas_price),
        "isError": "0",
        "txreceipt_status": "1",
        "contractAddress": "" if t.to_address else "0x" + t.hash[2:42],
        "gasUsed": str(t.gas_used),
        "confirmations": "12",
    }
