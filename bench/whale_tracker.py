"""Benchmarks of apps/whale-tracker: file ingest end to end, and the list endpoint under load."""

from __future__ import annotations

import json
import os
import socket
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

from bench.database import truncate
from bench.harness import Report, Result, percentiles, timed
from database.repositories import BulkWriter, WhaleTransactionRepository
from database.schema import WhaleTransaction, WhaleTransactionCreate
from database.sessions import Database
from database.settings import load_settings
from whale_tracker.ingest.generate import write
from whale_tracker.ingest.pipeline import IngestOptions, ingest
from whale_tracker.ingest.sources import Format, records

ROOT = Path(__file__).resolve().parent.parent


def ingest_file(report: Report, url: URL, n: int, workdir: Path) -> None:
    g = f"ingest {n // 1000}k"
    feed = workdir / "feed.jsonl"
    with feed.open("w") as out:
        write(out, Format.JSONL, n, seed=5)
    options = IngestOptions(eth_usd=Decimal(3000), rejects=None)

    # Baseline: the package's bulk upsert of the same rows, already parsed and validated.
    models = []
    for _, line in records(str(feed), Format.JSONL):
        assert isinstance(line, bytes)
        fields = {**json.loads(line), "whale_score": "0.5", "value_usd": "1"}
        models.append(WhaleTransactionCreate.model_validate(fields))
    truncate(url, "whale_transactions")
    db = Database(settings=load_settings(), url=url)
    seconds, _ = timed(lambda: BulkWriter(db).upsert(WhaleTransaction, rows=models))
    db.dispose()
    models.clear()
    base = report.rate(g, "package upsert of parsed rows (baseline)", n, seconds)

    truncate(url, "whale_transactions")
    db = Database(settings=load_settings(), url=url)
    seconds, summary = timed(lambda: ingest([str(feed)], database=db, options=options))
    db.dispose()
    assert summary.inserted == n, summary.render()
    report.rate(g, "whale-tracker ingest of a JSONL file", n, seconds, baseline=base, at_least=0.7,
                note="read + parse + score + validate + upsert")  # fmt: skip

    # Peak memory of the command itself on the same file (a second run: all unchanged).
    code = (
        "import sys\nfrom whale_tracker.cli import main\n"
        f"code = main(['ingest', {str(feed)!r}, '--eth-usd', '3000', '--rejects', '/dev/null'])\n"
        "from bench.database import _peak_rss_kib\nprint(_peak_rss_kib())\nsys.exit(code)"
    )
    env = {**os.environ, "DATABASE_URL": url.render_as_string(hide_password=False)}
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, check=True
    )
    peak = int(done.stdout.strip().splitlines()[-1]) / 1024
    size = feed.stat().st_size / 2**20
    report.add(Result(g, "peak RSS of `whale-tracker ingest`", round(peak, 1), "MiB",
                      note=f"input file {size:,.0f} MiB; batches of 10k rows"))  # fmt: skip
    feed.unlink()


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
