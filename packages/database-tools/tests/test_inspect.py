"""`database inspect`: each condition created on a real server, seen by the right verb, and
`inspect report` failing on them while it passes on a freshly migrated database."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import URL

from database.connect import conninfo
from database.settings import get_settings
from database_tools.cli import main
from database_tools.inspect import queries
from database_tools.inspect.queries import InspectUnavailableError
from database_tools.inspect.report import Thresholds, load_thresholds, run_report
from database_tools.inspect.verify import run_verify
from database_tools.testdb import create_test_database, drop_test_database

Conn = psycopg.Connection[Any]


def _connect(url: URL, name: str = "ops-test") -> Conn:
    return psycopg.connect(conninfo(url), autocommit=True, application_name=name)


def _flush(conn: Conn) -> None:
    # The backend sends its pending statistics before it answers this statement's successor.
    conn.execute("select pg_stat_force_next_flush()")
    conn.execute("select 1")


def _wait_for(predicate: Callable[[], bool], *, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def conditions_url(database_server_url: URL) -> Iterator[URL]:
    """A database with the lasting conditions: unused and duplicate indexes, heavy
    sequential scans, dead rows after updates, a slow statement."""
    url = create_test_database(database_server_url, prefix="inspect")
    with _connect(url) as conn:
        conn.execute(
            "create table public.ops_indexed (id bigint primary key, a int, b int);"
            "insert into public.ops_indexed select g, g % 100, g from generate_series(1, 2000) g;"
            "create index ops_indexed_a on public.ops_indexed (a);"
            "create index ops_indexed_a_again on public.ops_indexed (a);"
            "create index ops_indexed_b on public.ops_indexed (b);"
            "create table public.ops_scanned (id bigint primary key, a int);"
            "insert into public.ops_scanned select g, g from generate_series(1, 2000) g;"
            "create table public.ops_churned (id bigint primary key, v int)"
            " with (autovacuum_enabled = false);"
            "insert into public.ops_churned select g, 0 from generate_series(1, 2000) g;"
            "update public.ops_churned set v = v + 1;"
        )
        for n in range(250):
            conn.execute("select count(*) from public.ops_scanned where a = %s", (n,))
        conn.execute("select pg_sleep(0.2)")
        _flush(conn)
    yield url
    drop_test_database(url)


@pytest.fixture
def inspect_conn(conditions_url: URL) -> Iterator[Conn]:
    with _connect(conditions_url, "ops-inspector") as conn:
        yield conn


def _row(records: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [r for r in records if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, records)
    return found[0]


def test_index_stats_report_unused_and_duplicate_indexes(inspect_conn: Conn) -> None:
    records = queries.index_stats(inspect_conn).records()
    b = _row(records, table="ops_indexed", index="ops_indexed_b")
    assert b["unused"] is True and b["scans"] == 0 and b["table_rows"] == 2000
    a = _row(records, table="ops_indexed", index="ops_indexed_a")
    assert a["duplicate_of"] == "ops_indexed_a_again"
    pk = _row(records, table="ops_indexed", index="ops_indexed_pkey")
    assert pk["unused"] is False  # it enforces the primary key


def test_table_stats_count_heavy_sequential_scans(inspect_conn: Conn) -> None:
    scanned = _row(queries.table_stats(inspect_conn).records(), table="ops_scanned")
    assert scanned["rows"] == 2000
    assert scanned["seq_scans"] >= 250
    assert scanned["seq_rows_read"] >= 250 * 2000


def test_vacuum_stats_see_dead_rows_after_updates(inspect_conn: Conn) -> None:
    churned = _row(queries.vacuum_stats(inspect_conn).records(), table="ops_churned")
    assert churned["dead_rows"] == 2000
    assert churned["expect_autovacuum"] is True
    assert churned["autovacuum_enabled"] is False
    assert churned["last_vacuum"] is None and churned["last_autovacuum"] is None


def test_slow_outliers_and_calls_read_pg_stat_statements(inspect_conn: Conn) -> None:
    slow = queries.slow(inspect_conn, min_mean_ms=150).records()
    sleep = [r for r in slow if "pg_sleep" in r["query"]]
    assert sleep and sleep[0]["calls"] == 1 and sleep[0]["mean_ms"] >= 150
    top = queries.outliers(inspect_conn, limit=50).records()
    assert any("pg_sleep" in r["query"] for r in top)
    frequent = queries.calls(inspect_conn, limit=5).records()
    assert any("ops_scanned" in r["query"] and r["calls"] == 250 for r in frequent)


class _Sessions:
    """A transaction holding a lock, a query waiting for it, a long query: on real sessions."""

    def __init__(self, url: URL) -> None:
        self.holder = _connect(url, "ops-holder")
        self.waiter = _connect(url, "ops-waiter")
        self.sleeper = _connect(url, "ops-sleeper")
        self.threads: list[threading.Thread] = []

    def _background(self, conn: Conn, statement: str) -> None:
        def run() -> None:
            with contextlib.suppress(psycopg.Error):  # cancelled at the end of the test
                conn.execute(statement)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def start(self) -> None:
        self.holder.execute("begin")
        self.holder.execute("lock table public.ops_scanned in access exclusive mode")
        self._background(self.waiter, "select count(*) from public.ops_scanned")
        self._background(self.sleeper, "select pg_sleep(60)")

    def pid(self, conn: Conn) -> int:
        return int(conn.info.backend_pid)

    def stop(self) -> None:
        with _connect_like(self.holder) as admin:
            admin.execute("select pg_cancel_backend(%s)", (self.pid(self.sleeper),))
        self.holder.execute("rollback")
        for thread in self.threads:
            thread.join(timeout=30)
        for conn in (self.holder, self.waiter, self.sleeper):
            conn.close()


def _connect_like(conn: Conn) -> Conn:
    params = conn.info.get_parameters()
    return psycopg.connect(
        host=conn.info.host,
        port=conn.info.port,
        user=params.get("user", conn.info.user),
        dbname=conn.info.dbname,
        autocommit=True,
    )


@pytest.fixture
def sessions(conditions_url: URL, inspect_conn: Conn) -> Iterator[_Sessions]:
    running = _Sessions(conditions_url)
    running.start()
    waiter, sleeper = running.pid(running.waiter), running.pid(running.sleeper)
    _wait_for(
        lambda: (
            any(r["blocked_pid"] == waiter for r in queries.blocking(inspect_conn).records())
            and any(
                r["pid"] == sleeper
                for r in queries.long_running(inspect_conn, min_seconds=0).records()
            )
        )
    )
    yield running
    running.stop()


def test_locks_and_blocking_name_who_waits_on_whom(sessions: _Sessions, inspect_conn: Conn) -> None:
    holder, waiter = sessions.pid(sessions.holder), sessions.pid(sessions.waiter)
    held = queries.locks(inspect_conn).records()
    mine = _row(held, pid=holder, object="ops_scanned")
    assert mine["mode"] == "AccessExclusiveLock" and mine["granted"] is True
    waiting = _row(held, pid=waiter, object="ops_scanned")
    assert waiting["granted"] is False and waiting["application_name"] == "ops-waiter"
    blocked = _row(queries.blocking(inspect_conn).records(), blocked_pid=waiter)
    assert blocked["blocking_pid"] == holder
    assert blocked["blocking_application"] == "ops-holder"
    assert "ops_scanned" in blocked["blocked_query"]


def test_long_running_finds_the_sleeping_query(sessions: _Sessions, inspect_conn: Conn) -> None:
    sleeper = sessions.pid(sessions.sleeper)
    row = _row(queries.long_running(inspect_conn, min_seconds=0).records(), pid=sleeper)
    assert row["state"] == "active" and "pg_sleep" in row["query"]
    assert row["application_name"] == "ops-sleeper"
    later = queries.long_running(inspect_conn, min_seconds=3600).records()
    assert all(r["pid"] != sleeper for r in later)


def test_report_fails_on_each_condition(
    sessions: _Sessions, inspect_conn: Conn, tmp_path: Path
) -> None:
    config = tmp_path / "report.toml"
    config.write_text(
        "[tool.database.report]\nlock_max_age_seconds = 0\nlong_running_seconds = 0\n"
        "slow_mean_ms = 150\n"
    )
    thresholds = load_thresholds(config=config)
    assert thresholds.slow_mean_ms == 150.0 and thresholds.cache_hit_min_ratio == 0.94
    results = {r.name: r for r in run_report(inspect_conn, thresholds)}
    failing = {name: " | ".join(r.offenders) for name, r in results.items() if r.failed}
    expected = {
        "no lock held longer than 0 s": "ops_scanned",
        "no ungranted locks": "ops_scanned",
        "no blocked queries": f"pid {sessions.pid(sessions.waiter)}",
        "no unused indexes": "public.ops_indexed_b",
        "no duplicate indexes": "public.ops_indexed_a = ops_indexed_a_again",
        "no table of 1000+ rows with sequential scans over 10% of its rows": "ops_scanned",
        "no table of 1000+ rows waiting on autovacuum": "public.ops_churned",
        "no table of 1000+ rows never vacuumed": "public.ops_churned",
        "no table with more than 20% dead rows": "public.ops_churned",
        "no query running longer than 0 s": "pg_sleep",
        "no statement with a mean time of 150 ms or more": "pg_sleep",
    }
    for rule, offender in expected.items():
        assert rule in failing, (rule, sorted(failing))
        assert offender in failing[rule], (rule, failing[rule])
    passing = {n for n, r in results.items() if r.status == "pass"}
    assert "no inactive replication slots" in passing


def test_report_command_exits_1_and_lists_offenders(
    conditions_url: URL,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", conninfo(conditions_url))
    get_settings.cache_clear()
    try:
        assert main(["inspect", "report", "--json"]) == 1
        rules = json.loads(capsys.readouterr().out)
        unused = _row(rules, rule="no unused indexes")
        assert unused["status"] == "fail" and any("ops_indexed_b" in o for o in unused["offenders"])
        assert main(["inspect", "index-stats", "--json"]) == 0
        indexes = json.loads(capsys.readouterr().out)
        assert _row(indexes, index="ops_indexed_b")["size"] > 0  # bytes in JSON
        assert main(["inspect", "table-stats"]) == 0
        assert "ops_scanned" in capsys.readouterr().out
    finally:
        get_settings.cache_clear()


@pytest.fixture(scope="module")
def clean_url(database_server_url: URL) -> Iterator[URL]:
    url = create_test_database(database_server_url, prefix="clean")
    yield url
    drop_test_database(url)


def _a_little_activity(conn: Conn) -> None:
    conn.execute(
        "insert into public.dexes (id, name, network) values ('uniswap', 'Uniswap', 'ethereum')"
        " on conflict (id) do nothing"
    )
    conn.execute("select * from public.dexes where id = 'uniswap'")
    conn.execute("select count(*) from public.whale_transactions")
    conn.execute("update public.dexes set name = 'Uniswap v3' where id = 'uniswap'")
    _flush(conn)


def test_report_passes_and_verify_is_clean_on_a_migrated_database(clean_url: URL) -> None:
    with _connect(clean_url) as conn:
        _a_little_activity(conn)
        results = run_report(conn, Thresholds())
        assert [r for r in results if r.status != "pass"] == []
        checks = run_verify(conn)
        assert {c.name: c.status for c in checks if c.status != "ok"} == {}
        amcheck = next(c for c in checks if c.name == "amcheck b-tree indexes")
        assert amcheck.examined > 40  # every index of the schema, checked


def test_thresholds_come_from_the_workspace_pyproject(tmp_path: Path) -> None:
    (tmp_path / "uv.lock").write_text("")
    (tmp_path / "pyproject.toml").write_text(
        "[tool.database.report]\nvacuum_min_rows = 50000\ncache_hit_min_ratio = 0.99\n"
    )
    loaded = load_thresholds(cwd=tmp_path)
    assert loaded.vacuum_min_rows == 50000 and loaded.cache_hit_min_ratio == 0.99
    (tmp_path / "pyproject.toml").write_text("[tool.database.report]\nvacum_min_rows = 1\n")
    with pytest.raises(Exception, match="unknown report setting"):
        load_thresholds(cwd=tmp_path)


def test_missing_pg_stat_statements_is_a_clear_message(clean_url: URL) -> None:
    with _connect(clean_url) as conn:
        conn.execute("drop extension pg_stat_statements")
        try:
            with pytest.raises(
                InspectUnavailableError, match="create extension pg_stat_statements"
            ):
                queries.outliers(conn)
            results = {r.name: r for r in run_report(conn, Thresholds())}
            slow = results["no statement with a mean time of 5000 ms or more"]
            assert slow.status == "skipped" and "pg_stat_statements" in slow.detail
        finally:
            conn.execute("create extension pg_stat_statements with schema extensions")


def test_reset_stats_zeroes_the_counters(clean_url: URL) -> None:
    with _connect(clean_url) as conn:
        _a_little_activity(conn)
        assert queries.calls(conn, limit=100).rows
        result = queries.reset_stats(conn)
        assert [status for _, status in result.rows] == ["reset", "reset"]
        _flush(conn)
        remaining = queries.calls(conn, limit=100).records()
        assert not any("public.dexes" in r["query"] for r in remaining)
        dexes = _row(queries.table_stats(conn).records(), table="dexes")
        assert dexes["seq_scans"] == 0 and dexes["index_scans"] == 0


def test_other_verbs_answer(clean_url: URL) -> None:
    with _connect(clean_url) as conn:
        graph = queries.relationships(conn)
        keys = graph[0].records()
        assert _row(keys, constraint="fk_pools_dex_id_dexes")["references"] == "dexes"
        assert _row(graph[1].records(), table="dexes")["referenced_by"] >= 1
        assert queries.db_stats(conn).records()[0]["database"] == clean_url.database
        assert {r["name"] for r in queries.cache_hit(conn).records()} == {
            "index hit rate",
            "table hit rate",
        }
        slots, standbys = queries.replication(conn)
        assert slots.columns[0] == "slot_name" and standbys.columns[0] == "application_name"
        conn.execute("analyze public.dexes")
        assert queries.bloat(conn).columns == ("schema", "name", "kind", "size", "bloat", "wasted")
