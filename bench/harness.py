"""What every benchmark shares: a fresh migrated database, timing, and the results table.

Every figure is reported next to a baseline measured in the same run, as a ratio: these
machines are noisy, so only ratios inside one run mean anything.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import URL

from database.connect import conninfo
from database.settings import load_settings
from database_tools.embedded import server_url
from database_tools.testdb import create_test_database, drop_test_database

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Result:
    group: str
    name: str
    value: float
    unit: str
    baseline: str | None = None
    ratio: float | None = None
    target: str | None = None
    met: bool | None = None
    note: str = ""


@dataclass
class Report:
    quick: bool
    results: list[Result] = field(default_factory=list)

    def add(self, result: Result) -> Result:
        self.results.append(result)
        print(_row(result), flush=True)
        return result

    def rate(
        self,
        group: str,
        name: str,
        rows: int,
        seconds: float,
        *,
        baseline: Result | None = None,
        at_least: float | None = None,
        note: str = "",
    ) -> Result:
        """A rows/s figure; with a baseline, its ratio (higher is better) against `at_least`."""
        value = rows / seconds
        ratio = value / baseline.value if baseline else None
        return self.add(
            Result(
                group,
                name,
                round(value),
                "rows/s",
                baseline.name if baseline else None,
                round(ratio, 3) if ratio is not None else None,
                f">= {at_least}x" if at_least is not None else None,
                ratio >= at_least if (ratio is not None and at_least is not None) else None,
                note,
            )
        )

    def write(self) -> Path:
        RESULTS_DIR.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = RESULTS_DIR / f"bench-{'quick-' if self.quick else ''}{stamp}.json"
        payload = {
            "when": stamp,
            "quick": self.quick,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "results": [asdict(r) for r in self.results],
        }
        path.write_text(json.dumps(payload, indent=2))
        (RESULTS_DIR / "latest.json").write_text(json.dumps(payload, indent=2))
        return path


HEADER = (
    f"{'group':<10} {'measure':<46} {'value':>12} {'unit':<7} {'vs':<30} {'ratio':>7}"
    f" {'target':>9} met"
)


def _row(r: Result) -> str:
    met = "" if r.met is None else ("yes" if r.met else "NO")
    ratio = "" if r.ratio is None else f"{r.ratio:.2f}"
    value = f"{r.value:,.2f}" if r.value < 100 else f"{r.value:,.0f}"
    line = (
        f"{r.group:<10} {r.name:<46} {value:>12} {r.unit:<7} {(r.baseline or ''):<30} "
        f"{ratio:>7} {(r.target or ''):>9} {met}"
    )
    return line + (f"  ({r.note})" if r.note else "")


@contextmanager
def fresh_database(prefix: str = "bench") -> Iterator[URL]:
    url = create_test_database(server_url(load_settings()), prefix=prefix)
    try:
        yield url
    finally:
        drop_test_database(url)


def connect(url: URL) -> psycopg.Connection[Any]:
    return psycopg.connect(conninfo(url))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    p50 = statistics.median(ordered)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return p50, p95
