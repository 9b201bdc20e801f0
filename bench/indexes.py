"""BRIN against B-tree on an append-only time column, the choice issue 15 leaves to measurement.

A scratch table shaped like the stream tables' time columns (rows arrive in time order, a few a
second) gets one index at a time; each is timed on the reads our queries make of such a
column: a narrow range (an hour), a wide range aggregated (a week), and the newest rows in
order (the keyset pages and latest-N reads), with its size beside it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from sqlalchemy.engine import URL

from bench.harness import Report, Result, connect

_TABLE = "bench_time_index"
_START = "timestamptz '2026-01-01'"
_SECONDS_APART = 2  # ~43,000 rows a day

# (label, statement): what the whale, market and DEX reads ask of a time column.
_READS: tuple[tuple[str, str], ...] = (
    (
        "rows of one hour",
        f"select count(value) from {_TABLE}"
        f" where at >= {_START} + interval '10 days' and at < {_START} + interval '10 days 1 hour'",
    ),
    (
        "sum over one week",
        f"select sum(value) from {_TABLE}"
        f" where at >= {_START} + interval '3 days' and at < {_START} + interval '10 days'",
    ),
    ("newest 50 in order", f"select id, at from {_TABLE} order by at desc limit 50"),
)
_KINDS = {"btree": "", "brin": "using brin"}


def _median_ms(run: Callable[[], object], repeat: int) -> float:
    run()  # warm
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def brin_or_btree(report: Report, url: URL, *, rows: int, repeat: int) -> None:
    g = "indexes"
    with connect(url) as conn:
        conn.autocommit = True
        conn.execute(f"drop table if exists {_TABLE}")
        conn.execute(
            f"create table {_TABLE} (id bigint generated always as identity primary key,"
            " at timestamptz not null, value numeric not null)"
        )
        conn.execute(
            f"insert into {_TABLE} (at, value) select {_START} + make_interval(secs => i *"
            f" {_SECONDS_APART}), (i %% 1000) / 10.0 from generate_series(1, %s) i",
            (rows,),
        )
        timings: dict[str, dict[str, float]] = {}
        sizes: dict[str, int] = {}
        for kind, using in _KINDS.items():
            conn.execute(f"create index {_TABLE}_at on {_TABLE} {using} (at)")
            conn.execute(f"vacuum analyze {_TABLE}")
            sizes[kind] = int(
                conn.execute(f"select pg_relation_size('{_TABLE}_at')").fetchone()[0]  # type: ignore[index]
            )
            timings[kind] = {
                label: _median_ms(lambda sql=sql: conn.execute(sql).fetchall(), repeat)  # type: ignore[misc]
                for label, sql in _READS
            }
            conn.execute(f"drop index {_TABLE}_at")
        conn.execute(f"drop table {_TABLE}")
    for label, _ in _READS:
        base = report.add(
            Result(g, f"B-tree on a time column: {label}", round(timings["btree"][label], 3),
                   "ms", note=f"{rows:,} rows in time order; median of {repeat}")
        )  # fmt: skip
        report.add(
            Result(g, f"BRIN on a time column: {label}", round(timings["brin"][label], 3), "ms",
                   base.name, round(timings["brin"][label] / base.value, 3))
        )  # fmt: skip
    tree = report.add(Result(g, "B-tree on a time column: size", sizes["btree"] // 1024, "KiB"))
    report.add(
        Result(g, "BRIN on a time column: size", sizes["brin"] // 1024, "KiB", tree.name,
               round(sizes["brin"] / sizes["btree"], 5),
               note="kept off our tables: our reads of time columns are narrow ranges and"
               " ordered pages, where a B-tree wins by far")
    )  # fmt: skip
