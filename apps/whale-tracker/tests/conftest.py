"""The whale-tracker's tests run on the package's migrated test database (its pytest plugin).
The code under test commits for real, so the tables it writes are emptied after each test."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL


@pytest.fixture(autouse=True)
def _isolated(settings_use_test_database: None, truncate_after: Callable[..., None]) -> None:
    truncate_after(
        "whale_transactions", "market_data", "collection_runs", "system_events", "auth.users"
    )


# -- the real command, as an operator runs it ------------------------------------------------

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def cli_env(database_url: URL) -> dict[str, str]:
    """The environment of a `whale-tracker` subprocess on the test database."""
    return {**os.environ, "DATABASE_URL": database_url.render_as_string(hide_password=False)}


@pytest.fixture
def start_ingest(cli_env: dict[str, str]) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """`python -m whale_tracker.cli ingest ARGS…` in a subprocess (the caller waits on it)."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "whale_tracker.cli", "ingest", *args],
            env={**cli_env, **(env or {})},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()
