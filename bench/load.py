"""Concurrent load: HTTP requests on loopback, and plain calls of a function, from N clients.

HTTP load comes from wrk when it is installed (a C load generator: the clients cost the 2-core
machine little, so the figures are the server's); otherwise from Python threads, which share
the CPUs with the server and say so in the note. Each run reports p50/p95 latency and rate.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.harness import percentiles

# wrk prints this after the run: latency percentiles (microseconds), counts and errors.
_WRK_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"p50_us": %d, "p95_us": %d, "requests": %d, "duration_us": %d, '
    .. '"errors": %d, "non2xx": %d}\\n',
    latency:percentile(50), latency:percentile(95), summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


@dataclass(frozen=True)
class Load:
    p50_ms: float
    p95_ms: float
    per_second: float
    count: int
    generator: str


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def http_load(url: str, *, clients: int, seconds: float) -> Load:
    """GET `url` from `clients` keep-alive connections for `seconds`."""
    if wrk_available():
        return _wrk(url, clients=clients, seconds=seconds)
    return _threads_http(url, clients=clients, seconds=seconds)


def _wrk(url: str, *, clients: int, seconds: float) -> Load:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_REPORT)
    try:
        done = subprocess.run(  # noqa: S603
            [shutil.which("wrk") or "wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s",
             "--timeout", "10s", "-s", script.name, url],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    finally:
        Path(script.name).unlink()
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["errors"] or report["non2xx"]:
        raise RuntimeError(f"wrk saw failures against {url}: {report}")
    return Load(
        p50_ms=report["p50_us"] / 1000,
        p95_ms=report["p95_us"] / 1000,
        per_second=report["requests"] / (report["duration_us"] / 1e6),
        count=report["requests"],
        generator="wrk",
    )


def _threads_http(url: str, *, clients: int, seconds: float) -> Load:
    def client() -> Callable[[], None]:
        http = httpx.Client(timeout=10)

        def get() -> None:
            response = http.get(url)
            if response.status_code != 200:
                raise RuntimeError(f"{url}: {response.status_code} {response.text[:200]}")

        return get

    load = call_load(client, clients=clients, seconds=seconds)
    return Load(load.p50_ms, load.p95_ms, load.per_second, load.count, "python threads")


def call_load(
    make_call: Callable[[], Callable[[], object]], *, clients: int, seconds: float
) -> Load:
    """Call the function `make_call()` gives each client, from `clients` threads, for `seconds`."""
    samples: list[list[float]] = [[] for _ in range(clients)]
    calls = [make_call() for _ in range(clients)]
    for call in calls:
        call()  # warm: connections, statement caches
    start = threading.Barrier(clients + 1)
    deadline = 0.0

    def run(i: int) -> None:
        start.wait()
        mine = samples[i]
        while True:
            began = time.perf_counter()
            if began >= deadline:
                return
            calls[i]()
            mine.append((time.perf_counter() - began) * 1000)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    deadline = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    every = [s for per in samples for s in per]
    p50, p95 = percentiles(every)
    return Load(p50, p95, len(every) / wall, len(every), "threads")


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each of these processes so far."""
    tick = os.sysconf("SC_CLK_TCK")
    spent = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        spent[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return spent


def cpu_spent(roots: list[int | None], run: Callable[[], Load]) -> tuple[Load, list[float]]:
    """`run()`, and the CPU seconds each root process and its descendants spent meanwhile
    (processes started during the run count in full; a root of None spent nothing here)."""

    def now() -> list[dict[int, float]]:
        return [cpu_seconds(children(root)) if root else {} for root in roots]

    before = now()
    load = run()
    after = now()
    spent = [
        sum(t - was.get(pid, 0.0) for pid, t in nowt.items())
        for was, nowt in zip(before, after, strict=True)
    ]
    return load, spent


def children(pid: int) -> list[int]:
    """`pid` and its descendants (uvicorn's worker processes). A process that ends while it is
    being read (a server backend closing its connection) is simply not there."""
    found = [pid]
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for kid in kids:
            found.extend(children(int(kid)))
    return found


def postmaster_of(backend_pid: int) -> int | None:
    """The postmaster that forked `backend_pid` (`select pg_backend_pid()`), when the server
    runs on this machine."""
    try:
        status = Path(f"/proc/{backend_pid}/status").read_text()
    except OSError:
        return None
    ppid = next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:"))
    return int(ppid)
