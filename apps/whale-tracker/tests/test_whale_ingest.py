"""Ingest end to end: every format, idempotence, bad records, strict mode, Etherscan bodies,
standard input, USD prices, run records."""

from __future__ import annotations

import io
import json
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from database.repositories import MarketDataRepository
from database.sessions import Database
from whale_tracker import cli
from whale_tracker.ingest.generate import write
from whale_tracker.ingest.pipeline import IngestOptions, StrictModeError, ingest
from whale_tracker.ingest.scoring import wei_to_eth, whale_score
from whale_tracker.ingest.sources import Format, SourceError


def _rows(database: Database, sql: str = "select count(*) from whale_transactions") -> object:
    with database.service_session() as s:
        return s.execute(text(sql)).scalar_one()


def _feed(tmp_path: Path, fmt: Format, count: int = 300, seed: int = 7) -> Path:
    path = tmp_path / f"feed.{fmt.value}"
    with path.open("w", newline="") as out:
        write(out, fmt, count, seed=seed)
    return path


@pytest.mark.parametrize("fmt", list(Format))
def test_each_format_is_ingested_and_a_second_run_changes_nothing(
    fmt: Format, tmp_path: Path, database: Database
) -> None:
    path = _feed(tmp_path, fmt)
    options = IngestOptions(eth_usd=Decimal(3000), rejects=tmp_path / "rejects.jsonl")
    first = ingest([str(path)], database=database, options=options)
    assert (first.read, first.inserted, sum(first.rejected.values())) == (300, 300, 0)
    creations = _rows(database, "select count(*) from whale_transactions where to_address is null")
    zeros = _rows(
        database, "select count(*) from whale_transactions where value_eth = 0 and whale_score = 0"
    )
    assert creations and zeros  # the generator's contract creations and zero values went in
    second = ingest([str(path)], database=database, options=options)
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, 300)
    assert not (tmp_path / "rejects.jsonl").exists()


def test_all_formats_store_the_same_rows(tmp_path: Path, database: Database) -> None:
    options = IngestOptions(eth_usd=Decimal("2999.99"), rejects=None)
    ingest([str(_feed(tmp_path, Format.JSONL))], database=database, options=options)
    for fmt in (Format.CSV, Format.ETHERSCAN):
        again = ingest([str(_feed(tmp_path, fmt))], database=database, options=options)
        assert again.unchanged == 300, (
            fmt
        )  # wei -> ETH is exact: the same numbers to the last digit


BROKEN = [
    '{"hash": "0x' + "a" * 64 + '", "from_address": "0x' + "1" * 40 + '", "value_eth": "5000",'
    ' "gas_price": 1, "block_number": 1, "block_timestamp": "2026-02-01T00:00:00Z"}',
    "{not json",
    '{"hash": "0x123", "from_address": "0x' + "1" * 40 + '", "value_eth": "1", "gas_price": 1,'
    ' "block_number": 1, "block_timestamp": "2026-02-01T00:00:00Z"}',
    '{"hash": "0x' + "b" * 64 + '", "from_address": "0x' + "1" * 40 + '", "value_eth": "-3",'
    ' "gas_price": 1, "block_number": 1, "block_timestamp": "2026-02-01T00:00:00Z"}',
    '{"hash": "0x' + "c" * 64 + '", "from_address": "0x' + "1" * 40 + '", "value_eth": "3",'
    ' "gas_price": 1, "block_number": 1, "block_timestamp": "yesterday"}',
    "",
    '{"hash": "0x' + "d" * 64 + '", "from_address": "0x' + "2" * 40 + '", "to_address": null,'
    ' "value_eth": "0", "gas_price": 1, "block_number": 2,'
    ' "block_timestamp": "2026-02-01T00:00:12Z"}',
]


def test_bad_records_go_to_the_rejects_file_and_the_run_goes_on(
    tmp_path: Path, database: Database
) -> None:
    source = tmp_path / "broken.jsonl"
    source.write_text("\n".join(BROKEN) + "\n")
    rejects = tmp_path / "rejects.jsonl"
    summary = ingest([str(source)], database=database, options=IngestOptions(rejects=rejects))
    assert summary.inserted == 2
    assert summary.rejected == {"json": 1, "hash": 1, "value_eth": 1, "block_timestamp": 1}
    entries = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(e["line"], e["reason"].split(":")[0]) for e in entries] == [
        (2, "json"), (3, "hash"), (4, "value_eth"), (5, "block_timestamp"),
    ]  # fmt: skip
    assert "64 hex digits" in entries[1]["reason"]


def test_strict_stops_at_the_first_bad_record(tmp_path: Path, database: Database) -> None:
    source = tmp_path / "broken.jsonl"
    source.write_text("\n".join(BROKEN) + "\n")
    with pytest.raises(StrictModeError) as caught:
        ingest([str(source)], database=database,
               options=IngestOptions(strict=True, rejects=tmp_path / "r.jsonl"))  # fmt: skip
    assert caught.value.line == 2
    status = _rows(database, "select status from collection_runs")
    assert status == "failed"
    assert (
        cli.main(["ingest", str(source), "--strict", "--rejects", str(tmp_path / "r.jsonl")]) == 3
    )


def test_cli_exit_code_and_summary_with_rejects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "broken.jsonl"
    source.write_text("\n".join(BROKEN) + "\n")
    assert cli.main(["ingest", str(source), "--rejects", str(tmp_path / "r.jsonl")]) == 1
    out = capsys.readouterr().out
    assert "inserted              2" in out and "rejected              4" in out


