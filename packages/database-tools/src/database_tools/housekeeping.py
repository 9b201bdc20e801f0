"""`database housekeeping`: tidy what dead processes left behind.

Today that is collection runs still `running` whose process is gone: a run's owner holds an
advisory lock keyed by the run's id while it runs (see `database.repositories.ops`), so a run
whose lock nobody holds is dead and is marked `abandoned`, its counts as its last committed
chunk left them. Safe to run at any time, from anywhere, as often as you like.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from database.repositories import CollectionRunRepository
from database.sessions import Database


@dataclass(frozen=True)
class AbandonedRun:
    id: uuid.UUID
    collector: str
    owner: str | None
    records_collected: int


def abandon_dead_runs(database: Database) -> list[AbandonedRun]:
    """Mark every dead `running` collection run `abandoned`; what was marked."""
    with database.service_session() as session:
        ids = CollectionRunRepository(session).abandon_dead()
        if not ids:
            return []
        runs = [CollectionRunRepository(session).get(id=run_id) for run_id in ids]
        return [
            AbandonedRun(
                id=run.id,
                collector=run.collector,
                owner=run.owner,
                records_collected=run.records_collected,
            )
            for run in runs
            if run is not None
        ]
