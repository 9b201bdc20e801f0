"""For tests that race sessions: wait until another backend of the database waits on a lock
(the moment to let the holder go, or to send the request that must then find the pool taken)."""

from __future__ import annotations

import time

from sqlalchemy import Engine, text

_WAITING = text(
    "select count(*) from pg_stat_activity where wait_event_type = 'Lock'"
    " and datname = current_database() and pid <> pg_backend_pid()"
)


def wait_for_lock_waiter(engine: Engine, *, timeout: float = 30.0) -> None:
    """Return once a backend of `engine`'s database waits on a lock; AssertionError when none
    does within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    with engine.connect() as probe:
        while not probe.execute(_WAITING).scalar_one():
            if time.monotonic() > deadline:
                raise AssertionError(f"no backend waited on a lock within {timeout} s")
            time.sleep(0.02)
            probe.rollback()
