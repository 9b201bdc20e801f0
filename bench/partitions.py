"""Time partitions (issue 15): what a partitioned `ohlcv` costs a range read, and what it saves
when a month is retired, each against an unpartitioned copy of the same rows in the same run."""

from __future__ import annotations

import statistics
import time
from datetime import timedelta

from sqlalchemy.engine import URL

from bench.harness import Report, Result, connect

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
        conn.execute(f"drop table if exists {_PLAIN}")
        conn.execute(f"create table {_PLAIN} (like ohlcv including defaults including constraints)")
        conn.execute(f"insert into {_PLAIN} select * from ohlcv")
        conn.execute(f"create unique index on {_PLAIN} (source, symbol, timeframe, bucket_start)")
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

        def read_ms(table: str) -> float:
            sql = (
                f"select bucket_start, open, high, low, close, volume from {table}"
                " where source = 'binance' and symbol = 'S1/USDT' and timeframe = %s"
                " and bucket_start >= %s and bucket_start < %s order by bucket_start"
            )
            params = (f"{step}m", start, end)
            assert len(conn.execute(sql, params).fetchall()) == _READ_BARS
            samples = []
            for _ in range(runs):
                started = time.perf_counter()
                conn.execute(sql, params).fetchall()
                samples.append((time.perf_counter() - started) * 1000)
            return statistics.median(samples)

        plain_ms, parted_ms = read_ms(_PLAIN), read_ms("ohlcv")

        # Retiring a month (the oldest full one: the first is partly filled): a DELETE of its
        # rows against detaching and dropping its partition.
        oldest = conn.execute(
            "select c.oid::regclass::text, pg_get_expr(c.relpartbound, c.oid)"
            " from pg_inherits i join pg_class c on c.oid = i.inhrelid"
            " where i.inhparent = 'public.ohlcv'::regclass"
            " and pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'"
            " and exists (select from ohlcv o where o.tableoid = c.oid)"
            " order by c.relname limit 1 offset 1"
        ).fetchone()
        assert oldest is not None
        partition, bound = oldest
        lower = bound.split("FROM ('", 1)[1].split("')", 1)[0]
        upper = bound.split(" TO ('", 1)[1].split("')", 1)[0]
        started = time.perf_counter()
        deleted = conn.execute(
            f"delete from {_PLAIN} where bucket_start >= %s and bucket_start < %s", (lower, upper)
        ).rowcount
        conn.execute(f"vacuum {_PLAIN}")  # a DELETE's space comes back only then
        delete_s = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute(f"alter table ohlcv detach partition {partition}")
        conn.execute(f"drop table {partition}")
        drop_s = time.perf_counter() - started
        conn.execute(f"drop table {_PLAIN}")
        conn.execute("truncate ohlcv")
    count = months[0] if months else 0
    base = report.add(
        Result(g, "500-bar range read, unpartitioned copy (baseline)", round(plain_ms, 3), "ms",
               note=f"{rows:,} bars, {symbols} series of {step}m bars over {_MONTHS} months;"
               f" median of {runs}")
    )  # fmt: skip
    report.add(
        Result(g, "500-bar range read, partitioned ohlcv", round(parted_ms, 3), "ms", base.name,
               round(parted_ms / plain_ms, 3), "<= 1.1x", parted_ms / plain_ms <= 1.1,
               note=f"{count} partitions")
    )  # fmt: skip
    base = report.add(
        Result(g, "retire a month: DELETE + VACUUM, unpartitioned copy (baseline)",
               round(delete_s * 1000, 1), "ms", note=f"{deleted:,} rows")
    )  # fmt: skip
    speedup = delete_s / drop_s
    report.add(
        Result(g, "retire a month: detach and drop its partition", round(drop_s * 1000, 1), "ms",
               base.name, round(speedup, 1), ">= 100x faster" if judge else None,
               (speedup >= 100) if judge else None,
               note="" if judge else "target judged in the full run (a month of 1M bars)")
    )  # fmt: skip
