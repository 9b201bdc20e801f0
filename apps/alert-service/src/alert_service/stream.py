"""Reading a stream table's new rows, exactly once, in batches (database.schema.streams).

A consumer's position lives in `evaluator_cursors`: the snapshot up to which every row is
handled (`done`), and while a window is read in batches, the window's snapshot and the last
row handled in it. A batch, inside the caller's transaction:

1. lock the position (`FOR UPDATE SKIP LOCKED`: a second worker finds it taken and waits for
   the next signal instead of racing);
2. open a window if none is open: the current snapshot, `pg_current_snapshot()`;
3. read the rows whose inserting transaction is visible in the window but was not in `done`,
   after the last one handled, in (xact_id, id) order;
4. the caller handles them, then saves the position in the same transaction: a crash repeats
   nothing and loses nothing. A window read to its end becomes the new `done`.

A transaction still running when a window opens is in progress in that snapshot; its rows
come in a later window, however late it commits. Nothing waits on a clock.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session

_NIL = "00000000-0000-0000-0000-000000000000"

# The rows a consumer has not handled: inserted by a transaction visible in the window (or, for
# `pending`, now) but not in `done`, and past the last row handled in an open window. The range
# on xact_id is what the (xact_id, id) index reads: every transaction below done's xmin was
# finished when done was taken.
_UNHANDLED = """
      xact_id >= coalesce(pg_snapshot_xmin(cast(:done as pg_snapshot)), '0'::xid8)
  and (cast(:done as pg_snapshot) is null
       or not pg_visible_in_snapshot(xact_id, cast(:done as pg_snapshot)))
"""
_AFTER = f"""
  (xact_id, id) > (coalesce(cast(cast(:after_xact as text) as xid8), '0'::xid8),
                   coalesce(cast(:after_id as uuid), cast('{_NIL}' as uuid)))
"""


@dataclass(frozen=True)
class Position:
    done: str | None = None  # every row visible in this snapshot is handled (None: none)
    window: str | None = None  # the snapshot being read in batches
    after_xact: int | None = None  # the last row handled in the window
    after_id: uuid.UUID | None = None


@dataclass(frozen=True)
class NewRow:
    id: uuid.UUID
    xact_id: int


class Stream:
    """The consumer `name` of the stream table `table`."""

    def __init__(self, *, name: str, table: str) -> None:
        self.name = name
        self.table = table
        t = sa.quoted_name(table, quote=None)
        self._next = sa.text(
            f"select id, xact_id::text as xact_id from {t}"  # noqa: S608 - a table of the code
            f" where {_UNHANDLED} and {_AFTER}"
            "   and xact_id < pg_snapshot_xmax(cast(:window as pg_snapshot))"
            "   and pg_visible_in_snapshot(xact_id, cast(:window as pg_snapshot))"
            " order by xact_id, id limit :limit"
        )
        self._pending = sa.text(
            f"select exists (select 1 from {t}"  # noqa: S608
            f" where {_UNHANDLED}"
            "   and pg_visible_in_snapshot(xact_id, pg_current_snapshot())"
            "   and not (cast(:window as pg_snapshot) is not null"
            "            and pg_visible_in_snapshot(xact_id, cast(:window as pg_snapshot))"
            f"           and not {_AFTER}))"
        )

    def ensure(self, session: Session) -> None:
        session.execute(
            sa.text("insert into evaluator_cursors (name) values (:name) on conflict do nothing"),
            {"name": self.name},
        )

    def lock(self, session: Session) -> Position | None:
        """The position, locked for this transaction; None when another worker holds it."""
        row = session.execute(_LOCK, {"name": self.name}).one_or_none()
        return None if row is None else _position(row)

    def position(self, session: Session) -> Position:
        return _position(session.execute(_READ, {"name": self.name}).one())

    def read(
        self, session: Session, position: Position, *, limit: int
    ) -> tuple[list[NewRow], Position]:
        """The next rows after `position` (at most `limit`), and the position once they are
        handled, for `save` in the same transaction."""
        window = position.window
        if window is None:
            window = session.execute(sa.text("select pg_current_snapshot()::text")).scalar_one()
        params = {**_params(position), "window": window, "limit": limit}
        rows = [NewRow(r.id, int(r.xact_id)) for r in session.execute(self._next, params)]
        if len(rows) < limit:  # the window is read to its end
            return rows, Position(done=window)
        last = rows[-1]
        return rows, Position(position.done, window, last.xact_id, last.id)

    def save(self, session: Session, position: Position) -> None:
        session.execute(_SAVE, {**_params(position), "name": self.name})

    def pending(self, session: Session) -> bool:
        """Are there committed rows not yet handled? (Rows of transactions still running are
        not: they are not there yet.)"""
        position = self.position(session)
        return bool(session.execute(self._pending, _params(position)).scalar_one())


_READ_SQL = (
    "select done_snapshot::text as done, window_snapshot::text as window_snapshot,"
    " after_xact_id::text as after_xact, after_id from evaluator_cursors where name = :name"
)
_LOCK = sa.text(_READ_SQL + " for update skip locked")
_READ = sa.text(_READ_SQL)
_SAVE = sa.text(
    "update evaluator_cursors set done_snapshot = cast(:done as pg_snapshot),"
    " window_snapshot = cast(:window as pg_snapshot),"
    " after_xact_id = cast(cast(:after_xact as text) as xid8), after_id = :after_id,"
    " updated_at = now() where name = :name"
)


def _position(row: sa.Row[tuple[str | None, str | None, str | None, uuid.UUID | None]]) -> Position:
    after = None if row.after_xact is None else int(row.after_xact)
    return Position(row.done, row.window_snapshot, after, row.after_id)


def _params(position: Position) -> dict[str, object]:
    return {
        "done": position.done,
        "window": position.window,
        "after_xact": position.after_xact,
        "after_id": position.after_id,
    }
