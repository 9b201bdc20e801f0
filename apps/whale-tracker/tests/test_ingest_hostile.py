"""Every input has an outcome, never a traceback: one test per class of hostile input, each
checking the exit code, the rejects file (line and reason), the rows written and the run row.
"""

from __future__ import annotations

import codecs
import gzip
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from database.sessions import Database
from whale_tracker import cli
from whale_tracker.ingest.generate import write
from whale_tracker.ingest.inputs import MAX_LINE_BYTES
from whale_tracker.ingest.sources import Format


def _feed(fmt: Format, count: int = 30, seed: int = 11) -> bytes:
    path_text: list[str] = []

    class Sink:
        def write(self, chunk: str) -> int:
            path_text.append(chunk)
            return len(chunk)

    write(Sink(), fmt, count, seed=seed)  # type: ignore[arg-type]
    return "".join(path_text).encode("utf-8")


def _lines(fmt: Format, count: int = 30) -> list[bytes]:
    return _feed(fmt, count).splitlines(keepends=True)


def _ingest(path: Path, tmp_path: Path, *extra: str) -> tuple[int, list[dict[str, Any]]]:
    rejects = tmp_path / "rejects.jsonl"
    code = cli.main(["ingest", str(path), "--eth-usd", "3000", "--rejects", str(rejects), *extra])
    entries = (
        [json.loads(line) for line in rejects.read_text().splitlines()] if rejects.exists() else []
    )
    return code, entries


def _one(database: Database, sql: str) -> Any:
    with database.service_session() as s:
        return s.execute(text(sql)).one()


def _count(database: Database) -> int:
    return int(_one(database, "select count(*) from whale_transactions")[0])


def _run(database: Database) -> Any:
    """The only run's row: status, counts, error."""
    return _one(
        database,
        "select status, records_read, records_collected, records_rejected, records_skipped,"
        " records_filtered, records_merged, error, finished_at is not null as finished"
        " from collection_runs",
    )


