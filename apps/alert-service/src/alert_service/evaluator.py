"""The evaluator: every stream's new rows against every enabled rule of its type, each row once.

One loop serves every source (sources.py: a stream table, its alert type, its match
statement). For each source it reads the stream (stream.py) in batches, each one transaction:
lock the stream position, read the next rows, match them against the rules in SQL, write the
events, save the position, commit. So a crash loses nothing and repeats nothing.

Several workers may run at once. A position is locked with `FOR UPDATE SKIP LOCKED`: one
worker evaluates a stream, the others find it taken and move on to the next stream or wait for
the next signal — a hot standby rather than a race. One lock per stream (not row locks on its
rows) is the right grain because a stream is ordered: two workers splitting it would have to
agree on where each stopped. The unique (alert_id, source, source_id) key is the second guard:
a retried batch writes nothing twice.

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
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session

from alert_service import queries
from alert_service.changes import ChangeSource, NotifySource
from alert_service.quarantine import isolate, quarantine, rule_fault
from alert_service.sources import SOURCES, Source
from alert_service.stream import Position, Stream
from database.sessions import Database

log = logging.getLogger("alert_service.evaluator")


@dataclass
class Stats:
    batches: int = 0
    rows: int = 0
    events: int = 0
    quarantined: int = 0


class Evaluator:
    def __init__(
        self,
        database: Database,
        *,
        batch_size: int = 1_000,
        sources: Sequence[Source] = SOURCES,
    ) -> None:
        self.database = database
        self.batch_size = batch_size
        self.sources = tuple(sources)
        self.stats = Stats()
        self.streams = {s: Stream(name=s.stream, table=s.table.value) for s in self.sources}
        with database.service_session() as session:
            for stream in self.streams.values():
                stream.ensure(session)

    def run_batch(self) -> int | None:
        """Evaluate the next batch of every stream. Returns how many rows they held (0: caught
        up), or None when other workers hold every stream."""
        sizes = [self._source_batch(source) for source in self.sources]
        held = [size for size in sizes if size is not None]
        return sum(held) if held else None

    def _source_batch(self, source: Source) -> int | None:
        """One batch of one stream, as one fast statement per step; when a rule's stored data
        makes it fail, the batch is redone with the rules isolated (quarantine.py): the
        failing rules are disabled and every other rule's events are written, so the position
        moves on."""
        try:
            return self._batch(source, isolated=False)
        except sa.exc.DBAPIError as exc:
            if rule_fault(exc) is None:
                raise
            log.warning(
                "a %s rule failed the batch (%s): isolating the rules",
                source.alert_type.value,
                rule_fault(exc),
            )
        return self._batch(source, isolated=True)

    def _batch(self, source: Source, *, isolated: bool) -> int | None:
        stream = self.streams[source]
        with self.database.service_session() as session:
            position = stream.lock(session)
            if position is None:
                return None
            rows, handled = stream.read(session, position, limit=self.batch_size)
            events = 0
            if rows:
                ids = [r.id for r in rows]
                if isolated:
                    events = self._isolated(session, source, row_ids=ids)
                else:
                    matches = queries.match_rules(session, source=source, row_ids=ids)
                    events = queries.record_events(session, source=source, matches=matches)
            stream.save(session, handled)
        if rows:
            self.stats.batches += 1
            self.stats.rows += len(rows)
            self.stats.events += events
            log.info("evaluated %d %s, %d events", len(rows), source.table.value, events)
        return len(rows)

    def _isolated(self, session: Session, source: Source, *, row_ids: list[uuid.UUID]) -> int:
        """Match and record rule by rule group; quarantine the rules that fail alone."""
        matches, bad = isolate(
            session,
            queries.rule_ids(session, alert_type=source.alert_type),
            lambda rules: queries.match_rules(
                session, source=source, row_ids=row_ids, rule_ids=rules
            ),
        )
        by_rule: dict[uuid.UUID, list[queries.AlertMatch]] = {}
        for match in matches:
            by_rule.setdefault(match.alert_id, []).append(match)
        counts, bad_records = isolate(
            session,
            list(by_rule),
            lambda rules: [
                queries.record_events(
                    session, source=source, matches=[m for r in rules for m in by_rule[r]]
                )
            ],
        )
        for culprit in bad:
            quarantine(session, culprit=culprit, stage="match")
        for culprit in bad_records:
            quarantine(session, culprit=culprit, stage="record")
        self.stats.quarantined += len(bad) + len(bad_records)
        return sum(counts)

    def run_until_idle(self, *, tables: Collection[str] | None = None) -> int:
        """Batches until caught up (or other workers have the streams); rows handled. Only
        the streams of `tables` when given (those a wake announced; None: every stream). A
        stream whose batch came back short is caught up as of its snapshot: it is not read
        again here (rows committed since announce themselves), so a wake for one whale row
        costs one read of one stream."""
        handled = 0
        sources = [s for s in self.sources if tables is None or s.table.value in tables]
        while sources:
            again = []
            for source in sources:
                size = self._source_batch(source)
                handled += size or 0
                if size == self.batch_size:  # a full batch: more may be waiting
                    again.append(source)
            sources = again
        return handled

    def catch_up(self, *, timeout: float = 60.0) -> int:
        """Evaluate until every committed row of every stream is evaluated; rows handled.
        TimeoutError when another worker keeps a stream that long."""
        handled = 0
        deadline = time.monotonic() + timeout
        while True:
            handled += self.run_until_idle()
            if not self.pending():
                return handled
            if time.monotonic() > deadline:
                raise TimeoutError(f"streams not caught up after {timeout:.0f} s")
            time.sleep(0.02)  # another worker holds a stream: it is evaluating them

    def pending(self) -> bool:
        """Are there committed rows, in any stream, not evaluated yet?"""
        with self.database.service_session() as session:
            return any(stream.pending(session) for stream in self.streams.values())

    def position(self, source: Source | None = None) -> Position:
        """A stream's position (the first source's by default: whale transactions)."""
        with self.database.service_session() as session:
            return self.streams[source or self.sources[0]].position(session)

    def run(
        self,
        stop: threading.Event,
        *,
        sources: Callable[[], ChangeSource] | None = None,
        catch_up_every: float = 5.0,
    ) -> None:
        """Evaluate whenever the change source (made by `sources`; default LISTEN/NOTIFY on
        every stream table) announces new rows, and catch up at start and every
        `catch_up_every` seconds. Returns after the batch in hand once `stop` is set. A failure
        propagates (a lost listener connection, the database down): `supervisor.Supervisor`
        restarts the loop, with a fresh source."""
        channels = [s.table.value for s in self.sources]
        source = (sources or (lambda: NotifySource(self.database, channels=channels)))()
        tables: Collection[str] | None = None  # every stream: at start and on the timer
        try:
            while not stop.is_set():
                if tables is None:
                    caught_up_at = time.monotonic()
                self.run_until_idle(tables=tables)
                # Wake on a signal (reading only the streams it names), on stop, or when the
                # catch-up timer is due (every stream, however busy the signals keep us).
                tables = None
                while not stop.is_set():
                    if time.monotonic() - caught_up_at >= catch_up_every:
                        break
                    if source.wait(0.25):
                        tables = source.announced()
                        break
        finally:
            source.close()
