"""Benchmarks of apps/whale-tracker: file ingest end to end, and the list endpoint under load."""

from __future__ import annotations

import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import URL

from bench.database import WHALE_COLUMNS, raw_copy, truncate, whale_tuples
from bench.harness import Report, Result, connect, timed
from bench.load import (
    Load,
    call_load,
    cpu_spent,
    http_load,
    postmaster_of,
)
from database.repositories import BulkWriter, WhaleTransactionRepository
from database.schema import WhaleTransaction, WhaleTransactionCreate
from database.sessions import Database
from database.settings import load_settings
from whale_tracker.ingest.generate import write
from whale_tracker.ingest.pipeline import IngestOptions, ingest
from whale_tracker.ingest.scoring import usd, whale_score
from whale_tracker.ingest.sources import Format, records

ROOT = Path(__file__).resolve().parent.parent


#: The ETH price the ingest benchmarks value transfers at.
INGEST_PRICE = Decimal(3000)


def jsonl_feed(
    workdir: Path, n: int, *, price: Decimal
) -> tuple[Path, list[WhaleTransactionCreate]]:
    """A JSONL feed of `n` transfers in `workdir`, and the rows its ingest writes (score and USD
    value at `price` included): what a raw COPY of the same rows is given."""
    feed = workdir / "feed.jsonl"
    with feed.open("w") as out:
        write(out, Format.JSONL, n, seed=5)
    models = []
    for _, line in records(str(feed), Format.JSONL):
        assert isinstance(line, bytes)
        fields = json.loads(line)
        value = Decimal(fields["value_eth"])
        fields.update(whale_score=whale_score(value), value_usd=usd(value, price))
        models.append(WhaleTransactionCreate.model_validate(fields))
    return feed, models


