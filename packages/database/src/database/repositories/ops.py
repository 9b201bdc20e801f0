"""The service's own records: collector runs and system events.

A run that names an `owner` is guarded by a session-level advisory lock, keyed by its id
(`run_lock_key`), that its process holds for the run's lifetime on a connection of its own. A
process that dies (SIGKILL, power) loses its connection and with it the lock: a `running` run
whose lock nobody holds is dead, and `abandon_dead()` (the next run, `database housekeeping`)
marks it `abandoned`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from database.repositories.base import Repository
from database.schema.base import utc_now
from database.schema.ops import CollectionRun, RunStatus, Severity, SystemEvent

#: First key of every run lock (the two-int advisory lock space, apart from single-bigint locks).
RUN_LOCK_NAMESPACE = 0x72756E73  # "runs"
#: The counts a run records besides records_collected.
RUN_COUNTS = (
    "records_read",
    "records_rejected",
    "records_skipped",
    "records_filtered",
    "records_merged",
)
_ERROR_LIMIT = 10_000


def run_lock_key(run_id: uuid.UUID) -> tuple[int, int]:
    """(namespace, the id's last 32 bits as a signed int4): the advisory lock of a run. SQL
    computes the same from the id in `abandon_dead`."""
    return RUN_LOCK_NAMESPACE, int.from_bytes(run_id.bytes[-4:], "big", signed=True)


# The lock's second key from the id in SQL: its last 8 hex digits as a signed 32-bit integer.
_SQL_LOCK_KEY = "('x' || right(replace(id::text, '-', ''), 8))::bit(32)::int"

_ABANDON = sa.text(
    "update public.collection_runs"
    " set status = 'abandoned', finished_at = greatest(now(), started_at),"
    " error = left('abandoned: ' || coalesce(owner, '?')"
    " || ' is gone (it no longer holds the run''s lock)', :limit)"
    " where status = 'running' and owner is not null"
    f" and pg_try_advisory_xact_lock(:namespace, {_SQL_LOCK_KEY})"
    " returning id"
)


class CollectionRunRepository(Repository[CollectionRun]):
    model = CollectionRun
    sort = ("started_at", "id")

    def start(
        self, *, collector: str, id: uuid.UUID | None = None, owner: str | None = None
    ) -> CollectionRun:
        extra: dict[str, Any] = {"id": id} if id is not None else {}
        return self.create(data={"collector": collector, "owner": owner}, **extra)

    def finish(
        self,
        *,
        id: uuid.UUID,
        succeeded: bool,
        records_collected: int | None = None,
        error: str | None = None,
        counts: Mapping[str, int] | None = None,
    ) -> CollectionRun | None:
        """Record the end of a run. `records_collected` None keeps what checkpoints recorded
        (the rows committed so far): right for a run that failed part-way."""
        data: dict[str, Any] = {
            "status": RunStatus.SUCCEEDED if succeeded else RunStatus.FAILED,
            "finished_at": utc_now(),
            "error": error[:_ERROR_LIMIT] if error else None,
            **_counts(counts),
        }
        if records_collected is not None:
            data["records_collected"] = records_collected
        return self.update(id=id, data=data)

    def abandon_dead(self) -> list[uuid.UUID]:
        """Mark `abandoned` every running run whose owner no longer holds its lock; their
        counts stay as their last checkpoint left them. Returns their ids."""
        rows = self.session.connection().execute(
            _ABANDON, {"namespace": RUN_LOCK_NAMESPACE, "limit": _ERROR_LIMIT}
        )
        return [row.id for row in rows]


def checkpoint_run(
    connection: Connection,
    *,
    id: uuid.UUID,
    records_collected: int,
    counts: Mapping[str, int] | None = None,
) -> None:
    """Record a running run's progress on `connection`, in its transaction: called inside a
    bulk write's chunk transaction, the counts commit exactly with the rows they count."""
    table = CollectionRun.__table__  # type: ignore[attr-defined]
    values = {"records_collected": records_collected, **_counts(counts)}
    connection.execute(
        sa.update(table).where(table.c.id == id, table.c.status == "running").values(values)
    )


def _counts(counts: Mapping[str, int] | None) -> dict[str, int]:
    counts = dict(counts or {})
    unknown = set(counts) - set(RUN_COUNTS)
    if unknown:
        raise ValueError(f"not a run count: {sorted(unknown)[0]}")
    return counts


class SystemEventRepository(Repository[SystemEvent]):
    model = SystemEvent

    def log(
        self,
        *,
        event_type: str,
        severity: Severity | str,
        message: str,
        context: dict[str, Any] | None = None,
    ) -> SystemEvent:
        return self.create(
            data={
                "event_type": event_type,
                "severity": severity,
                "message": message[:10_000],
                "context": context or {},
            }
        )
