"""`database housekeeping`: runs whose process died are marked abandoned, live ones are not."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest
from sqlalchemy.engine import URL

from database.connect import Purpose, connect_raw
from database.repositories import CollectionRunRepository
from database.repositories.ops import checkpoint_run, run_lock_key
from database.schema import CollectionRun
from database.sessions import Database
from database_tools.cli import main
from database_tools.housekeeping import abandon_dead_runs


@pytest.fixture(autouse=True)
def _empty(truncate_after: Callable[..., None]) -> None:
    truncate_after("collection_runs")


def _start(database: Database, *, owner: str | None = "host:1") -> uuid.UUID:
    run_id = uuid.uuid4()
    with database.service_session() as session:
        CollectionRunRepository(session).start(collector="test", id=run_id, owner=owner)
    return run_id


def _run(database: Database, run_id: uuid.UUID) -> CollectionRun:
    with database.service_session() as session:
        run = CollectionRunRepository(session).get(id=run_id)
    assert run is not None
    return run


def test_a_run_whose_lock_is_held_is_alive_and_one_without_is_dead(
    database: Database, database_url: URL
) -> None:
    with connect_raw(database_url, purpose=Purpose.SERVICE, autocommit=True) as owner:
        alive = uuid.uuid4()
        owner.execute("select pg_advisory_lock(%s, %s)", run_lock_key(alive))
        with database.service_session() as session:
            CollectionRunRepository(session).start(collector="test", id=alive, owner="me:1")
        dead = _start(database, owner="gone:2")
        with database.engine.begin() as connection:  # its last committed chunk said 1,234
            checkpoint_run(
                connection, id=dead, records_collected=1234, counts={"records_read": 2000}
            )
        legacy = _start(database, owner=None)  # no owner: no lock to go by, left alone
        assert [r.id for r in abandon_dead_runs(database)] == [dead]
        assert _run(database, alive).status == "running"
        assert _run(database, legacy).status == "running"
        gone = _run(database, dead)
        assert gone.status == "abandoned" and gone.finished_at is not None
        assert (gone.records_collected, gone.records_read) == (1234, 2000)
        assert "gone:2" in (gone.error or "")
    # The owner's connection closed: its lock went with it.
    assert [r.id for r in abandon_dead_runs(database)] == [alive]


def test_the_command_reports_what_it_marked(
    database: Database,
    settings_use_test_database: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dead = _start(database)
    assert main(["housekeeping", "--json"]) == 0
    out, err = capsys.readouterr()
    assert [r["id"] for r in json.loads(out)] == [str(dead)]
    assert "1 dead run(s) marked abandoned" in err
    assert main(["housekeeping", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
