"""`database maintain` and `inspect partitions` on a migrated database: partitions made ahead
(by the package, or by pg_partman where the server has it), an expired partition dropped or
archived with its rows and nothing else touched, idempotent runs (the package's maintenance),
a stray row in a default partition reported and failing the report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import URL

from database import maintenance
from database.connect import conninfo
from database.settings import get_settings
from database_tools.cli import main
from database_tools.inspect.report import Thresholds, default_partition_rows
from database_tools.testdb import create_test_database, drop_test_database

Conn = psycopg.Connection[Any]


@pytest.fixture
def maintained_url(database_server_url: URL, monkeypatch: pytest.MonkeyPatch) -> Iterator[URL]:
    url = create_test_database(database_server_url, prefix="maint")
    monkeypatch.setenv("DATABASE_URL", conninfo(url))
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()
    drop_test_database(url)


@pytest.fixture
def conn(maintained_url: URL) -> Iterator[Conn]:
    with psycopg.connect(conninfo(maintained_url), autocommit=True) as c:
        yield c


def _own_maintenance(conn: Conn) -> None:
    if maintenance.partman_schema(conn) is not None:
        pytest.skip("pg_partman maintains this server's partitions (its own retention)")


def _value(conn: Conn, query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def _names(conn: Conn, table: str) -> set[str]:
    return {p.name for p in maintenance.partitions(conn, table)}


def _json_lines(out: str) -> list[Any]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _covering(conn: Conn, table: str, at: datetime) -> list[str]:
    return [
        p.name
        for p in maintenance.partitions(conn, table)
        if p.lower is not None and p.upper is not None and p.lower <= at < p.upper
    ]


def test_maintain_makes_the_partitions_ahead_and_is_idempotent(
    conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    partman = maintenance.partman_schema(conn)
    # The furthest month ahead goes missing.
    last = max((p for p in maintenance.partitions(conn, "ohlcv") if not p.is_default),
               key=lambda p: p.lower or datetime.min.replace(tzinfo=UTC))  # fmt: skip
    assert last.lower is not None
    conn.execute(f"alter table public.ohlcv detach partition {last.name}")
    conn.execute(f"drop table {last.name}")

    assert main(["maintain", "--dry-run", "--json"]) == 0
    planned = _json_lines(capsys.readouterr().out)[0]
    if partman is None:
        assert [(s["table"], s["action"]) for s in planned] == [("ohlcv", "create")]
        assert planned[0]["target"] == f"from {last.lower.isoformat()}"
    else:
        assert {(s["table"], s["action"]) for s in planned} == {
            ("ohlcv", "partman"), ("market_data", "partman"), ("dex_trades", "partman"),
        }  # fmt: skip
    assert _covering(conn, "ohlcv", last.lower) == []  # a dry run changes nothing

    assert main(["maintain", "--json"]) == 0
    capsys.readouterr()
    [made] = _covering(conn, "ohlcv", last.lower)
    # The new partition is closed to the API roles like the others.
    assert not _value(conn, f"select has_table_privilege('anon', '{made}', 'select')")
    assert _value(conn, f"select relrowsecurity from pg_class where oid = '{made}'::regclass")

    if partman is None:
        assert main(["maintain", "--json"]) == 0
        assert _json_lines(capsys.readouterr().out)[0] == []


def test_retention_drops_or_archives_only_the_expired_partitions(
    conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    _own_maintenance(conn)
    # market_data keeps 12 weeks and drops; ohlcv keeps 24 months and archives.
    conn.execute(
        "create table public.market_data_p20200106 partition of public.market_data"
        " for values from ('2020-01-06 00:00:00+00') to ('2020-01-13 00:00:00+00');"
        "create table public.ohlcv_p20200101 partition of public.ohlcv"
        " for values from ('2020-01-01 00:00:00+00') to ('2020-02-01 00:00:00+00');"
        "insert into market_data (exchange, symbol, price, observed_at) values"
        " ('binance', 'OLD', 1, '2020-01-07T00:00:00Z'), ('binance', 'NEW', 2, now());"
        "insert into ohlcv (source, symbol, timeframe, bucket_start, open, high, low, close,"
        " volume) select 'binance', 'BTC', '1h', b, 1, 1, 1, 1, 1"
        " from (values (timestamptz '2020-01-02T00:00:00Z'), ('2020-01-03T00:00:00Z'),"
        " (date_trunc('hour', now()))) v(b)"
    )
    kept_partitions = {
        t: _names(conn, t) - {"public.market_data_p20200106", "public.ohlcv_p20200101"}
        for t in ("market_data", "ohlcv")
    }

    assert main(["inspect", "partitions", "--json"]) == 0
    tables = {r["table"]: r for r in _json_lines(capsys.readouterr().out)[1]}
    assert tables["market_data"]["retention_would_retire"] == "public.market_data_p20200106"
    assert tables["ohlcv"]["retention_would_retire"] == "public.ohlcv_p20200101"
    assert tables["dex_trades"]["retention_would_retire"] == ""

    assert main(["maintain", "--json"]) == 0
    steps = [(s["action"], s["target"]) for s in _json_lines(capsys.readouterr().out)[0]]
    assert steps == [
        ("detach", "public.market_data_p20200106"),
        ("drop", "public.market_data_p20200106"),
        ("detach", "public.ohlcv_p20200101"),
        ("archive", "public.ohlcv_p20200101"),
    ]
    assert _value(conn, "select to_regclass('public.market_data_p20200106')") is None
    assert _value(conn, "select to_regclass('archive.market_data_p20200106')") is None
    # Archived with its rows, outside the API's schema; the parent no longer has them.
    assert _value(conn, "select count(*) from archive.ohlcv_p20200101") == 2
    assert _value(conn, "select count(*) from ohlcv where bucket_start < '2021-01-01'") == 0
    for table, names in kept_partitions.items():
        assert _names(conn, table) == names
    assert _value(conn, "select array_agg(symbol) from market_data") == ["NEW"]
    assert _value(conn, "select count(*) from ohlcv") == 1

    assert main(["maintain", "--json"]) == 0
    assert _json_lines(capsys.readouterr().out)[0] == []


def test_a_stray_row_in_a_default_partition_is_reported(
    conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    assert default_partition_rows(conn, Thresholds()).status == "pass"
    conn.execute(
        "insert into market_data (exchange, symbol, price, observed_at)"
        " values ('binance', 'STRAY', 1, '1990-01-01T00:00:00Z')"
    )
    assert main(["inspect", "partitions", "--json"]) == 0
    listed, tables = _json_lines(capsys.readouterr().out)
    assert {r["table"]: r["default_rows"] for r in tables} == {
        "market_data": 1, "ohlcv": 0, "dex_trades": 0,
    }  # fmt: skip
    assert any(r["partition"].endswith("market_data_default") for r in listed)

    rule = default_partition_rows(conn, Thresholds())
    assert rule.status == "fail" and rule.offenders == ["market_data_default: 1 rows"]
    assert main(["inspect", "report", "--json"]) == 1
    rules = {r["rule"]: r for r in _json_lines(capsys.readouterr().out)[0]}
    assert rules["no rows in a default partition"]["status"] == "fail"