def ingest_file(report: Report, url: URL, n: int, workdir: Path, repeat: int = 1) -> None:
    """File -> validated -> committed, against a raw COPY of the same rows already formatted
    (the rows the ingest writes, score and USD value included), alternating in one run."""
    g = f"ingest {n // 1000}k"
    feed, models = jsonl_feed(workdir, n, price=INGEST_PRICE)
    options = IngestOptions(eth_usd=INGEST_PRICE, rejects=None)
    tuples = whale_tuples(models)
    db = Database(settings=load_settings(), url=url)

    def run_ingest() -> float:
        seconds, summary = timed(lambda: ingest([str(feed)], database=db, options=options))
        assert summary.inserted == n, summary.render()
        return seconds

    def run_upsert() -> float:
        seconds, result = timed(lambda: BulkWriter(db).upsert(WhaleTransaction, rows=models))
        assert result.inserted == n, result
        return seconds

    copy_times, upsert_times, ingest_times = [], [], []
    for _ in range(max(repeat, 3)):  # three at least: a median of two is their mean
        truncate(url, "whale_transactions")
        copy_times.append(raw_copy(url, "whale_transactions", WHALE_COLUMNS, tuples))
        truncate(url, "whale_transactions")
        upsert_times.append(run_upsert())
        truncate(url, "whale_transactions")
        ingest_times.append(run_ingest())
    tuples.clear()
    copy = report.rate(g, "raw COPY of the same rows, formatted (baseline)", n,
                       statistics.median(copy_times))  # fmt: skip
    parsed = report.rate(g, "package upsert of parsed rows (baseline)", n,
                         statistics.median(upsert_times))  # fmt: skip
    seconds = statistics.median(ingest_times)
    name = "whale-tracker ingest of a JSONL file"
    report.rate(g, name, n, seconds, baseline=copy, at_least=0.85,
                note="read + validate + score + commit; same-run alternating medians")  # fmt: skip
    report.rate(g, name, n, seconds, baseline=parsed, at_least=0.7,
                note="the file's work against the package's own upsert of the models")  # fmt: skip
    models.clear()
    db.dispose()

    # Peak memory of the command itself. Memory is bounded by the chunk, not the file: at a
    # chunk size both sizes reach, a quarter of the file and all of it peak alike.
    quarter = workdir / "quarter.jsonl"
    with quarter.open("w") as out:
        write(out, Format.JSONL, n // 4, seed=5)
    small = report.add(Result(g, f"peak RSS, {n // 4:,} rows, --batch-size 5000",
                              round(_peak_rss_mib(url, quarter, "5000"), 1), "MiB"))  # fmt: skip
    large = _peak_rss_mib(url, feed, "5000")
    ratio = large / small.value
    size = feed.stat().st_size / 2**20
    report.add(Result(g, f"peak RSS, {n:,} rows, --batch-size 5000", round(large, 1), "MiB",
                      small.name, round(ratio, 3), "<= 1.1x", ratio <= 1.1,
                      note=f"input file {size:,.0f} MiB"))  # fmt: skip
    feed.unlink()
    quarter.unlink()


def concurrent_ingests(report: Report, url: URL, n: int, workdir: Path, clients: int = 2) -> None:
    """`clients` CLI ingests at once over files that overlap (each file holds the same half of
    the feed plus a share of the rest, in an order of its own) against the same files ingested
    one after the other, on an empty table each time. Both end with the same rows, checked."""
    g = f"ingest {n // 1000}k"
    feed = workdir / "all.jsonl"
    with feed.open("w") as out:
        write(out, Format.JSONL, n, seed=7)
    lines = feed.read_bytes().splitlines(keepends=True)
    shared, rest = lines[: n // 2], lines[n // 2 :]
    files = []
    for i in range(clients):
        mine = shared + rest[i::clients]
        random.Random(i).shuffle(mine)
        path = workdir / f"part{i}.jsonl"
        path.write_bytes(b"".join(mine))
        files.append(path)
    feed.unlink()
    env = {**os.environ, "DATABASE_URL": url.render_as_string(hide_password=False)}

    def start(path: Path) -> subprocess.Popen[bytes]:
        args = [str(path), "--eth-usd", "3000", "--rejects", "/dev/null"]
        return subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "whale_tracker.cli", "ingest", *args],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    def finish(process: subprocess.Popen[bytes]) -> None:
        _, err = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"ingest exited {process.returncode}: {err.decode()[-2000:]}")

    def stored() -> tuple[int, int]:
        with connect(url) as conn:
            row = conn.execute("select count(*), count(distinct hash) from whale_transactions")
            count, distinct = row.fetchone() or (0, 0)
        return int(count), int(distinct)

    def one_after_another() -> float:
        started = time.perf_counter()
        for path in files:
            finish(start(path))
        return time.perf_counter() - started

    def at_once() -> float:
        started = time.perf_counter()
        processes = [start(path) for path in files]
        for process in processes:
            finish(process)
        return time.perf_counter() - started

    read = sum(len(path.read_bytes().splitlines()) for path in files)
    truncate(url, "whale_transactions")
    serial = report.rate(g, f"{clients} CLI ingests one after another (baseline)", read,
                         one_after_another())  # fmt: skip
    expected = stored()
    truncate(url, "whale_transactions")
    seconds = at_once()
    assert stored() == expected == (n, n), (stored(), expected)
    report.rate(g, f"{clients} CLI ingests at once, overlapping files", read, seconds,
                baseline=serial, note=f"{read:,} records read, {n:,} distinct; the same rows, "
                "no error (deadlocks are retried, keys written in order)")  # fmt: skip
    for path in files:
        path.unlink()


def _peak_rss_mib(url: URL, feed: Path, batch_size: str = "20000") -> float:
    args = [str(feed), "--eth-usd", "3000", "--rejects", "/dev/null", "--batch-size", batch_size]
    code = (
        "import sys\nfrom whale_tracker.cli import main\n"
        f"code = main(['ingest', *{args!r}])\n"
        "from bench.database import _peak_rss_kib\nprint(_peak_rss_kib())\nsys.exit(code)"
    )
    env = {**os.environ, "DATABASE_URL": url.render_as_string(hide_password=False)}
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, check=True
    )
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _server(url: URL, *, workers: int = 1) -> Iterator[tuple[str, int]]:
    """`whale-tracker serve` on a free loopback port: (base URL, server pid)."""
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": url.render_as_string(hide_password=False)}
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "whale_tracker.cli", "serve", "--port", str(port),
         "--workers", str(workers), "--no-access-log"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("whale-tracker serve did not come up")
        yield base, process.pid
    finally:
        process.terminate()
        process.wait(timeout=20)


LIST_QUERY = {"min_value_eth": 100, "limit": 50}
LIST_PATH = "/whale-transactions?min_value_eth=100&limit=50"
ENDPOINTS = {
    # call: (label, repository method, path template)
    "list": ("GET /whale-transactions (50 rows)", "search", LIST_PATH),
    "detail": ("GET /whale-transactions/{hash}", "get_by_hash", "/whale-transactions/{hash}"),
}


