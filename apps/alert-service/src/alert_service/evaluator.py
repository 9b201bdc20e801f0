"""The evaluator: new whale transactions against every enabled rule, each transaction once.

It reads the whale stream (stream.py) in batches, each one transaction: lock the stream
position, read the next transactions, match them against the rules in SQL, write the events,
save the position, commit. So a crash loses nothing and repeats nothing.

Several workers may run at once. The position is locked with `FOR UPDATE SKIP LOCKED`: one
worker evaluates, the others find it taken and wait for the next signal — a hot standby rather
than a race. One lock for the stream (not row locks on transactions) is the right grain
because the stream is ordered: two workers splitting it would have to agree on where each
stopped. The unique (alert_id, whale_transaction_id) key is the second guard: a retried batch
writes nothing twice.

Rows become visible in commit order, not in the order they were written: an ingest
transaction that runs for minutes commits its rows after rows evaluated meanwhile. The stream
reads by transaction visibility (PostgreSQL snapshots), so such rows come in the first batch
after their commit — no time margin, no row skipped.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session

from alert_service import queries
from alert_service.changes import ChangeSource, NotifySource
from alert_service.quarantine import isolate, quarantine, rule_fault
from alert_service.stream import Position, Stream
from database.sessions import Database

log = logging.getLogger("alert_service.evaluator")

STREAM = "alerts.whale_transactions"


@dataclass
class Stats:
    batches: int = 0
    transactions: int = 0
    events: int = 0
    quarantined: int = 0


class Evaluator:
    def __init__(
        self, database: Database, *, batch_size: int = 1_000, stream: str = STREAM
    ) -> None:
        self.database = database
        self.batch_size = batch_size
        self.stream = stream
        self.stats = Stats()
        self.whales = Stream(name=stream, table="whale_transactions")
        with database.service_session() as session:
            self.whales.ensure(session)

    def run_batch(self) -> int | None:
        """Evaluate the next batch. Returns its size (0: caught up), or None when another
        worker holds the cursor.

        The batch runs as one fast statement per step; when a rule's stored data makes it
        fail, the batch is redone with the rules isolated (quarantine.py): the failing rules
        are disabled and every other rule's events are written, so the cursor moves on."""
        try:
            return self._batch(isolated=False)
        except sa.exc.DBAPIError as exc:
            if rule_fault(exc) is None:
                raise
            log.warning("a rule failed the batch (%s): isolating the rules", rule_fault(exc))
        return self._batch(isolated=True)

    def _batch(self, *, isolated: bool) -> int | None:
        with self.database.service_session() as session:
            position = self.whales.lock(session)
            if position is None:
                return None
            rows, handled = self.whales.read(session, position, limit=self.batch_size)
            events = 0
            if rows:
                ids = [r.id for r in rows]
                if isolated:
                    events = self._isolated(session, transaction_ids=ids)
                else:
                    matches = queries.match_whale_rules(session, transaction_ids=ids)
                    events = queries.record_whale_events(session, matches=matches)
            self.whales.save(session, handled)
        if rows:
            self.stats.batches += 1
            self.stats.transactions += len(rows)
            self.stats.events += events
            log.info("evaluated %d transactions, %d events", len(rows), events)
        return len(rows)

    def _isolated(self, session: Session, *, transaction_ids: list[uuid.UUID]) -> int:
        """Match and record rule by rule group; quarantine the rules that fail alone."""
        matches, bad = isolate(
            session,
            queries.whale_rule_ids(session),
            lambda rules: queries.match_whale_rules(
                session, transaction_ids=transaction_ids, rule_ids=rules
            ),
        )
        by_rule: dict[uuid.UUID, list[queries.AlertMatch]] = {}
        for match in matches:
            by_rule.setdefault(match.alert_id, []).append(match)
        counts, bad_records = isolate(
            session,
            list(by_rule),
            lambda rules: [
                queries.record_whale_events(session, matches=[m for r in rules for m in by_rule[r]])
            ],
        )
        for culprit in bad:
            quarantine(session, culprit=culprit, stage="match")
        for culprit in bad_records:
            quarantine(session, culprit=culprit, stage="record")
        self.stats.quarantined += len(bad) + len(bad_records)
        return sum(counts)

    def run_until_idle(self) -> int:
        """Batches until caught up (or another worker has the cursor); transactions handled."""
        handled = 0
        while True:
            size = self.run_batch()
            if not size:
                return handled
            handled += size

    def catch_up(self, *, timeout: float = 60.0) -> int:
        """Evaluate until every committed transaction is evaluated; transactions handled.
        TimeoutError when another worker keeps the stream that long."""
        handled = 0
        deadline = time.monotonic() + timeout
        while True:
            handled += self.run_until_idle()
            if not self.pending():
                return handled
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.stream}: not caught up after {timeout:.0f} s")
            time.sleep(0.02)  # another worker holds the stream: it is evaluating them

    def pending(self) -> bool:
        """Are there committed transactions not evaluated yet?"""
        with self.database.service_session() as session:
            return self.whales.pending(session)

    def position(self) -> Position:
        with self.database.service_session() as session:
            return self.whales.position(session)

    def run(
        self,
        stop: threading.Event,
        *,
        sources: Callable[[], ChangeSource] | None = None,
        catch_up_every: float = 5.0,
    ) -> None:
        """Evaluate whenever the change source (made by `sources`; default LISTEN/NOTIFY)
        announces new transactions, and catch up at start and every `catch_up_every` seconds.
        Returns after the batch in hand once `stop` is set. A failure propagates (a lost
        listener connection, the database down): `supervisor.Supervisor` restarts the loop,
        with a fresh source."""
        source = (sources or (lambda: NotifySource(self.database)))()
        try:
            while not stop.is_set():
                self.run_until_idle()
                waited = 0.0
                # Wake on a signal, on stop, or when the catch-up timer is due.
                while not stop.is_set() and waited < catch_up_every:
                    if source.wait(0.25):
                        break
                    waited += 0.25
        finally:
            source.close()