def _reasons(entries: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [(e["line"], e["reason"]) for e in entries]


# -- encodings -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [Format.JSONL, Format.CSV])
@pytest.mark.parametrize(
    ("bom", "codec"),
    [
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ],
)
def test_utf8_with_bom_and_utf16_with_bom_are_read_whole(
    fmt: Format, bom: bytes, codec: str, tmp_path: Path, database: Database
) -> None:
    path = tmp_path / f"feed.{fmt.value}"
    path.write_bytes(bom + _feed(fmt).decode("utf-8").encode(codec))
    code, entries = _ingest(path, tmp_path)
    assert (code, entries, _count(database)) == (0, [], 30)
    assert _run(database)[:3] == ("succeeded", 30, 30)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (codecs.BOM_UTF32_LE + "{}\n".encode("utf-32-le"), "unsupported encoding (UTF-32)"),
        ("{}\n".encode("utf-16-le") * 50, "without a byte-order mark"),
        (gzip.compress(b"{}\n" * 50), "compressed"),
    ],
)
def test_an_unsupported_encoding_is_a_clear_error_naming_the_file(
    content: bytes,
    says: str,
    tmp_path: Path,
    database: Database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_bytes(content)
    code, entries = _ingest(path, tmp_path)
    err = capsys.readouterr().err
    assert code == cli.EXIT_SOURCE and entries == []
    assert f"{path}: unsupported encoding" in err and says in err
    assert "Traceback" not in err
    status, *_, error, finished = _run(database)
    assert (status, finished) == ("failed", True) and says in error


def test_undecodable_bytes_reject_their_line_only(tmp_path: Path, database: Database) -> None:
    lines = _lines(Format.JSONL)
    lines[4] = lines[4].replace(b'"ethereum"', b'"ether\xffeum"')
    path = tmp_path / "feed.jsonl"
    path.write_bytes(b"".join(lines))
    code, entries = _ingest(path, tmp_path)
    assert code == cli.EXIT_REJECTS
    assert _reasons(entries) == [(5, "encoding: not valid UTF-8 (byte 0xff at byte 95)")]
    assert _count(database) == 29
    assert _run(database)[:4] == ("succeeded", 30, 29, 1)


def test_undecodable_bytes_in_a_csv_cell_reject_their_row_only(
    tmp_path: Path, database: Database
) -> None:
    lines = _lines(Format.CSV)
    lines[3] = lines[3].replace(b"ethereum", b"eth\xe9")  # Latin-1 in a UTF-8 file
    path = tmp_path / "feed.csv"
    path.write_bytes(b"".join(lines))
    code, entries = _ingest(path, tmp_path)
    assert code == cli.EXIT_REJECTS
    assert _reasons(entries) == [
        (4, "encoding: chain: byte 0xe9 that does not decode, at character 4")
    ]
    assert _count(database) == 29


def test_a_lone_surrogate_in_utf16_rejects_its_line_only(
    tmp_path: Path, database: Database
) -> None:
    text_lines = _feed(Format.JSONL).decode("utf-8").splitlines(keepends=True)
    encoded = [line.encode("utf-16-le") for line in text_lines]
    encoded[2] = encoded[2].replace("ethereum".encode("utf-16-le"), b"\x00\xd8e\x00")
    path = tmp_path / "feed.jsonl"
    path.write_bytes(codecs.BOM_UTF16_LE + b"".join(encoded))
    code, entries = _ingest(path, tmp_path)
    assert code == cli.EXIT_REJECTS
    assert [(line, reason.split(":")[0]) for line, reason in _reasons(entries)] == [(3, "encoding")]
    assert _count(database) == 29


# -- sizes -----------------------------------------------------------------------------------


def test_an_oversize_line_is_a_reject_with_its_line_number(
    tmp_path: Path, database: Database
) -> None:
    lines = _lines(Format.JSONL)
    lines.insert(7, b'{"hash": "' + b"a" * (MAX_LINE_BYTES + 10) + b'"}\n')
    path = tmp_path / "feed.jsonl"
    path.write_bytes(b"".join(lines))
    code, entries = _ingest(path, tmp_path)
    assert code == cli.EXIT_REJECTS
    assert _reasons(entries) == [(8, "line: longer than 1,048,576 bytes")]
    assert _count(database) == 30
    assert _run(database)[:4] == ("succeeded", 31, 30, 1)


def test_a_csv_cell_over_128_kib_is_a_validation_reject_not_a_crash(
    tmp_path: Path, database: Database
) -> None:
    lines = _lines(Format.CSV)
    lines[5] = lines[5].replace(b"ethereum", b"e" * (200 << 10))  # over csv's default limit
    lines[9] = lines[9].replace(b"ethereum", b"e" * (MAX_LINE_BYTES + 1))  # over the line cap
    path = tmp_path / "feed.csv"
    path.write_bytes(b"".join(lines))
    code, entries = _ingest(path, tmp_path)
    assert code == cli.EXIT_REJECTS
    assert [(line, reason.split(":")[0]) for line, reason in _reasons(entries)] == [
        (6, "chain"),
        (10, "line"),
    ]
    assert _count(database) == 28


# -- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("gas_price", "9223372036854775808", "gas_price: Input should be less than or equal to"),
        ("value_eth", "1e30", "value_eth: Decimal input should have no more than 30 digits"),
        ("value_eth", '"1e30"', "value_eth: Decimal input should have no more than 30 digits"),
        ("value_eth", '"NaN"', "value_eth:"),
        ("block_number", "-1", "block_number: Input should be greater than or equal to 0"),
        ("gas_used", "1e400", "gas_used:"),
    ],
)
def test_values_outside_the_columns_range_are_validation_rejects(
    field: str, value: str, says: str, tmp_path: Path, database: Database
) -> None:
    lines = _lines(Format.JSONL)
    record = json.loads(lines[3])
    lines[3] = json.dumps(record)[:-1].encode() + f', "{field}": {value}}}\n'.encode()
    path = tmp_path / "feed.jsonl"
    path.write_bytes(b"".join(lines))
    code, entries = _ingest(path, tmp_path)
    assert code == cli.EXIT_REJECTS
    (only,) = entries
    assert only["line"] == 4 and only["reason"].startswith(says), only["reason"]
    assert _count(database) == 29


def test_a_usd_value_beyond_its_column_is_a_reject(tmp_path: Path, database: Database) -> None:
    path = tmp_path / "feed.jsonl"
    path.write_bytes(_feed(Format.JSONL))
    code, entries = _ingest(path, tmp_path, "--eth-usd", "1e17")  # replaces 3000: last one wins
    too_big = [e for e in entries if e["reason"].startswith("value_usd:")]
    assert code == cli.EXIT_REJECTS and too_big and len(too_big) == len(entries)
    assert "more than 20 digits" in too_big[0]["reason"]
    assert _count(database) == 30 - len(entries)


