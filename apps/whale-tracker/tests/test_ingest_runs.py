"""Runs are always finalized: a killed ingest is found abandoned by the next run (which then
completes the file exactly), SIGTERM and SIGINT record `failed` with the counts so far, a lost
database connection is exit 5 with the run failed, an unexpected error exit 6, never a
traceback. The ingests run as subprocesses of the real CLI.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from database.sessions import Database
from database_tools.housekeeping import abandon_dead_runs
from whale_tracker import cli
from whale_tracker.ingest.generate import write
from whale_tracker.ingest.pipeline import COLLECTOR, IngestOptions, ingest
from whale_tracker.ingest.runs import owned_run
from whale_tracker.ingest.sources import Format

Start = Callable[..., subprocess.Popen[str]]
ROWS = 40_000


@pytest.fixture(scope="module")
def big_feed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("feeds") / "big.jsonl"
    with path.open("w") as out:
        write(out, Format.JSONL, ROWS, seed=21)
    return path


def _rows(database: Database, sql: str) -> list[Any]:
    with database.service_session() as s:
        return list(s.execute(text(sql)).all())


def _runs(database: Database) -> list[Any]:
    return _rows(
        database,
        "select status, records_collected, records_read, error from collection_runs"
        " order by started_at",
    )


def _count(database: Database) -> int:
    return int(_rows(database, "select count(*) from whale_transactions")[0][0])


def _wait_for_committed_rows(database: Database, process: subprocess.Popen[str]) -> int:
    """Until the running run has checkpointed a chunk (rows committed), then how many."""
    while process.poll() is None:
        running = _rows(
            database,
            "select records_collected from collection_runs where status = 'running'",
        )
        if running and running[0][0] > 0:
            return int(running[0][0])
        time.sleep(0.05)
    raise AssertionError(f"the ingest ended first: {process.communicate()}")


def _args(path: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [str(path), "--eth-usd", "3000", "--rejects", str(tmp_path / "r.jsonl"),
            "--batch-size", "2000", *extra]  # fmt: skip


def test_a_killed_ingest_is_abandoned_and_the_next_run_completes_the_file(
    big_feed: Path, tmp_path: Path, database: Database, start_ingest: Start
) -> None:
    victim = start_ingest(*_args(big_feed, tmp_path))
    _wait_for_committed_rows(database, victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    ((status, collected, _, _),) = _runs(database)
    assert status == "running"  # nobody could say otherwise
    assert collected == _count(database)  # checkpointed with the rows, exactly
    assert 0 < collected < ROWS
    after = start_ingest(*_args(big_feed, tmp_path, "--json"))
    out, err = after.communicate(timeout=300)
    assert after.returncode == 0, err
    summary = json.loads(out)
    assert summary["abandoned_runs"] == 1
    assert (summary["inserted"], summary["unchanged"]) == (ROWS - collected, collected)
    assert _count(database) == ROWS
    assert _rows(database, "select count(distinct hash) from whale_transactions")[0][0] == ROWS
    (dead, done) = _runs(database)
    assert dead[0] == "abandoned" and dead[1] == collected and "lock" in dead[3]
    assert done[:3] == ("succeeded", ROWS, ROWS)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_records_failed_with_the_counts_so_far(
    sig: signal.Signals, big_feed: Path, tmp_path: Path, database: Database, start_ingest: Start
) -> None:
    process = start_ingest(*_args(big_feed, tmp_path))
    _wait_for_committed_rows(database, process)
    process.send_signal(sig)
    out, err = process.communicate(timeout=120)
    assert process.returncode == cli.EXIT_SIGNAL_BASE + sig, (err, out)
    assert f"interrupted by {sig.name}" in err and "Traceback" not in err
    ((status, collected, read, error),) = _runs(database)
    assert status == "failed" and f"interrupted by {sig.name}" in error
    assert collected == _count(database) and read >= collected
    events = _rows(database, "select context ->> 'kind' from system_events")
    assert events == [("Interrupted",)]


def test_a_lost_database_connection_is_exit_5_with_the_run_failed(
    big_feed: Path, tmp_path: Path, database: Database, start_ingest: Start
) -> None:
    process = start_ingest(*_args(big_feed, tmp_path), env={"DB_APPLICATION_NAME": "doomed"})
    _wait_for_committed_rows(database, process)
    killed = False
    # Its writer's backend goes away (an operator's pg_terminate_backend, a failover).
    while not killed and process.poll() is None:
        killed = any(
            row[0]
            for row in _rows(
                database,
                "select pg_terminate_backend(pid) from pg_stat_activity"
                " where datname = current_database() and application_name = 'doomed:service'"
                " and state <> 'idle'",
            )
        )
        time.sleep(0.01)
    _, err = process.communicate(timeout=120)
    assert process.returncode == cli.EXIT_DATABASE, err
    assert "Traceback" not in err
    ((status, collected, _, error),) = _runs(database)
    assert status == "failed" and error
    assert collected == _count(database)


def test_an_unexpected_error_is_exit_6_and_the_run_failed(
    tmp_path: Path,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "feed.jsonl"
    with path.open("w") as out:
        write(out, Format.JSONL, 50, seed=2)

    def broken(**_: object) -> Callable[[Decimal], Decimal]:  # a bug in the scoring, say
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("whale_tracker.ingest.pipeline.scorer", broken)
    assert cli.main(["ingest", str(path), "--rejects", str(tmp_path / "r")]) == cli.EXIT_UNEXPECTED
    err = capsys.readouterr().err
    assert "unexpected ZeroDivisionError: division by zero" in err and "Traceback" not in err
    ((status, _, _, error),) = _runs(database)
    assert (status, error) == ("failed", "division by zero")


def test_a_live_run_is_never_abandoned(database: Database) -> None:
    with owned_run(database, collector=COLLECTOR) as run:
        assert abandon_dead_runs(database) == []
        assert _runs(database)[0][0] == "running"
        run.succeed(records_collected=0, counts={})
    assert abandon_dead_runs(database) == []
    assert _runs(database)[0][0] == "succeeded"


def test_an_ingest_in_process_records_every_count(tmp_path: Path, database: Database) -> None:
    path = tmp_path / "feed.jsonl"
    with path.open("w") as out:
        write(out, Format.JSONL, 500, seed=4)
    summary = ingest([str(path)], database=database,
                     options=IngestOptions(eth_usd=Decimal(3000), rejects=None))  # fmt: skip
    assert summary.accounted == summary.read == 500
    ((status, collected, read, error),) = _runs(database)
    assert (status, collected, read, error) == ("succeeded", 500, 500, None)
