"""factory-boy base class bound to the current test's session (set by the `db_session` fixture)."""

from __future__ import annotations

from contextvars import ContextVar

import factory.alchemy
from sqlmodel import Session

current_session: ContextVar[Session | None] = ContextVar("current_session", default=None)


def _session() -> Session:
    session = current_session.get()
    if session is None:
        raise RuntimeError("factories need the `db_session` fixture (database.testing.plugin)")
    return session


class ModelFactory(factory.alchemy.SQLAlchemyModelFactory):
    """Base of every table factory: rows are flushed into the test's session, never committed."""

    class Meta:
        abstract = True
        sqlalchemy_session_factory = _session
        sqlalchemy_session_persistence = "flush"
