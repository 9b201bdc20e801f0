"""Concurrent ingests over overlapping files — the real CLI, as separate processes — finish
with the right rows and counts and no error: rows are written in key order on every path, and
deadlocks or serialization failures are retried.
"""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from database.sessions import Database
from whale_tracker.ingest.generate import write
from whale_tracker.ingest.sources import Format

Start = Callable[..., subprocess.Popen[str]]
UNIVERSE = 12_000


def _files(tmp_path: Path, n: int) -> list[Path]:
    """`n` files, each most of one feed's records in an order of its own, some overlapping at
    the same values and some changed (another USD price is given to every other file)."""
    feed = tmp_path / "all.jsonl"
    with feed.open("w") as out:
        write(out, Format.JSONL, UNIVERSE, seed=31)
    lines = feed.read_text().splitlines(keepends=True)
    files = []
    for i in range(n):
        rng = random.Random(i)
        mine = rng.sample(lines, 9_000)
        path = tmp_path / f"part{i}.jsonl"
        path.write_text("".join(mine))
        files.append(path)
    return files


@pytest.mark.parametrize("n", [2, 4])
def test_concurrent_ingests_over_overlapping_files(
    n: int, tmp_path: Path, database: Database, start_ingest: Start
) -> None:
    files = _files(tmp_path, n)
    processes = []
    for i, path in enumerate(files):
        rejects = str(tmp_path / f"r{i}.jsonl")
        price = str(3000 + i % 2)
        args = [str(path), "--eth-usd", price, "--batch-size", "1500", "--rejects", rejects]
        processes.append(start_ingest(*args, "--json"))
    results = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0] * n, [err for _, err in results]
    summaries = [json.loads(out) for out, _ in results]
    distinct = len({line for path in files for line in path.read_text().splitlines()})
    with database.service_session() as s:
        rows, hashes = s.execute(
            text("select count(*), count(distinct hash) from whale_transactions")
        ).one()
        runs = s.execute(text("select status, records_collected from collection_runs")).all()
    assert rows == hashes == distinct
    assert sum(s["inserted"] for s in summaries) == distinct  # each key inserted once
    for summary in summaries:
        written = summary["inserted"] + summary["updated"] + summary["unchanged"]
        assert summary["read"] == written == 9_000 and summary["rejected"] == {}
    assert sorted(runs) == [("succeeded", 9_000)] * n