def test_lines_that_are_not_json_objects_are_rejects(tmp_path: Path, database: Database) -> None:
    lines = _lines(Format.JSONL)
    lines[1:1] = [b"[1, 2]\n", b"not json\n", b"\n", b'"a string"\n', b'{"hash": "\\u0000"}\n']
    path = tmp_path / "feed.jsonl"
    path.write_bytes(b"".join(lines))
    code, entries = _ingest(path, tmp_path)
    assert code == cli.EXIT_REJECTS
    assert [(line, reason.split(":")[0]) for line, reason in _reasons(entries)] == [
        (2, "json"), (3, "json"), (5, "json"), (6, "hash"),
    ]  # fmt: skip
    assert _count(database) == 30


# -- the database refuses a row the schema accepts --------------------------------------------


@contextmanager
def refusing(database: Database, condition: str) -> Iterator[None]:
    with database.engine.begin() as c:
        c.exec_driver_sql(
            f"alter table whale_transactions add constraint zz_test_refusal check ({condition})"
            " not valid"
        )
    try:
        yield
    finally:
        with database.engine.begin() as c:
            c.exec_driver_sql("alter table whale_transactions drop constraint zz_test_refusal")


def test_a_row_the_database_refuses_is_rejected_alone_and_its_chunk_written(
    tmp_path: Path, database: Database
) -> None:
    lines = _lines(Format.JSONL, 3000)
    path = tmp_path / "feed.jsonl"
    path.write_bytes(b"".join(lines))
    refused_hash = json.loads(lines[1234])["hash"]
    with refusing(database, f"hash <> '{refused_hash}'"):
        code, entries = _ingest(path, tmp_path, "--batch-size", "1000")
        assert code == cli.EXIT_REJECTS
        (only,) = entries
        assert only["line"] == 1235 and only["record"]["hash"] == refused_hash
        assert only["reason"].startswith("hash: breaks the rule zz_test_refusal")
        assert _count(database) == 2999
        assert _run(database)[:4] == ("succeeded", 3000, 2999, 1)
        # The merge path too (every key exists now, each row changed by another price).
        with database.service_session() as s:
            s.execute(text("truncate collection_runs"))
        code, entries = _ingest(path, tmp_path, "--batch-size", "1000", "--eth-usd", "3100")
    assert code == cli.EXIT_REJECTS and [e["line"] for e in entries] == [1235]
    assert _run(database)[:4] == ("succeeded", 3000, 2999, 1)
    changed = _one(database, "select count(*) from whale_transactions where value_usd is not null"
                   " and value_usd = round(value_eth * 3100, 2)")[0]  # fmt: skip
    assert changed == 2999


def test_strict_mode_stops_at_a_refused_row_and_keeps_earlier_batches(
    tmp_path: Path, database: Database
) -> None:
    lines = _lines(Format.JSONL, 3000)
    path = tmp_path / "feed.jsonl"
    path.write_bytes(b"".join(lines))
    refused_hash = json.loads(lines[2500])["hash"]
    with refusing(database, f"hash <> '{refused_hash}'"):
        code, entries = _ingest(path, tmp_path, "--batch-size", "1000", "--strict")
    assert code == cli.EXIT_STRICT and [e["line"] for e in entries] == [2501]
    assert _count(database) == 2000  # the chunk holding it is rolled back
    status, read, collected, *_ = _run(database)
    assert (status, collected) == ("failed", 2000) and read >= 2501


# -- accounting --------------------------------------------------------------------------------


def test_the_summary_adds_up(tmp_path: Path, database: Database) -> None:
    lines = _lines(Format.JSONL, 200)
    lines += lines[10:15]  # repeated records: merged, written once
    lines.insert(3, b"{broken\n")
    path = tmp_path / "feed.jsonl"
    path.write_bytes(b"".join(lines))
    code = cli.main(["ingest", str(path), "--eth-usd", "3000", "--min-value-eth", "100",
                     "--rejects", str(tmp_path / "r.jsonl"), "--json"])  # fmt: skip
    assert code == cli.EXIT_REJECTS
    status, read, collected, rejected, skipped, filtered, merged, *_ = _run(database)
    assert status == "succeeded" and read == 206
    assert filtered > 0 and merged > 0 and rejected == 1 and skipped == 0
    assert read == collected + rejected + skipped + filtered + merged
    assert _count(database) == collected
