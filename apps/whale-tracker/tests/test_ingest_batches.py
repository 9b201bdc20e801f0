"""JSON Lines are validated a batch at a time: a bad line among good ones is still rejected
alone, with its own line number, and a batch's lines can never be read as other lines."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from sqlalchemy import text
from test_ingest_hostile import _count, _ingest, _lines, _one, _reasons, _run, refusing

from database.sessions import Database
from whale_tracker import cli
from whale_tracker.ingest.inputs import BATCH_LINES
from whale_tracker.ingest.sources import Format

COUNT = 3 * BATCH_LINES + 17  # several batches and a short last one


def test_one_bad_line_in_a_batch_is_rejected_alone_with_its_line(
    tmp_path: Path, database: Database
) -> None:
    lines = _lines(Format.JSONL, COUNT)
    record = json.loads(lines[776])
    record["gas_used"] = -1
    lines[776] = json.dumps(record).encode() + b"\n"
    path = tmp_path / "feed.jsonl"
    path.write_bytes(b"".join(lines))
    code, entries = _ingest(path, tmp_path)
    assert code == cli.EXIT_REJECTS
    assert [(line, reason.split(":")[0]) for line, reason in _reasons(entries)] == [
        (777, "gas_used")
    ]
    assert entries[0]["record"]["hash"] == record["hash"]
    assert _count(database) == COUNT - 1
    assert _run(database)[:4] == ("succeeded", COUNT, COUNT - 1, 1)


def test_lines_that_would_merge_across_a_batch_are_each_rejected(
    tmp_path: Path, database: Database
) -> None:
    # Joined into one JSON array these parse as three objects from three lines (the first
    # swallows the second); each alone is not one JSON object.
    lines = _lines(Format.JSONL, COUNT)
    lines[10:10] = [b'{"a":[{}\n', b"{}]}\n", b"{},{}\n"]
    path = tmp_path / "feed.jsonl"
    path.write_bytes(b"".join(lines))
    code, entries = _ingest(path, tmp_path)
    assert code == cli.EXIT_REJECTS
    assert [(line, reason.split(":")[0]) for line, reason in _reasons(entries)] == [
        (11, "json"), (12, "json"), (13, "json"),
    ]  # fmt: skip
    assert _count(database) == COUNT
    assert _run(database)[:4] == ("succeeded", COUNT + 3, COUNT, 3)


def test_blank_and_whitespace_lines_are_not_records(tmp_path: Path, database: Database) -> None:
    lines = _lines(Format.JSONL, COUNT)
    lines[600:600] = [b"   \n", b"\r\n", b"\n"]
    path = tmp_path / "feed.jsonl"
    path.write_bytes(b"".join(lines))
    code, entries = _ingest(path, tmp_path)
    assert code == 0 and entries == []
    assert _count(database) == COUNT
    assert _run(database)[:4] == ("succeeded", COUNT, COUNT, 0)


def test_a_batch_keeps_given_scores_and_rejects_a_usd_value_beyond_its_column(
    tmp_path: Path, database: Database
) -> None:
    lines = _lines(Format.JSONL, COUNT)
    given = json.loads(lines[5])
    given.update(whale_score="0.1234", value_usd="1.00")
    lines[5] = json.dumps(given).encode() + b"\n"
    huge = json.loads(lines[900])
    huge["value_eth"] = "999999999999"  # at 1e10 USD: more digits than value_usd holds
    lines[900] = json.dumps(huge).encode() + b"\n"
    path = tmp_path / "feed.jsonl"
    path.write_bytes(b"".join(lines))
    code, entries = _ingest(path, tmp_path, "--eth-usd", "1e10")  # replaces 3000: last one wins
    assert code == cli.EXIT_REJECTS
    assert [(e["line"], e["reason"].split(":")[0]) for e in entries] == [(901, "value_usd")]
    assert _count(database) == COUNT - 1
    score, usd = _one(database, "select whale_score, value_usd from whale_transactions"
                      f" where hash = '{given['hash']}'")  # fmt: skip
    assert (score, usd) == (Decimal("0.1234"), Decimal("1.00"))
    scored = _one(database, "select count(*) from whale_transactions where whale_score is null"
                  " or value_usd <> round(value_eth * 1e10, 2)")[0]  # fmt: skip
    assert scored == 1  # the row that brought its own USD value


def test_min_value_filters_inside_a_batch(tmp_path: Path, database: Database) -> None:
    lines = _lines(Format.JSONL, COUNT)
    path = tmp_path / "feed.jsonl"
    path.write_bytes(b"".join(lines))
    below = sum(Decimal(json.loads(line)["value_eth"]) < 1000 for line in lines)
    code, _ = _ingest(path, tmp_path, "--min-value-eth", "1000")
    assert code == 0 and 0 < below < COUNT
    assert _count(database) == COUNT - below
    assert _run(database)[:6] == ("succeeded", COUNT, COUNT - below, 0, 0, below)


def test_a_refused_row_names_its_own_file_among_several(tmp_path: Path, database: Database) -> None:
    lines = _lines(Format.JSONL, 2 * COUNT)
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_bytes(b"".join(lines[:COUNT]))
    second.write_bytes(b"".join(lines[COUNT:]))
    refused_hash = json.loads(lines[COUNT + 42])["hash"]
    rejects = tmp_path / "rejects.jsonl"
    with refusing(database, f"hash <> '{refused_hash}'"):
        code = cli.main(["ingest", str(first), str(second), "--eth-usd", "3000",
                         "--rejects", str(rejects)])  # fmt: skip
    assert code == cli.EXIT_REJECTS
    (only,) = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert (only["source"], only["line"]) == (str(second), 43)
    with database.service_session() as s:
        assert s.execute(text("select count(*) from whale_transactions")).scalar() == 2 * COUNT - 1
