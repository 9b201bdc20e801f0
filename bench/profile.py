"""`python -m bench.profile [--quick]`: where the time of the two bulk paths goes.

For the package's upsert from raw dicts (empty table) and the whale-tracker JSONL ingest, each
against a raw COPY of the same rows, alternating on a fresh database:

* wall time and CPU seconds, split into the client (the caller's thread, the writer's thread)
  and the server (the PostgreSQL server's processes: the server runs on this machine);
* inside the client, microseconds per row of each stage run alone on the same rows (best of
  three: the stage's own cost, not the machine's noise): read, parse, validate, score, build,
  sort, format, and the COPY write (sending the formatted text, client CPU);
* the merge statement of the staging path, per row, for changed and unchanged rows.

Figures, not targets: the targets are in `make bench`.
"""

from __future__ import annotations

import argparse
import gc
import operator
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pydantic_core
from sqlalchemy.engine import URL

from bench.database import WHALE_COLUMNS, raw_copy, truncate, whale_rows, whale_tuples
from bench.harness import connect, fresh_database
from bench.load import cpu_seconds
from bench.whale_tracker import jsonl_feed
from database.repositories import BulkWriter
from database.repositories.bulk_copy import Formatter
from database.repositories.bulk_plan import Statements, copy_plan
from database.repositories.rows import RowValidator
from database.schema import Chain, WhaleTransaction, WhaleTransactionCreate
from database.sessions import Database
from database.settings import load_settings
from whale_tracker.ingest.pipeline import IngestOptions, ingest
from whale_tracker.ingest.scoring import UsdPrice, scorer
from whale_tracker.ingest.sources import Format, records

PRICE = Decimal(3000)


class Meter:
    """Wall, client CPU (this process; the calling thread apart) and server CPU of one call."""

    def __init__(self, url: URL) -> None:
        with connect(url) as conn:
            row = conn.execute("select pg_backend_pid()").fetchone()
        backend = int(row[0]) if row else 0
        status = Path(f"/proc/{backend}/status").read_text().splitlines()
        self.postmaster = int(next(s.split()[1] for s in status if s.startswith("PPid:")))

    def server(self) -> float:
        pids = [self.postmaster]
        for task in os.listdir(f"/proc/{self.postmaster}/task"):
            children = Path(f"/proc/{self.postmaster}/task/{task}/children").read_text()
            pids += [int(p) for p in children.split()]
        return sum(cpu_seconds(pids).values())

    def __call__(self, fn: Callable[[], Any]) -> tuple[float, float, float, float]:
        """(wall, caller thread CPU, other threads' CPU, server CPU) of `fn()`."""
        s0, p0, t0, w0 = self.server(), time.process_time(), time.thread_time(), time.perf_counter()
        fn()
        w1, t1, p1, s1 = time.perf_counter(), time.thread_time(), time.process_time(), self.server()
        return w1 - w0, t1 - t0, (p1 - p0) - (t1 - t0), s1 - s0


def per_row(fn: Callable[[], Any], n: int, runs: int = 3) -> tuple[float, Any]:
    """Best of `runs`, in microseconds per row, and the last result. The cyclic GC is paused,
    as the bulk writer pauses it while it builds a chunk."""
    best, value = float("inf"), None
    for _ in range(runs):
        gc.disable()
        try:
            started = time.perf_counter()
            value = fn()
            best = min(best, time.perf_counter() - started)
        finally:
            gc.enable()
    return best / n * 1e6, value


Runs = dict[str, list[tuple[float, float, float, float]]]


def against_raw_copy(
    url: URL, tuples: list[tuple[Any, ...]], name: str, run: Callable[[], object], repeat: int
) -> Runs:
    """`run` and a raw COPY of `tuples` into an empty whale_transactions, alternating, each
    metered `repeat` times."""
    meter = Meter(url)
    runs: Runs = {"raw COPY": [], name: []}
    for _ in range(repeat):
        truncate(url, "whale_transactions")
        runs["raw COPY"].append(
            meter(lambda: raw_copy(url, "whale_transactions", WHALE_COLUMNS, tuples))
        )
        truncate(url, "whale_transactions")
        runs[name].append(meter(run))
    return runs


def split(title: str, n: int, runs: Runs) -> None:
    print(f"\n{title}: {n:,} rows, medians of {len(next(iter(runs.values())))} alternating runs")
    print(f"  {'':<34} {'wall s':>8} {'rows/s':>9} {'client CPU s':>22} {'server CPU s':>13}")
    walls = {}
    for name, samples in runs.items():
        wall, caller, others, server = (statistics.median(s[i] for s in samples) for i in range(4))
        walls[name] = wall
        client = f"{caller + others:.3f} ({caller:.3f}+{others:.3f})"
        print(f"  {name:<34} {wall:>8.3f} {n / wall:>9,.0f} {client:>22} {server:>13.3f}")
    (base, base_wall), (name, wall) = list(walls.items())[:2]
    print(f"  ratio {name} / {base}: {base_wall / wall:.3f} (client CPU: caller+writer threads)")


def stages(title: str, n: int, figures: list[tuple[str, float]]) -> None:
    print(f"  {title} (us/row, each alone, best of 3):")
    total = sum(us for _, us in figures)
    for name, us in figures:
        print(f"    {name:<40} {us:>7.2f}")
    print(f"    {'client total':<40} {total:>7.2f}")


def copy_write(url: URL, plan: Any, text: Any, n: int) -> tuple[float, float]:
    """Client CPU and wall per row of sending formatted text into a stage table (no indexes)."""
    statements = Statements(plan, "update")
    with connect(url) as conn:
        conn.execute(statements.create_stage)
        cpu, started = time.thread_time(), time.perf_counter()
        with conn.cursor() as cur, cur.copy(statements.stage_copy) as copy:
            copy.write(text.segment(0, len(text.ends)))
        return (time.thread_time() - cpu) / n * 1e6, (time.perf_counter() - started) / n * 1e6


