"""The ingest's collection run: owned while it runs, always finalized when it ends.

Starting a run first marks `abandoned` any earlier run whose process died (it no longer holds
its lock), then takes a session-level advisory lock keyed by the new run's id on a connection
of its own, and only then records the run: whoever sees the run `running` also sees the lock
held. The counts are checkpointed inside each chunk's transaction, so a run that dies
(SIGKILL) still says exactly how many rows it committed. Its end — success, a failure of any
kind, a signal — is recorded by `succeed` or `fail`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Connection

from database.connect import Purpose, connect_raw
from database.errors import DatabasePackageError
from database.repositories import CollectionRunRepository, SystemEventRepository
from database.repositories.ops import checkpoint_run, run_lock_key
from database.schema.types import uuid7
from database.sessions import Database

#: The lock's connection tells the server to notice a vanished client within about a minute
#: (a crashed machine never closes its sockets), instead of TCP's default of hours.
_KEEPALIVES = (
    "set tcp_keepalives_idle = 30; set tcp_keepalives_interval = 10; set tcp_keepalives_count = 3"
)


def owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:300]


@dataclass
class Run:
    """A running collection run and the connection holding its lock."""

    id: uuid.UUID
    database: Database
    lock: psycopg.Connection[Any]
    abandoned: list[uuid.UUID]  # earlier runs this start found dead

    def checkpoint(
        self, connection: Connection, *, records_collected: int, counts: Mapping[str, int]
    ) -> None:
        """Inside a chunk's transaction: the counts commit with the rows they count."""
        checkpoint_run(connection, id=self.id, records_collected=records_collected, counts=counts)

    def succeed(self, *, records_collected: int, counts: Mapping[str, int]) -> None:
        with self.database.service_session() as session:
            CollectionRunRepository(session).finish(
                id=self.id, succeeded=True, records_collected=records_collected, counts=counts
            )

    def fail(self, *, reason: str, kind: str, counts: Mapping[str, int]) -> None:
        """Record the failure, keeping the committed count its checkpoints recorded. Never
        raises: when the database itself is the failure, the next run finds this one dead."""
        try:
            with self.database.service_session() as session:
                CollectionRunRepository(session).finish(
                    id=self.id, succeeded=False, error=reason, counts=counts
                )
                SystemEventRepository(session).log(
                    event_type="ingest.failed",
                    severity="error",
                    message=reason,
                    context={"run": str(self.id), "kind": kind, **counts},
                )
        except (DatabasePackageError, OSError, psycopg.Error):
            pass
        except Exception:  # noqa: S110 - e.g. SQLAlchemy's wrapping of a lost connection
            pass


@contextmanager
def owned_run(database: Database, *, collector: str) -> Iterator[Run]:
    """Start a run (abandoning dead ones first), hold its lock until the block ends."""
    with database.service_session() as session:
        abandoned = CollectionRunRepository(session).abandon_dead()
    run_id = uuid7()
    lock = connect_raw(database.url, purpose=Purpose.SERVICE, settings=database.settings,
                       autocommit=True)  # fmt: skip
    try:
        with contextlib.suppress(psycopg.Error):  # not every server lets a role set them
            lock.execute(_KEEPALIVES)
        lock.execute("select pg_advisory_lock(%s, %s)", run_lock_key(run_id))
        with database.service_session() as session:
            CollectionRunRepository(session).start(
                collector=collector, id=run_id, owner=owner_name()
            )
        yield Run(id=run_id, database=database, lock=lock, abandoned=abandoned)
    finally:
        lock.close()  # the lock goes with its session
