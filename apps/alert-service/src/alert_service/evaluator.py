"""The evaluator: new whale transactions against every enabled rule, each transaction once.

It keeps a cursor — the last (created_at, id) handled — in `evaluator_cursors`, and works in
batches, each one transaction: lock the cursor row, read the next transactions, match them
against the rules in SQL, write the events, move the cursor, commit. So a crash loses nothing
and repeats nothing.

Several workers may run at once. The cursor row is taken with `FOR UPDATE SKIP LOCKED`: one
worker evaluates, the others find it taken and wait for the next signal — a hot standby rather
than a race. A cursor lock (not row locks on transactions) is the right grain here because the
stream is ordered: two workers splitting it would have to agree on where each stopped. The
unique (alert_id, whale_transaction_id) key is the second guard: a retried batch writes nothing
twice.

Rows become visible in commit order, not created_at order: a long ingest transaction commits
rows whose created_at is older than rows already evaluated. So a batch only reads rows older
than every transaction still running, which are all committed. Bulk ingest stamps created_at
with the database's now() (its transaction's start); the small margin covers rows created
through the ORM, whose timestamp is taken in Python just before their transaction begins.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from alert_service.changes import ChangeSource, NotifySource
from database.engine import Database
from database.repositories import AlertEventRepository, AlertRepository

log = logging.getLogger("alert_service.evaluator")

STREAM = "alerts.whale_transactions"

_LOCK_CURSOR = sa.text(
    "select last_created_at, last_id from evaluator_cursors where name = :name"
    " for update skip locked"
)
HORIZON_MARGIN_SECONDS = 0.25

# Everything created before the oldest transaction still running is committed (or gone).
# Only transactions that have written (they hold a transaction id) can add rows: long readers
# (reports, idle sessions) do not hold evaluation back.
_HORIZON = sa.text(
    "select least(now(), coalesce((select min(xact_start) from pg_stat_activity"
    " where backend_xid is not null and pid <> pg_backend_pid()), now()))"
    " - make_interval(secs => :margin)"
)
_PENDING = sa.text(
    "select exists (select 1 from whale_transactions, evaluator_cursors c where c.name = :name"
    " and (created_at, id) > (coalesce(c.last_created_at, '-infinity'),"
    " coalesce(c.last_id, '00000000-0000-0000-0000-000000000000')))"
)
_NEXT = sa.text(
    "select id, created_at from whale_transactions"
    " where (created_at, id) > (coalesce(cast(:after as timestamptz), '-infinity'),"
    " coalesce(cast(:after_id as uuid), '00000000-0000-0000-0000-000000000000'))"
    " and created_at < :horizon order by created_at, id limit :limit"
)


@dataclass
class Stats:
    batches: int = 0
    transactions: int = 0
    events: int = 0


class Evaluator:
    def __init__(
        self, database: Database, *, batch_size: int = 1_000, stream: str = STREAM
    ) -> None:
        self.database = database
        self.batch_size = batch_size
        self.stream = stream
        self.stats = Stats()
        with database.service_session() as session:
            session.execute(
                sa.text("insert into evaluator_cursors (name) values (:n) on conflict do nothing"),
                {"n": stream},
            )

    def run_batch(self) -> int | None:
        """Evaluate the next batch. Returns its size (0: caught up), or None when another
        worker holds the cursor."""
        with self.database.service_session() as session:
            cursor = session.execute(_LOCK_CURSOR, {"name": self.stream}).one_or_none()
            if cursor is None:
                return None
            horizon = session.execute(_HORIZON, {"margin": HORIZON_MARGIN_SECONDS}).scalar_one()
            rows = session.execute(
                _NEXT,
                {
                    "after": cursor.last_created_at,
                    "after_id": cursor.last_id,
                    "horizon": horizon,
                    "limit": self.batch_size,
                },
            ).all()
            if not rows:
                return 0
            matches = AlertRepository(session).matching_whale_alerts(
                transaction_ids=[r.id for r in rows]
            )
            events = AlertEventRepository(session).record_whale_matches(matches=matches)
            last = rows[-1]
            session.execute(
                sa.text(
                    "update evaluator_cursors set last_created_at = :at, last_id = :id"
                    " where name = :name"
                ),
                {"at": last.created_at, "id": last.id, "name": self.stream},
            )
        self.stats.batches += 1
        self.stats.transactions += len(rows)
        self.stats.events += events
        log.info("evaluated %d transactions, %d events", len(rows), events)
        return len(rows)

    def run_until_idle(self) -> int:
        """Batches until caught up (or another worker has the cursor); transactions handled."""
        handled = 0
        while True:
            size = self.run_batch()
            if not size:
                return handled
            handled += size

    def pending(self) -> bool:
        """Are there transactions past the cursor (perhaps still too young to evaluate)?"""
        with self.database.service_session() as session:
            return bool(session.execute(_PENDING, {"name": self.stream}).scalar_one())

    def position(self) -> tuple[datetime | None, uuid.UUID | None]:
        with self.database.service_session() as session:
            row = session.execute(
                sa.text("select last_created_at, last_id from evaluator_cursors where name = :n"),
                {"n": self.stream},
            ).one()
        return row.last_created_at, row.last_id

    def run(
        self,
        stop: threading.Event,
        *,
        source: ChangeSource | None = None,
        catch_up_every: float = 5.0,
    ) -> None:
        """Evaluate whenever `source` announces new transactions (default: LISTEN/NOTIFY), and
        catch up at start and every `catch_up_every` seconds. Returns after the batch in hand
        once `stop` is set."""
        source = source or NotifySource(self.database)
        try:
            while not stop.is_set():
                self.run_until_idle()
                if self.pending():  # rows inside the safety margin: look again right after it
                    stop.wait(HORIZON_MARGIN_SECONDS)
                    continue
                waited = 0.0
                # Wake on a signal, on stop, or when the catch-up timer is due.
                while not stop.is_set() and waited < catch_up_every:
                    if source.wait(0.25):
                        break
                    waited += 0.25
        finally:
            source.close()