def merge_statement(url: URL, plan: Any, text: Any, n: int) -> float:
    """Seconds per row of the staging path's merge statement alone (server work)."""
    statements = Statements(plan, "update")
    with connect(url) as conn:
        conn.execute(statements.create_stage)
        with conn.cursor() as cur, cur.copy(statements.stage_copy) as copy:
            copy.write(text.segment(0, len(text.ends)))
        started = time.perf_counter()
        conn.execute(statements.merge)
        seconds = time.perf_counter() - started
        conn.rollback()
    return seconds / n * 1e6


def profile_dicts(url: URL, n: int, repeat: int) -> None:
    rows = whale_rows(n, seed=1)
    tuples = whale_tuples(rows)
    dicts = [r.model_dump() for r in rows]
    db = Database(settings=load_settings(), url=url)
    writer = BulkWriter(db)
    runs = against_raw_copy(
        url, tuples, "package", lambda: writer.upsert(WhaleTransaction, rows=dicts), repeat
    )
    split("package upsert from raw dicts, empty table", n, runs)

    plan = copy_plan(WhaleTransaction, None, {})
    validator = RowValidator(WhaleTransactionCreate)
    build = plan.builder()
    key = operator.itemgetter(*plan.bare_key_positions())
    formatter = Formatter(plan)
    validate, valid = per_row(lambda: validator.validate_many(dicts), n)
    built_us, built = per_row(lambda: list(map(build, valid)), n)
    sort_us, ordered = per_row(lambda: sorted(built, key=key), n)
    format_us, text = per_row(lambda: formatter.format(ordered), n)
    truncate(url, "whale_transactions")
    send_cpu, send_wall = copy_write(url, plan, text, n)
    stages(
        "client, package",
        n,
        [
            ("validate (pydantic-core, dicts)", validate),
            ("build COPY tuples", built_us),
            ("sort by key", sort_us),
            ("format COPY text (ids included)", format_us),
            ("COPY write (send, client CPU)", send_cpu),
        ],
    )
    print(f"  COPY into a stage table without indexes: {send_wall:.2f} us/row wall")
    # The staging path's merge: every key present, once unchanged, once changed.
    truncate(url, "whale_transactions")
    writer.upsert(WhaleTransaction, rows=dicts)
    unchanged = merge_statement(url, plan, text, n)
    i = plan.fields.index("value_usd")
    bumped = [(*r[:i], (r[i] or 0) + 1, *r[i + 1 :]) for r in ordered]
    changed = merge_statement(url, plan, formatter.format(bumped), n)
    print(
        f"  merge statement (server, staging path): {unchanged:.2f} us/row unchanged,"
        f" {changed:.2f} us/row all changed"
    )
    db.dispose()


def profile_ingest(url: URL, n: int, repeat: int, workdir: Path) -> None:
    feed, models = jsonl_feed(workdir, n, price=PRICE)
    tuples = whale_tuples(models)
    db = Database(settings=load_settings(), url=url)
    options = IngestOptions(eth_usd=PRICE, rejects=None)
    runs = against_raw_copy(
        url, tuples, "ingest", lambda: ingest([str(feed)], database=db, options=options), repeat
    )
    split("whale-tracker ingest of a JSONL file", n, runs)

    read_us, lines = per_row(lambda: [p for _, p in records(str(feed), Format.JSONL)], n)
    parse_us, _ = per_row(lambda: [pydantic_core.from_json(line) for line in lines], n)
    validator = RowValidator(
        WhaleTransactionCreate,
        defaults={"chain": Chain.ETHEREUM, "whale_score": None, "value_usd": None},
    )
    validate_json = validator.json_validator()
    validate_us, valid = per_row(lambda: [validate_json(line) for line in lines], n)
    score, to_usd = scorer(), UsdPrice(PRICE, max_digits=20)

    def derive() -> None:
        for row in valid:
            row["whale_score"] = score(row["value_eth"])
            row["value_usd"] = to_usd(row["value_eth"])

    derive_us, _ = per_row(derive, n)
    plan = copy_plan(WhaleTransaction, None, {})
    build = plan.builder()
    built_us, built = per_row(lambda: list(map(build, valid)), n)
    sort_us, ordered = per_row(
        lambda: sorted(built, key=operator.itemgetter(*plan.bare_key_positions())), n
    )
    format_us, text = per_row(lambda: Formatter(plan).format(ordered), n)
    truncate(url, "whale_transactions")
    send_cpu, _ = copy_write(url, plan, text, n)
    stages(
        "client, ingest",
        n,
        [
            ("read lines (UTF-8 bytes)", read_us),
            ("parse JSON (alone, for the split)", parse_us),
            ("validate_json - parse (validation)", max(validate_us - parse_us, 0.0)),
            ("score + USD value", derive_us),
            ("build COPY tuples", built_us),
            ("sort by key", sort_us),
            ("format COPY text (ids included)", format_us),
            ("COPY write (send, client CPU)", send_cpu),
        ],
    )
    db.dispose()
    feed.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench.profile", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the quick bench's sizes")
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs per figure")
    args = parser.parse_args()
    whales, files = (20_000, 50_000) if args.quick else (100_000, 200_000)
    print(f"cores: {os.cpu_count()}; threads now: {threading.active_count()}")
    with fresh_database(prefix="profile") as url, tempfile.TemporaryDirectory() as workdir:
        profile_dicts(url, whales, args.repeat)
        profile_ingest(url, files, args.repeat, Path(workdir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
