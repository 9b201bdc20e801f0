"""RowValidator.validate_json_lines: many JSON lines in one call, each exactly as alone."""

from __future__ import annotations

import json

from database.repositories.rows import RowValidator
from database.schema import WhaleTransactionCreate

LINE = json.dumps({
    "hash": "0x" + "ab" * 32, "chain": "ethereum", "from_address": "0x" + "12" * 20,
    "to_address": None, "value_eth": "160.5", "gas_price": 1, "gas_used": 2,
    "block_number": 3, "block_timestamp": "2026-01-01T00:00:00+00:00",
}).encode()  # fmt: skip


def test_valid_lines_validate_as_each_would_alone() -> None:
    rows = RowValidator(WhaleTransactionCreate, defaults={"whale_score": None})
    lines = [LINE, LINE.replace(b"160.5", b"7") + b"\r", b"  " + LINE]
    assert rows.validate_json_lines(lines=lines) == [rows.validate_json(x) for x in lines]


def test_any_bad_line_makes_the_batch_none() -> None:
    rows = RowValidator(WhaleTransactionCreate, defaults={"whale_score": None})
    assert rows.validate_json_lines(lines=[LINE, LINE.replace(b"160.5", b"-1")]) is None
    assert rows.validate_json_lines(lines=[LINE, b"   "]) is None
    assert rows.validate_json_lines(lines=[LINE, b"[1]"]) is None
    assert rows.validate_json_lines(lines=[]) is None


def test_lines_cannot_swallow_or_forge_their_neighbours() -> None:
    rows = RowValidator(WhaleTransactionCreate, defaults={"whale_score": None})
    # As array elements these three lines parse as three objects; as keyed values they cannot.
    head, tail = LINE[:-1], LINE[-1:]
    merging = [head + b', "x": [{}', b"{}]" + tail, LINE + b"," + LINE]
    assert rows.validate_json_lines(lines=merging) is None
    assert rows.validate_json_lines(lines=[LINE + b', "0": ' + LINE, LINE]) is None
