"""Time partitions (issue 15): what a partitioned `ohlcv` costs a range read and a bulk upsert,
and what it saves when a month is retired, each against an unpartitioned copy of the same rows
in the same run. `python -m bench.partitions [--quick]` runs these alone on a fresh database."""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL

from bench.harness import HEADER, Report, Result, connect, fresh_database
from database.maintenance import DETACH_LOCK_TIMEOUT
from database.repositories import BulkWriter
from database.schema import Ohlcv, OhlcvCreate
from database.schema.partitions import ARCHIVE_SCHEMA
from database.schema.types import Timeframe
from database.sessions import Database
from database.settings import load_settings

_PLAIN = "bench_ohlcv_plain"
_MONTHS = 12
_READ_BARS = 500


def _series(symbols: int, bars: int, step_minutes: int) -> str:
    """`bars` aligned bars per symbol, ending at this hour, `step_minutes` apart."""
    return f"""
        insert into ohlcv (source, symbol, timeframe, bucket_start, open, high, low, close, volume)
        select 'binance', 'S' || s || '/USDT', '{step_minutes}m',
               date_trunc('hour', now()) - make_interval(mins => i * {step_minutes}),
               100, 101, 99, 100, 1
          from generate_series(1, {symbols}) s, generate_series(1, {bars}) i
    """


