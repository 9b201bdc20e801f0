"""Input formats, read as streams of raw records.

* `jsonl` - one JSON object per line with the fields of `WhaleTransactionCreate`;
* `csv` - a header row with those field names, then one transaction per row;
* `etherscan` - the body of Etherscan's `account/txlist` (V1 and V2): `{"status", "message",
  "result": [...]}`, every number a decimal string, `value` in wei, `timeStamp` in Unix
  seconds, `to` empty for a contract creation.

JSON Lines and CSV are read line by line, so a file of any size streams in constant memory. An
Etherscan body is one JSON document, and the API returns at most 10,000 transactions per call,
so it is parsed whole. Every reader yields `Raw(line, fields)`, or `Raw(line, None, reason)`
for a record that cannot be used.
"""

from __future__ import annotations

import csv
import itertools
import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

from whale_tracker.ingest.scoring import wei_to_eth

ETHERSCAN_NO_TRANSACTIONS = "No transactions found"


class Format(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    ETHERSCAN = "etherscan"


class SourceError(Exception):
    """The input as a whole cannot be used (an Etherscan error body, an unreadable file)."""


@dataclass(frozen=True)
class Raw:
    line: int
    fields: dict[str, Any] | None
    reason: str | None = None
    skipped: str | None = None  # a readable record deliberately left out, and why


@contextmanager
def open_input(path: str) -> Iterator[TextIO]:
    """A file, or standard input for `-`."""
    if path == "-":
        yield sys.stdin
        return
    try:
        handle = open(path, encoding="utf-8", newline="")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        yield handle


def detect(path: str, head: str) -> Format:
    """The format from the file name, else from the first characters of the content."""
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return Format.JSONL
    if suffix == ".csv":
        return Format.CSV
    stripped = head.lstrip()
    if stripped.startswith("{"):
        first_line = stripped.split("\n", 1)[0]
        try:
            json.loads(first_line)
        except ValueError:
            return Format.ETHERSCAN  # a JSON document spread over lines
        return Format.ETHERSCAN if '"result"' in first_line else Format.JSONL
    if stripped.startswith("["):
        raise SourceError(f"{path}: a bare JSON array is not a supported format")
    return Format.CSV


def read(lines: Iterable[str], fmt: Format, *, source: str) -> Iterator[Raw]:
    if fmt is Format.JSONL:
        yield from _jsonl(lines)
    elif fmt is Format.CSV:
        yield from _csv(lines, source=source)
    else:
        yield from _etherscan(lines, source=source)


def records(path: str, fmt: Format | None) -> Iterator[Raw]:
    """Open `path` (or stdin for `-`), work out its format unless given, stream its records."""
    with open_input(path) as handle:
        first = handle.readline()
        chosen = fmt or detect(path, first)
        yield from read(itertools.chain([first], handle), chosen, source=path)


def _jsonl(lines: Iterable[str]) -> Iterator[Raw]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Raw(number, None, f"json: not valid JSON ({exc.msg})")
            continue
        if not isinstance(record, dict):
            yield Raw(number, None, "json: a line must hold one JSON object")
            continue
        yield Raw(number, record)


def _csv(lines: Iterable[str], *, source: str) -> Iterator[Raw]:
    reader = csv.DictReader(lines)
    if not reader.fieldnames:
        return
    if "hash" not in reader.fieldnames:
        raise SourceError(f"{source}: the CSV header has no 'hash' column")
    for row in reader:
        line = reader.line_num
        if None in row:  # more cells than header columns
            yield Raw(line, None, "csv: more cells than the header has columns")
            continue
        # Empty cells are absent values (CSV has no null).
        yield Raw(line, {k: v for k, v in row.items() if v not in ("", None)})


def _etherscan(lines: Iterable[str], *, source: str) -> Iterator[Raw]:
    try:
        body = json.loads("".join(lines))
    except ValueError as exc:
        raise SourceError(f"{source}: not an Etherscan response body ({exc})") from None
    if not isinstance(body, dict) or "result" not in body:
        raise SourceError(f"{source}: not an Etherscan response body (no 'result')")
    status, message, result = str(body.get("status")), str(body.get("message", "")), body["result"]
    if status != "1":
        if message.startswith(ETHERSCAN_NO_TRANSACTIONS) or (result == [] and status == "0"):
            return  # an empty account: zero rows, not an error
        detail = result if isinstance(result, str) else message
        raise SourceError(f"{source}: Etherscan returned an error: {message}: {detail}")
    if not isinstance(result, list):
        raise SourceError(f"{source}: Etherscan 'result' is not a list")
    for index, record in enumerate(result, start=1):
        yield _etherscan_record(index, record)


def _etherscan_record(index: int, record: Any) -> Raw:
    if not isinstance(record, dict):
        return Raw(index, None, "etherscan: a result item is not an object")
    if record.get("isError") == "1":
        return Raw(index, None, skipped="failed on chain (isError=1)")
    missing = [
        k
        for k in ("hash", "from", "value", "gasPrice", "blockNumber", "timeStamp")
        if k not in record
    ]
    if missing:
        return Raw(index, None, f"{missing[0]}: missing")
    try:
        value_eth = wei_to_eth(record["value"])
    except ValueError:
        return Raw(index, None, f"value: not a non-negative integer of wei ({record['value']!r})")
    try:
        timestamp = datetime.fromtimestamp(int(record["timeStamp"]), tz=UTC)
    except (ValueError, OverflowError, OSError):
        return Raw(index, None, f"timeStamp: not Unix seconds ({record['timeStamp']!r})")
    return Raw(
        index,
        {
            "hash": record["hash"],
            "from_address": record["from"],
            "to_address": record.get("to") or None,  # empty: a contract creation
            "value_eth": value_eth,
            "gas_price": record["gasPrice"],
            "gas_used": record.get("gasUsed") or None,
            "block_number": record["blockNumber"],
            "block_timestamp": timestamp,
        },
    )