def _etherscan_body(tmp_path: Path, body: object) -> Path:
    path = tmp_path / "txlist.json"
    path.write_text(json.dumps(body))
    return path


def test_etherscan_error_body_is_a_clear_error(
    tmp_path: Path, database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    body = {"status": "0", "message": "NOTOK", "result": "Max rate limit reached"}
    path = _etherscan_body(tmp_path, body)
    with pytest.raises(SourceError, match="Max rate limit reached"):
        ingest([str(path)], database=database, options=IngestOptions(rejects=None))
    assert cli.main(["ingest", str(path)]) == 4
    assert "Etherscan returned an error: NOTOK: Max rate limit reached" in capsys.readouterr().err
    events = _rows(
        database, "select count(*) from system_events where event_type = 'ingest.failed'"
    )
    assert events == 2


def test_etherscan_no_transactions_is_zero_rows(tmp_path: Path, database: Database) -> None:
    body = {"status": "0", "message": "No transactions found", "result": []}
    path = _etherscan_body(tmp_path, body)
    summary = ingest([str(path)], database=database, options=IngestOptions(rejects=None))
    assert (summary.read, summary.written) == (0, 0)
    assert _rows(database, "select status from collection_runs") == "succeeded"


def test_etherscan_failed_transactions_are_skipped_and_values_converted_exactly(
    tmp_path: Path, database: Database
) -> None:
    tx = {"blockNumber": "5", "timeStamp": "1767225600", "from": "0x" + "1" * 40, "to": "",
          "value": "1", "gasPrice": "7", "gasUsed": "21000", "isError": "0"}  # fmt: skip
    body = {"status": "1", "message": "OK", "result": [
        {**tx, "hash": "0x" + "e" * 64},
        {**tx, "hash": "0x" + "f" * 64, "isError": "1"},
        {**tx, "hash": "0x" + "9" * 64, "value": "-5"},
    ]}  # fmt: skip
    summary = ingest([str(_etherscan_body(tmp_path, body))], database=database,
                     options=IngestOptions(rejects=None))  # fmt: skip
    assert summary.inserted == 1 and summary.skipped and summary.rejected == {"value": 1}
    stored = _rows(
        database,
        "select value_eth::text || '|' || coalesce(to_address, 'null') from whale_transactions",
    )
    assert stored == "0.000000000000000001|null"


def test_standard_input(
    monkeypatch: pytest.MonkeyPatch, database: Database, tmp_path: Path
) -> None:
    feed = io.StringIO()
    write(feed, Format.CSV, 50, seed=3)
    monkeypatch.setattr("sys.stdin", io.StringIO(feed.getvalue()))
    assert cli.main(["ingest", "-", "--eth-usd", "2000", "--rejects", str(tmp_path / "r")]) == 0
    assert _rows(database) == 50


def test_usd_comes_from_the_latest_quote_and_min_value_filters(
    tmp_path: Path, database: Database
) -> None:
    from datetime import UTC, datetime

    with database.service_session() as s:
        for minute, price in ((0, "2500"), (1, "2600")):
            MarketDataRepository(s).create(data={
                "exchange": "coinbase", "symbol": "ETH/USD", "price": price,
                "observed_at": datetime(2026, 3, 1, 0, minute, tzinfo=UTC),
            })  # fmt: skip
    path = _feed(tmp_path, Format.JSONL, 200)
    summary = ingest([str(path)], database=database,
                     options=IngestOptions(min_value_eth=Decimal(100), rejects=None))  # fmt: skip
    assert summary.eth_usd == Decimal(2600)
    assert summary.filtered > 0 and summary.inserted + summary.filtered == 200
    wrong = _rows(
        database,
        "select count(*) from whale_transactions"
        " where value_usd <> round(value_eth * 2600, 2) or value_eth < 100",
    )
    assert wrong == 0


def test_the_score_is_log_scaled_between_thresholds() -> None:
    assert whale_score(Decimal(50)) == 0
    assert whale_score(Decimal(1000)) == Decimal("0.3333")
    assert whale_score(Decimal(10_000)) == Decimal("0.6667")
    assert whale_score(Decimal(10**7)) == 1
    assert whale_score(Decimal(1000), floor_eth=Decimal(10), ceiling_eth=Decimal(1000)) == 1
    assert wei_to_eth("1234567890123456789012") == Decimal("1234.567890123456789012")
    with pytest.raises(ValueError, match="negative"):
        wei_to_eth(-1)


@given(st.decimals(min_value=0, max_value=10**9, places=18, allow_nan=False, allow_infinity=False))
@settings(max_examples=300, deadline=None)
def test_the_score_table_equals_the_formula(value: Decimal) -> None:
    with localcontext() as ctx:
        ctx.prec = 60
        if value <= 100:
            exact = Decimal(0)
        elif value >= 100_000:
            exact = Decimal(1)
        else:
            exact = (value / 100).ln() / Decimal(1000).ln()
    assert whale_score(value) == exact.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_shows_rows_rate_and_how_far_through_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _feed(tmp_path, Format.JSONL, 5000)
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert (
        cli.main(["ingest", str(path), "--eth-usd", "3000", "--rejects", str(tmp_path / "r")]) == 0
    )
    shown = terminal.getvalue()
    assert "rows 5,000" in shown and "rows/s" in shown and "rejected 0" in shown
    assert "100%" in shown  # the bar counts the file's bytes: it has a total, hence an ETA
