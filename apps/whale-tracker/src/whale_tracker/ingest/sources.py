"""Input formats, read as streams of records.

* `jsonl` - one JSON object per line with the fields of `WhaleTransactionCreate`;
* `csv` - a header row with those field names, then one transaction per row;
* `etherscan` - the body of Etherscan's `account/txlist` (V1 and V2): `{"status", "message",
  "result": [...]}`, every number a decimal string, `value` in wei, `timeStamp` in Unix
  seconds, `to` empty for a contract creation.

JSON Lines and CSV are read line by line, so a file of any size streams in constant memory. An
Etherscan body is one JSON document, and the API returns at most 10,000 transactions per call,
so it is parsed whole. Every reader yields `(line, payload)`: the line's UTF-8 bytes (JSON
Lines: validated as they are, inside pydantic-core), a dict of fields (CSV, Etherscan), or a
`Problem` for a record that cannot be used (or is skipped on purpose), with the reason.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from whale_tracker.ingest.inputs import (
    MAX_LINE_BYTES,
    Input,
    Problem,
    SourceError,
    decoding_problem,
    open_input,
)
from whale_tracker.ingest.scoring import wei_to_eth

ETHERSCAN_NO_TRANSACTIONS = "No transactions found"

Payload = bytes | dict[str, Any] | Problem
Record = tuple[int, Payload]

__all__ = ["Format", "Payload", "Problem", "Record", "SourceError", "detect", "read", "records"]


class Format(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    ETHERSCAN = "etherscan"


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


def read(source: Input, fmt: Format) -> Iterator[Record]:
    if fmt is Format.JSONL:
        return _jsonl(source)
    if fmt is Format.CSV:
        return _csv(source)
    return _etherscan(source)


def records(path: str, fmt: Format | None = None) -> Iterator[Record]:
    """Open `path` (or stdin for `-`), work out its format unless given, stream its records."""
    with open_input(path) as source:
        yield from read(source, fmt or detect(path, source.head))


def _jsonl(source: Input) -> Iterator[Record]:
    return source.byte_lines()  # one object per line, validated as bytes; blank lines left out


# -- CSV -------------------------------------------------------------------------------------


def _csv(source: Input) -> Iterator[Record]:
    # A cell may be as long as a line may be; longer lines are problems of their own.
    if csv.field_size_limit() < MAX_LINE_BYTES:
        csv.field_size_limit(MAX_LINE_BYTES)
    problems: dict[int, str] = {}
    reader = csv.reader(_csv_lines(source, problems))
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise SourceError(f"{source.path}: the CSV header cannot be read ({exc})") from None
    if problems or any(decoding_problem(name) for name in header):
        raise SourceError(f"{source.path}: the CSV header cannot be read (encoding or length)")
    if "hash" not in header:
        raise SourceError(f"{source.path}: the CSV header has no 'hash' column")
    width = len(header)
    while True:
        first = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, Problem(f"csv: {exc}")
            continue
        line = reader.line_num
        if problems:  # a line of this row was too long (read as an empty line)
            reason = next((problems.pop(n) for n in range(first, line + 1) if n in problems), None)
            if reason is not None:
                yield line, Problem(reason)
                continue
        if not row:
            continue  # a blank line
        if len(row) > width:
            yield line, Problem("csv: more cells than the header has columns", record=row)
            continue
        reason = next(
            (f"encoding: {name}: {r.removeprefix('encoding: ')}"
             for name, cell in zip(header, row, strict=False)
             if (r := decoding_problem(cell))),
            None,
        )  # fmt: skip
        if reason is not None:
            yield line, Problem(reason, record=[c.encode("utf-8", "replace").decode() for c in row])
            continue
        # Empty cells are absent values (CSV has no null).
        yield line, {k: v for k, v in zip(header, row, strict=False) if v}


def _csv_lines(source: Input, problems: dict[int, str]) -> Iterator[str]:
    for number, line in source.text_lines():
        if isinstance(line, Problem):
            problems[number] = line.reason or "line: unusable"
            yield "\n"
        else:
            yield line


# -- Etherscan -------------------------------------------------------------------------------


def _etherscan(source: Input) -> Iterator[Record]:
    text = source.document()
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise SourceError(f"{source.path}: not an Etherscan response body ({exc})") from None
    if not isinstance(body, dict) or "result" not in body:
        raise SourceError(f"{source.path}: not an Etherscan response body (no 'result')")
    status, message, result = str(body.get("status")), str(body.get("message", "")), body["result"]
    if status != "1":
        if message.startswith(ETHERSCAN_NO_TRANSACTIONS) or (result == [] and status == "0"):
            return  # an empty account: zero rows, not an error
        detail = result if isinstance(result, str) else message
        raise SourceError(
            f"{source.path}: Etherscan returned an error: {_printable(message)}: "
            f"{_printable(str(detail))}"
        )
    if not isinstance(result, list):
        raise SourceError(f"{source.path}: Etherscan 'result' is not a list")
    for index, record in enumerate(result, start=1):
        yield index, _etherscan_record(record)


def _printable(text: str) -> str:
    return text.encode("utf-8", "replace").decode()[:500]


def _etherscan_record(record: Any) -> dict[str, Any] | Problem:
    if not isinstance(record, dict):
        return Problem("etherscan: a result item is not an object")
    shown = {k: _printable(v) if isinstance(v, str) else v for k, v in record.items()}
    reason = next(
        (r for v in record.values() if isinstance(v, str) and (r := decoding_problem(v))), None
    )
    if reason is not None:
        return Problem(reason, record=shown)
    if record.get("isError") == "1":
        return Problem(skipped="failed on chain (isError=1)")
    missing = [
        k
        for k in ("hash", "from", "value", "gasPrice", "blockNumber", "timeStamp")
        if k not in record
    ]
    if missing:
        return Problem(f"{missing[0]}: missing", record=shown)
    try:
        value_eth = wei_to_eth(record["value"])
    except (ValueError, TypeError):
        return Problem(
            f"value: not a non-negative integer of wei ({record['value']!r:.100})", record=shown
        )
    try:
        timestamp = datetime.fromtimestamp(int(record["timeStamp"]), tz=UTC)
    except (ValueError, TypeError, OverflowError, OSError):
        return Problem(f"timeStamp: not Unix seconds ({record['timeStamp']!r:.100})", record=shown)
    return {
        "hash": record["hash"],
        "from_address": record["from"],
        "to_address": record.get("to") or None,  # empty: a contract creation
        "value_eth": value_eth,
        "gas_price": record["gasPrice"],
        "gas_used": record.get("gasUsed") or None,
        "block_number": record["blockNumber"],
        "block_timestamp": timestamp,
    }
