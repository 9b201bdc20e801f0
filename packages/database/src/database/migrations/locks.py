"""Who is in a migration's way: a second connection that watches the migrating session while it
runs and remembers the sessions blocking it (`pg_blocking_pids`), so that a lock timeout can be
reported with the blocker's pid, application name and query instead of a bare "lock timeout".
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import psycopg
from sqlalchemy.engine import URL

from database.connect import Purpose, connect_raw
from database.settings import Settings

log = logging.getLogger(__name__)

#: SQLSTATE of "canceling statement due to lock timeout".
LOCK_NOT_AVAILABLE = "55P03"

_BLOCKERS = """
with waiting as (
  select relation from pg_locks where pid = %(pid)s and not granted and relation is not null
)
select a.pid, coalesce(a.application_name, '') as application_name, coalesce(a.state, '?'),
       coalesce(a.query, ''), extract(epoch from now() - a.xact_start)::float8,
       (select string_agg(distinct l.mode || ' on ' || l.relation::regclass::text, ', ')
          from pg_locks l join waiting w on l.relation = w.relation
         where l.pid = a.pid and l.granted)
  from pg_stat_activity a
 where a.pid = any(pg_blocking_pids(%(pid)s))
 order by a.pid
"""


@dataclass(frozen=True)
class Blocker:
    """A session that held a lock the migration waited for."""

    pid: int
    application_name: str
    state: str
    query: str
    transaction_age_s: float | None
    holds: str | None

    def describe(self) -> str:
        parts = [f"pid {self.pid}", f"application_name {self.application_name!r}", self.state]
        if self.transaction_age_s is not None:
            parts.append(f"transaction open {self.transaction_age_s:.0f} s")
        if self.holds:
            parts.append(f"holds {self.holds}")
        query = " ".join(self.query.split())
        parts.append(f"query: {query[:200]!r}")
        return ", ".join(parts)


class BlockerWatch:
    """While open, polls which sessions block backend `pid`; `blockers` keeps the last seen."""

    def __init__(self, url: URL, *, pid: int, settings: Settings) -> None:
        self.url = url
        self.pid = pid
        self.settings = settings
        # Several looks per lock wait, however short the timeout is.
        timeout_s = settings.db_migration_lock_timeout_ms / 1000 or 1.0
        self.interval_s = min(max(timeout_s / 5, 0.02), 0.25)
        self.blockers: list[Blocker] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> BlockerWatch:
        self._thread = threading.Thread(target=self._run, name="migration-lock-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            with connect_raw(
                self.url, purpose=Purpose.MIGRATE, settings=self.settings, autocommit=True
            ) as conn:
                while not self._stop.is_set():
                    rows = conn.execute(_BLOCKERS, {"pid": self.pid}).fetchall()
                    if rows:
                        self.blockers = [Blocker(*row) for row in rows]
                    self._stop.wait(self.interval_s)
        except Exception as exc:  # diagnostics only: never fail a migration because of it
            log.debug("lock watch stopped: %s", exc)


def is_lock_timeout(exc: BaseException) -> bool:
    """True when `exc` (or what it wraps) is PostgreSQL's lock timeout."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, psycopg.Error) and current.sqlstate == LOCK_NOT_AVAILABLE:
            return True
        orig: Any = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False