def partitioned_ohlcv(
    report: Report, url: URL, *, symbols: int, bars: int, step: int, runs: int, judge: bool
) -> None:
    """`symbols` series of `bars` bars `step` minutes apart (about a year of them). The
    retention target is judged at full size only (`judge`): a quick run's month is a few
    thousand rows, which any statement retires in milliseconds."""
    g = "partitions"
    rows = symbols * bars
    with connect(url) as conn:
        conn.autocommit = True
        conn.execute("truncate ohlcv")
        conn.execute(
            "select private.create_partitions('public.ohlcv', 'month',"
            " now() - make_interval(months => %s), now())",
            (_MONTHS + 1,),
        )
        conn.execute(_series(symbols, bars, step))
        _plain_copy(conn)
        conn.execute("vacuum analyze ohlcv")
        conn.execute(f"vacuum analyze {_PLAIN}")
        months = conn.execute(
            "select count(*) from pg_inherits where inhparent = 'public.ohlcv'::regclass"
        ).fetchone()

        # A 500-bar range read in the middle of one series, bounds bound as get_range binds
        # them (so the planner prunes with their values).
        hour = conn.execute("select date_trunc('hour', now())").fetchone()
        assert hour is not None
        end = hour[0] - timedelta(minutes=bars // 2 * step)
        start = end - timedelta(minutes=_READ_BARS * step)

        def read(table: str) -> float:
            sql = (
                f"select bucket_start, open, high, low, close, volume from {table}"
                " where source = 'binance' and symbol = 'S1/USDT' and timeframe = %s"
                " and bucket_start >= %s and bucket_start < %s order by bucket_start"
            )
            started = time.perf_counter()
            assert len(conn.execute(sql, (f"{step}m", start, end)).fetchall()) == _READ_BARS
            return (time.perf_counter() - started) * 1000

        # Alternating, so a noisy stretch of the machine lands on both sides alike.
        samples: dict[str, list[float]] = {_PLAIN: [], "ohlcv": []}
        for _ in range(runs + 1):
            for table, times in samples.items():
                times.append(read(table))
        plain_ms, parted_ms = (statistics.median(t[1:]) for t in samples.values())
        # psycopg prepares a statement from its 5th run; the server may then switch it to a
        # generic plan, which can prune only at executor start. Say which plans it used.
        plans = conn.execute(
            "select generic_plans, custom_plans from pg_prepared_statements"
            " where statement like '%from ohlcv where%'"
        ).fetchone()

        # Retiring a month (the oldest full ones: the first is partly filled): a DELETE of its
        # rows against detaching its partition and moving it to the archive schema (what ohlcv
        # declares) or dropping it (the other way a partitioned table may retire a month).
        (first, lower, upper), (second, _, _) = _oldest_full_months(conn, 2)
        month_bytes = _scalar(conn, "select pg_total_relation_size(%s::regclass)", second)
        # A month due for retirement was written long ago: its pages are on disk, not dirty in
        # memory (freshly loaded, the drop waits on their writeback: twice as long here).
        _checkpoint(conn)
        with _measured(conn) as delete:
            deleted = conn.execute(
                f"delete from {_PLAIN} where bucket_start >= %s and bucket_start < %s",
                (lower, upper),
            ).rowcount
            # Its space becomes reusable only then (not returned: the month is the heap's head).
            conn.execute(f"vacuum {_PLAIN}")
        _checkpoint(conn)
        with _measured(conn) as archive:
            _detach(conn, first)
            conn.execute(f"alter table {first} set schema {ARCHIVE_SCHEMA}")
        _checkpoint(conn)
        with _measured(conn) as drop:
            _detach(conn, second)
            detach_s = time.perf_counter() - drop.started
            conn.execute(f"drop table {second}")
        conn.execute(f"drop table {ARCHIVE_SCHEMA}.{first.split('.')[-1]}")
        conn.execute(f"drop table {_PLAIN}")
        conn.execute("truncate ohlcv")
        floor_s = _unlink_floor(conn, month_bytes)
    count = months[0] if months else 0
    base = report.add(
        Result(g, "500-bar range read, unpartitioned copy (baseline)", round(plain_ms, 3), "ms",
               note=f"{rows:,} bars, {symbols} series of {step}m bars over {_MONTHS} months;"
               f" median of {runs}")
    )  # fmt: skip
    report.add(
        Result(g, "500-bar range read, partitioned ohlcv", round(parted_ms, 3), "ms", base.name,
               round(parted_ms / plain_ms, 3), "<= 1.1x", parted_ms / plain_ms <= 1.1,
               note=f"{count} partitions; plans: {_plans(plans)}")
    )  # fmt: skip
    base = report.add(
        Result(g, "retire a month: DELETE + VACUUM, unpartitioned copy (baseline)",
               round(delete.seconds * 1000, 1), "ms",
               note=f"{deleted:,} rows; {_mb(delete.wal)} of WAL")
    )  # fmt: skip
    speedup = delete.seconds / archive.seconds
    report.add(
        Result(g, "retire a month as ohlcv declares it: detach, move to archive",
               round(archive.seconds * 1000, 1), "ms", base.name, round(speedup, 1),
               ">= 100x faster" if judge else None, (speedup >= 100) if judge else None,
               note=f"{_mb(archive.wal)} of WAL"
               + ("" if judge else "; target judged in the full run (a month of 1M bars)"))
    )  # fmt: skip
    floor = (
        f"; the filesystem alone takes {floor_s * 1000:.1f} ms to free a file of the month's"
        f" {_mb(month_bytes)}"
        if floor_s is not None
        else ""
    )
    report.add(
        Result(g, "retire a month: detach and drop its partition", round(drop.seconds * 1000, 1),
               "ms", base.name, round(delete.seconds / drop.seconds, 1),
               note=f"detach {detach_s * 1000:.1f} ms, drop"
               f" {(drop.seconds - detach_s) * 1000:.1f} ms, {_mb(drop.wal)} of WAL{floor}")
    )  # fmt: skip


def _plain_copy(conn: psycopg.Connection[Any]) -> None:
    """`_PLAIN`: ohlcv's rows in one plain table with ohlcv's defaults, CHECKs and indexes (its
    own indexes' definitions, so one the model adds is on both sides), built after the load."""
    conn.execute(f"drop table if exists {_PLAIN}")
    conn.execute(f"create table {_PLAIN} (like ohlcv including defaults including constraints)")
    conn.execute(f"insert into {_PLAIN} select * from ohlcv")
    indexes = conn.execute(
        "select c.relname, pg_get_indexdef(i.indexrelid) from pg_index i"
        " join pg_class c on c.oid = i.indexrelid where i.indrelid = 'public.ohlcv'::regclass"
    ).fetchall()
    for name, definition in indexes:
        on = definition.split(" USING ", 1)[1]
        unique = "unique " if definition.startswith("CREATE UNIQUE") else ""
        conn.execute(f"create {unique}index {name}_plain on {_PLAIN} using {on}")


def _oldest_full_months(conn: psycopg.Connection[Any], n: int) -> list[tuple[str, str, str]]:
    """The `n` oldest partitions holding rows after the first (partly filled): each one's name
    and bounds."""
    found = conn.execute(
        "select c.oid::regclass::text, pg_get_expr(c.relpartbound, c.oid)"
        " from pg_inherits i join pg_class c on c.oid = i.inhrelid"
        " where i.inhparent = 'public.ohlcv'::regclass"
        " and pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'"
        " and exists (select from ohlcv o where o.tableoid = c.oid)"
        " order by c.relname limit %s offset 1",
        (n,),
    ).fetchall()
    assert len(found) == n
    return [
        (name, bound.split("FROM ('", 1)[1].split("')", 1)[0],
         bound.split(" TO ('", 1)[1].split("')", 1)[0])
        for name, bound in found
    ]  # fmt: skip


def _detach(conn: psycopg.Connection[Any], partition: str) -> None:
    # As `database maintain` detaches where a default partition exists (not concurrently).
    conn.execute(f"set lock_timeout = '{DETACH_LOCK_TIMEOUT}'")
    conn.execute(f"alter table ohlcv detach partition {partition}")
    conn.execute("reset lock_timeout")


@dataclass
class _Measured:
    started: float = 0.0
    seconds: float = 0.0
    wal: int = 0  # bytes of WAL written meanwhile (by anyone: the bench is alone)


@contextlib.contextmanager
def _measured(conn: psycopg.Connection[Any]) -> Iterator[_Measured]:
    """Wall time and WAL bytes of the block (autocommit: each statement commits in it)."""
    got = _Measured()
    lsn = _scalar(conn, "select pg_current_wal_insert_lsn()")
    got.started = time.perf_counter()
    yield got
    got.seconds = time.perf_counter() - got.started
    got.wal = int(_scalar(conn, "select pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", lsn))


def _unlink_floor(conn: psycopg.Connection[Any], size: int) -> float | None:
    """Median seconds of 3 unlinks of a file of `size` bytes (written, synced, out of the page
    cache) beside the server's data directory: what the filesystem takes to free a month's
    bytes, the floor of any drop of it. None when the server's files are not reachable here."""
    try:
        directory = Path(_scalar(conn, "show data_directory")).parent
    except psycopg.errors.InsufficientPrivilege:
        return None
    local = conn.info.host.startswith("/") or conn.info.host in ("127.0.0.1", "::1", "localhost")
    if not (local and directory.is_dir() and os.access(directory, os.W_OK)):
        return None
    probe, block, times = directory / ".bench-unlink-probe", bytes(1 << 20), []
    try:
        for _ in range(3):
            with probe.open("wb") as f:
                for _ in range(size >> 20):
                    f.write(block)
                f.flush()
                os.fsync(f.fileno())
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            started = time.perf_counter()
            probe.unlink()
            times.append(time.perf_counter() - started)
    finally:
        probe.unlink(missing_ok=True)
    return statistics.median(times)


def _scalar(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, params or None).fetchone()
    assert row is not None
    return row[0]


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB" if size >= 100_000 else f"{size / 1e3:,.1f} kB"


def _plans(row: tuple[Any, ...] | None) -> str:
    return "?" if row is None else f"{row[1]} custom, {row[0]} generic"


def _unpartition(url: URL) -> None:
    """Make `ohlcv` of a fresh database an unpartitioned table of the same columns, defaults,
    CHECKs and indexes, under the same constraint names (what the package's upsert names)."""
    with connect(url) as conn:
        conn.execute("alter table ohlcv rename to ohlcv_partitioned")
        conn.execute("create table ohlcv (like ohlcv_partitioned including all)")
        conn.execute("drop table ohlcv_partitioned")
        for kind, name in (
            ("p", "pk_ohlcv"),
            ("u", "uq_ohlcv_source_symbol_timeframe_bucket_start"),
        ):
            row = conn.execute(
                "select conname from pg_constraint"
                " where conrelid = 'public.ohlcv'::regclass and contype = %s",
                (kind,),
            ).fetchone()
            assert row is not None
            conn.execute(
                sql.SQL("alter table ohlcv rename constraint {} to {}").format(
                    sql.Identifier(row[0]), sql.Identifier(name)
                )
            )
        conn.commit()


def _history(
    conn: psycopg.Connection[Any], *, symbols: int, bars: int, step: int, end: datetime
) -> None:
    conn.execute(
        "insert into ohlcv (source, symbol, timeframe, bucket_start, open, high, low, close,"
        " volume) select 'binance', 'S' || s || '/USDT', %s, %s - make_interval(mins => i * %s),"
        " 100, 101, 99, 100, 1"
        " from generate_series(1, %s) s, generate_series(1, %s) i",
        (f"{step}m", end, step, symbols, bars),
    )


def _batch(
    *, turn: int, symbols: int, bars: int, step: int, size: int, end: datetime
) -> list[OhlcvCreate]:
    """Half revised bars of the history spread over every month (updates), half bars of a new
    series over the same months (inserts), interleaved; another slice of both each turn."""
    half = size // 2
    every = max(1, symbols * bars // half)
    timeframe = Timeframe(f"{step}m")

    def bar(symbol: str, i: int, close: Decimal) -> OhlcvCreate:
        return OhlcvCreate(
            source="binance", symbol=symbol, timeframe=timeframe,
            bucket_start=end - timedelta(minutes=i * step),
            open=Decimal(100), high=Decimal(101), low=Decimal(99), close=close, volume=Decimal(1),
        )  # fmt: skip

    rows = []
    for k in range(half):
        n = k * every + turn
        rows.append(bar(f"S{n // bars % symbols + 1}/USDT", n % bars + 1, Decimal("100.5")))
        new = k * (bars // half or 1) % bars + 1
        rows.append(bar(f"N{turn}X{k // bars}/USDT", new, Decimal(100)))
    return rows


@contextlib.contextmanager
def _unpartitioned_statement() -> Iterator[None]:
    """The package renders its merge from the model: for a partitioned table one that tells new
    rows by the ids they were staged with (a partitioned INSERT cannot return xmax), for a plain
    one by xmax. The baseline runs what the package ran before ohlcv was partitioned: xmax."""
    options = Ohlcv.__table__.dialect_options["postgresql"]  # type: ignore[attr-defined]
    partition_by = options["partition_by"]
    options["partition_by"] = None
    try:
        yield
    finally:
        options["partition_by"] = partition_by


def partitioned_upsert(
    report: Report, url: URL, *, symbols: int, bars: int, step: int, size: int, repeat: int
) -> None:
    """The package's bulk upsert of the same `size` rows into partitioned `ohlcv` and into an
    unpartitioned copy (a second fresh database whose `ohlcv` is a plain table), both holding
    the same `symbols` x `bars` history over about a year; the sides alternate, turn by turn.
    The copy is written twice: with the statement the package uses for a plain table (the
    baseline), and with the partitioned table's statement, to tell the table's share of any
    difference from the statement's."""
    g = "partitions"
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with fresh_database("bench_plain") as plain_url:
        _unpartition(plain_url)
        urls = {"partitioned": url, "plain": plain_url}
        for name, target in urls.items():
            with connect(target) as conn:
                conn.autocommit = True
                conn.execute("truncate ohlcv")
                if name == "partitioned":
                    conn.execute(
                        "select private.create_partitions('public.ohlcv', 'month',"
                        " %s - make_interval(months => %s), %s)",
                        (hour, _MONTHS + 1, hour),
                    )
                _history(conn, symbols=symbols, bars=bars, step=step, end=hour)
        settings = load_settings()
        writers = {n: BulkWriter(Database(settings=settings, url=u)) for n, u in urls.items()}
        sides: dict[str, tuple[str, Callable[[], AbstractContextManager[None]]]] = {
            "plain": ("plain", _unpartitioned_statement),
            "partitioned": ("partitioned", contextlib.nullcontext),
            "plain, partitioned statement": ("plain", contextlib.nullcontext),
        }
        seconds: dict[str, list[float]] = {side: [] for side in sides}
        for turn in range(repeat):
            # The baseline and the partitioned table get the same rows; the copy's second
            # writer the same number of others (the same rows again would change nothing).
            same, other = (
                _batch(turn=t, symbols=symbols, bars=bars, step=step, size=size, end=hour)
                for t in (2 * turn, 2 * turn + 1)
            )
            order = list(sides) if turn % 2 == 0 else list(sides)[::-1]
            for side in order:
                name, statement = sides[side]
                rows = other if side == "plain, partitioned statement" else same
                _settle(urls[name])
                with statement():
                    started = time.perf_counter()
                    result = writers[name].upsert(Ohlcv, rows=rows)
                    seconds[side].append(time.perf_counter() - started)
                assert (result.inserted, result.updated) == (size // 2, size // 2), result
        for writer in writers.values():
            writer.database.dispose()
        with connect(url) as conn:
            conn.execute("truncate ohlcv")
            conn.commit()
    note = f"{size:,} rows, half revising bars in every month, half new, into {symbols * bars:,}"
    base = report.rate(
        g, "bulk upsert, unpartitioned copy (baseline)", size, statistics.median(seconds["plain"]),
        note=f"{note}; median of {repeat}, alternating",
    )  # fmt: skip
    report.rate(
        g, "bulk upsert, partitioned ohlcv", size, statistics.median(seconds["partitioned"]),
        baseline=base, at_least=0.9,
    )  # fmt: skip
    report.rate(
        g, "bulk upsert, unpartitioned, partitioned's SQL", size,
        statistics.median(seconds["plain, partitioned statement"]), baseline=base,
        note="the same rows through the statement the package renders for a partitioned table",
    )  # fmt: skip


def _settle(url: URL) -> None:
    """Vacuum and checkpoint, so one run's dead rows and dirty pages do not land on the next."""
    with connect(url) as conn:
        conn.autocommit = True
        conn.execute("vacuum analyze ohlcv")
        _checkpoint(conn)


def _checkpoint(conn: psycopg.Connection[Any]) -> None:
    # Not a superuser on DATABASE_URL's server: measure without it.
    with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
        conn.execute("checkpoint")


def run(report: Report, url: URL, *, quick: bool) -> None:
    """The partition benchmarks at the quick or the full run's sizes."""
    partitioned_ohlcv(
        report,
        url,
        symbols=10 if quick else 20,
        bars=35_000 if quick else 500_000,  # 15-minute bars (quick) or 1-minute: a year
        step=15 if quick else 1,
        runs=200,  # 4 ms reads: a median of 50 moved by a few hundredths run to run
        judge=not quick,
    )
    partitioned_upsert(
        report,
        url,
        symbols=10 if quick else 20,
        bars=20_000 if quick else 100_000,  # 15- or 5-minute bars: about a year
        step=15 if quick else 5,
        size=4_000 if quick else 20_000,
        repeat=9,  # 4,000 rows take a quarter second: a noisy turn moves a median of 5
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench.partitions", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the quick run's sizes")
    quick = parser.parse_args().quick
    report = Report(quick=quick)
    print(HEADER)
    with fresh_database() as url:
        run(report, url, quick=quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
