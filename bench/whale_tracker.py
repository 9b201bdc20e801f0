"""Benchmarks of apps/whale-tracker: file ingest end to end, and the list endpoint under load."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import httpx
from sqlalchemy.engine import URL

from bench.database import WHALE_COLUMNS, raw_copy, truncate, whale_tuples
from bench.harness import Report, Result, percentiles, timed
from database.repositories import WhaleTransactionRepository
from database.schema import WhaleTransactionCreate
from database.sessions import Database
from database.settings import load_settings
from whale_tracker.ingest.generate import write
from whale_tracker.ingest.pipeline import IngestOptions, ingest
from whale_tracker.ingest.scoring import usd, whale_score
from whale_tracker.ingest.sources import Format, records

ROOT = Path(__file__).resolve().parent.parent


def ingest_file(report: Report, url: URL, n: int, workdir: Path, repeat: int = 1) -> None:
    """File -> validated -> committed, against a raw COPY of the same rows already formatted
    (the rows the ingest writes, score and USD value included), alternating in one run."""
    g = f"ingest {n // 1000}k"
    feed = workdir / "feed.jsonl"
    with feed.open("w") as out:
        write(out, Format.JSONL, n, seed=5)
    price = Decimal(3000)
    options = IngestOptions(eth_usd=price, rejects=None)
    models = []
    for _, line in records(str(feed), Format.JSONL):
        assert isinstance(line, bytes)
        fields = json.loads(line)
        value = Decimal(fields["value_eth"])
        fields.update(whale_score=whale_score(value), value_usd=usd(value, price))
        models.append(WhaleTransactionCreate.model_validate(fields))
    tuples = whale_tuples(models)
    db = Database(settings=load_settings(), url=url)

    def run_ingest() -> float:
        seconds, summary = timed(lambda: ingest([str(feed)], database=db, options=options))
        assert summary.inserted == n, summary.render()
        return seconds

    copy_times, ingest_times = [], []
    for _ in range(max(repeat, 2)):
        truncate(url, "whale_transactions")
        copy_times.append(raw_copy(url, "whale_transactions", WHALE_COLUMNS, tuples))
        truncate(url, "whale_transactions")
        ingest_times.append(run_ingest())
    tuples.clear()
    copy = report.rate(g, "raw COPY of the same rows, formatted (baseline)", n,
                       statistics.median(copy_times))  # fmt: skip
    report.rate(g, "whale-tracker ingest of a JSONL file", n, statistics.median(ingest_times),
                baseline=copy, at_least=0.85,
                note="read + validate + score + commit; same-run alternating medians")  # fmt: skip
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
def _server(url: URL) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": url.render_as_string(hide_password=False)}
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "whale_tracker.cli", "serve", "--port", str(port)],
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
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def api_latency(report: Report, url: URL, *, clients: int, requests_each: int) -> None:
    """GET /whale-transactions from `clients` threads on loopback, bounded in count."""
    g = "api"
    db = Database(settings=load_settings(), url=url)
    direct = []
    with db.anon_session() as session:
        repo = WhaleTransactionRepository(session)
        for _ in range(50):
            direct.append(
                timed(lambda: repo.search(filters={"min_value_eth": 100}, limit=50))[0] * 1000
            )
    db.dispose()
    base = report.add(
        Result(
            g, "repository search, 50 rows p50 (baseline)", round(percentiles(direct)[0], 3), "ms"
        )
    )
    samples: list[float] = []
    lock = threading.Lock()
    with _server(url) as server:

        def worker() -> None:
            with httpx.Client(base_url=server, timeout=10) as http:
                for _ in range(requests_each):
                    started = time.perf_counter()
                    response = http.get(
                        "/whale-transactions", params={"min_value_eth": 100, "limit": 50}
                    )
                    elapsed = (time.perf_counter() - started) * 1000
                    assert response.status_code == 200, response.text
                    with lock:
                        samples.append(elapsed)

        threads = [threading.Thread(target=worker) for _ in range(clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
    p50, p95 = percentiles(samples)
    report.add(Result(g, f"GET /whale-transactions p50, {clients} clients", round(p50, 3), "ms",
                      base.name, round(p50 / base.value, 3)))  # fmt: skip
    report.add(Result(g, f"GET /whale-transactions p95, {clients} clients", round(p95, 3), "ms"))
    report.add(Result(g, "requests per second", round(len(samples) / wall), "req/s",
                      note=f"{len(samples)} requests on loopback"))  # fmt: skip