@dataclass(frozen=True)
class _Measured:
    load: Load
    server_cpu_s: float
    database_cpu_s: float


def _measure(
    url: str, server_pid: int, postmaster: int | None, *, clients: int, seconds: float
) -> _Measured:
    """HTTP load on `url`, with the CPU the server's processes and PostgreSQL spent on it."""
    load, (server, database) = cpu_spent(
        [server_pid, postmaster], lambda: http_load(url, clients=clients, seconds=seconds)
    )
    return _Measured(load, server, database)


def api_serving(report: Report, url: URL, *, clients: tuple[int, ...], seconds: float) -> None:
    """The list (50 rows) and detail endpoints from 1, 4 and 16 loopback clients, each against
    its own repository query run from as many threads, each in an open anon session: the
    query and its rows, without HTTP or a session's set-up."""
    g = "api"
    # A connection for each baseline client.
    settings = load_settings().model_copy(update={"db_pool_size": max(clients)})
    db = Database(settings=settings, url=url)
    with db.anon_session() as session:
        page = WhaleTransactionRepository(session).search(filters=LIST_QUERY, limit=50)
        backend = session.execute(sa.text("select pg_backend_pid()")).scalar_one()
    postmaster = postmaster_of(backend)  # the server is on this machine (loopback)
    assert len(page.data) == 50, "the benchmark data has fewer than 50 rows over 100 ETH"
    tx_hash = page.data[0].hash

    def repository(method: str, *, clients: int) -> Load:
        with ExitStack() as open_sessions:

            def make() -> Callable[[], object]:
                repo = WhaleTransactionRepository(open_sessions.enter_context(db.anon_session()))
                if method == "search":
                    return lambda: repo.search(filters=LIST_QUERY, limit=50)
                return lambda: repo.get_by_hash(hash=tx_hash)

            return call_load(make, clients=clients, seconds=seconds / 2)

    baselines = {
        (call, n): repository(method, clients=n)
        for call, (_, method, _) in ENDPOINTS.items()
        for n in clients
    }
    db.dispose()
    with _server(url) as (base, pid):
        for call, (label, method, path) in ENDPOINTS.items():
            for n in clients:
                repo = baselines[(call, n)]
                baseline = report.add(
                    Result(
                        g, f"repository {method}, {n} clients p50", round(repo.p50_ms, 3), "ms",
                        note=f"p95 {repo.p95_ms:.2f} ms, {repo.per_second:,.0f} calls/s",
                    )
                )  # fmt: skip
                m = _measure(
                    base + path.format(hash=tx_hash), pid, postmaster, clients=n, seconds=seconds
                )
                target = 3.0 if (call == "list" and n == 4) else None
                ratio = m.load.p50_ms / repo.p50_ms
                report.add(
                    Result(
                        g, f"{label} p50, {n} clients", round(m.load.p50_ms, 3), "ms",
                        baseline.name, round(ratio, 3), f"<= {target}x" if target else None,
                        (ratio <= target) if target else None,
                        note=f"p95 {m.load.p95_ms:.2f} ms, {m.load.per_second:,.0f} req/s;"
                        f" CPU per request: server {m.server_cpu_s * 1000 / m.load.count:.2f} ms,"
                        f" PostgreSQL {m.database_cpu_s * 1000 / m.load.count:.2f} ms"
                        f" ({m.load.generator})",
                    )
                )  # fmt: skip
    # The most this machine serves: a worker process per core, the most clients.
    workers, n = os.cpu_count() or 1, max(clients)
    list_path = ENDPOINTS["list"][2]
    with _server(url, workers=workers) as (base, pid):
        http_load(base + list_path, clients=n, seconds=1)  # every worker warm
        m = _measure(base + list_path, pid, postmaster, clients=n, seconds=seconds)
    report.add(
        Result(
            g, f"GET /whale-transactions, {workers} workers, {n} clients",
            round(m.load.per_second), "req/s",
            note=f"p50 {m.load.p50_ms:.1f} ms; cores busy (of {workers}): server"
            f" {m.server_cpu_s / seconds:.2f}, PostgreSQL {m.database_cpu_s / seconds:.2f}"
            f" ({m.load.generator})",
        )
    )  # fmt: skip
