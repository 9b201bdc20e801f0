"""The writer's side of a bulk write: a thread with its own connection writes each chunk in one
transaction — COPY into the table while no key exists, else a staging merge — retries the chunk
after a deadlock or serialization failure (bounded, jittered backoff; counted once), and splits
off any row the database refuses (at the line a COPY names, else by halving) inside savepoints,
so it costs only itself."""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy import Connection

from database.errors import BulkWriteError, ConflictError, InvalidInputError
from database.repositories.base import refused_write
from database.repositories.bulk_copy import CopyText
from database.repositories.bulk_feed import Chunk
from database.repositories.bulk_plan import CopyPlan, Statements
from database.repositories.bulk_results import OnChunk, OnReject, UpsertResult
from database.sessions import impersonate

#: Attempts of one chunk that meets deadlocks or serialization failures.
ATTEMPTS = 8
_BACKOFF_BASE_S = 0.05
_BACKOFF_CAP_S = 2.0
_RETRYABLE = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure
_UNIQUE_VIOLATION = "23505"
_EMPTY = object()  # the hand-over slot holds nothing
_TAKEN = object()  # the writer has taken what it held


class _RowError(Exception):
    """One row of a segment was refused; `index` is its place in the segment when known."""

    def __init__(self, cause: BaseException, index: int | None) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.index = index


class ChunkWriter:
    """Writes chunks on its own thread and connection; the caller hands them over one by one."""

    def __init__(
        self,
        connect: Callable[[], AbstractContextManager[Connection]],
        plan: CopyPlan,
        statements: Statements,
        *,
        identity: tuple[str, str] | None,
        merge: bool,
        on_reject: OnReject | None,
        on_chunk: OnChunk | None,
    ) -> None:
        self.connect = connect
        self.identity = identity  # a user's role and claims, set in every chunk's transaction
        self.plan = plan
        self.statements = statements
        self.merge = merge  # False: COPY only (a key that exists is an error)
        self.on_reject = on_reject
        self.on_chunk = on_chunk
        self.total = UpsertResult()
        self.direct: bool | None = None  # decided on the first chunk: COPY into the table
        self.error: BaseException | None = None
        # One chunk changes hands at a time: the caller waits until the writer has taken it,
        # so at most two chunks live (the one written, the one being built).
        self._slot: Chunk | object | None = _EMPTY
        self._holding: Chunk | None = None  # the chunk being written
        self._handoff = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="bulk-writer", daemon=True)

    # -- the caller's thread -------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def put(self, chunk: Chunk) -> None:
        """Hand a chunk over; returns once the writer has taken it. Raises the writer's
        failure, if it has stopped on one."""
        self._hand_over(chunk)
        self._raise_failure()

    def finish(self) -> None:
        """Wait until every chunk handed over is written (or has failed); stop the thread."""
        if self._thread.is_alive():
            self._hand_over(None)
            self._thread.join()
        self._raise_failure()

    def _hand_over(self, item: Chunk | None) -> None:
        with self._handoff:
            self._slot = item
            self._handoff.notify_all()
            # Timed waits: a writer that died without a word cannot leave the caller stuck.
            while self._slot is item and self._thread.is_alive():
                self._handoff.wait(0.1)
            self._slot = _EMPTY

    def _raise_failure(self) -> None:
        if self.error is not None:
            raise self.error

    # -- the writer's thread -------------------------------------------------------------

    def _take(self) -> Chunk | None:
        """The next chunk, left in the slot (the caller waits on) until `_let_go`; the end of
        the input is taken at once."""
        with self._handoff:
            # _TAKEN too: a chunk written before the caller's thread has woken to clear the
            # slot leaves the marker of the hand-over it has just made, not a new one.
            while self._slot is _EMPTY or self._slot is _TAKEN:
                self._handoff.wait()
            item = self._slot
            if item is None:
                self._slot = _TAKEN
                self._handoff.notify_all()
        assert item is None or isinstance(item, Chunk)
        return item

    def _let_go(self) -> None:
        """Release the caller to build the next chunk. Called once the chunk in hand streams
        to the server: until then every round trip of this thread (probe, savepoint, COPY)
        would wait for the GIL behind the caller's validation, while the server idles."""
        with self._handoff:
            if self._slot is self._holding:
                self._slot = _TAKEN
                self._handoff.notify_all()

    def _run(self) -> None:
        try:
            with self.connect() as connection:
                while (chunk := self._take()) is not None:
                    self._holding = chunk
                    try:
                        if self.error is None:
                            self._write(connection, chunk)
                    finally:
                        self._let_go()
        except BaseException as exc:  # handed to the caller's thread, which raises it
            self.error = self.error or exc

    def _write(self, connection: Connection, chunk: Chunk) -> None:
        retries = 0
        while True:
            transaction = connection.begin()
            try:
                result = self._attempt(connection, chunk, retries)
            except BaseException as exc:
                _rollback(transaction)
                if _sqlstate(exc) in _RETRYABLE and retries < ATTEMPTS - 1:
                    retries += 1
                    time.sleep(_backoff(retries))
                    continue
                self.error = self._failure(exc, chunk)
                return
            try:
                transaction.commit()  # not retried: the hooks have seen this chunk
            except BaseException as exc:
                _rollback(transaction)
                self.error = self._failure(exc, chunk)
                return
            self.total = result
            return

    def _failure(self, exc: BaseException, chunk: Chunk) -> BaseException:
        if not isinstance(exc, Exception) or getattr(exc, "_from_hook", False):
            return exc  # an interrupt, or the caller's own hook: as raised
        last = chunk.start + len(chunk.inputs) - 1
        error = BulkWriteError(
            f"chunk of rows {chunk.start}-{last} failed: {_reason(exc)}", committed=self.total
        )
        error.__cause__ = exc
        return error

    def _attempt(self, connection: Connection, chunk: Chunk, retries: int) -> UpsertResult:
        if self.identity is not None:
            impersonate(connection, self.identity)
        if self.direct is None:
            self.direct = not connection.exec_driver_sql(self.statements.rls).scalar_one()
        if self.direct and self.merge and self.statements.exists(connection, chunk.ordered):
            self.direct = False  # known conflicts: do not send the chunk twice
        refused: list[tuple[int, BaseException]] = []
        isolate = self.on_reject is not None
        inserted, updated = self._write_rows(connection, chunk, refused, isolate=isolate)
        rejected = list(chunk.invalid)
        rejected += [
            chunk.rejected(index, _refusal(exc, self.plan, connection)) for index, exc in refused
        ]
        if self.on_reject is not None:
            for item in sorted(rejected, key=lambda r: r.position):
                _call_hook(self.on_reject, item)
        written = chunk.size - len(refused)
        result = self.total + UpsertResult(
            rows=len(chunk.inputs),
            inserted=inserted,
            updated=updated,
            unchanged=written - inserted - updated,
            merged_duplicates=chunk.merged_duplicates,
            rejected=len(rejected),
            chunks=1,
            retries=retries,
        )
        if self.on_chunk is not None:
            _call_hook(self.on_chunk, connection, result)
        return result

    def _write_rows(
        self,
        connection: Connection,
        chunk: Chunk,
        refused: list[tuple[int, BaseException]],
        *,
        isolate: bool,
    ) -> tuple[int, int]:
        """Write the chunk's rows (sorted), each segment in a savepoint. A refused row is split
        off — at the index the error names, else by halving — and left out; written in key
        order."""
        inserted = updated = 0
        text = chunk.text
        pending = [(0, chunk.size)]  # a stack: the lowest keys on top
        while pending:
            low, high = pending.pop()
            if low >= high:
                continue
            try:
                got = self._write_segment(connection, text, low, high)
            except _RowError as failure:
                if not isolate:
                    raise failure.cause from None
                if high - low == 1:
                    refused.append((low, failure.cause))
                    continue
                index = failure.index
                if index is not None and 0 <= index < high - low:
                    bad = low + index
                    # Rows before it were taken, it is refused, the rest is unknown: halved,
                    # so that many refusals cost O(n log n) rows sent, not O(n²).
                    refused.append((bad, failure.cause))
                    middle = (bad + 1 + high) // 2
                    pending += [(middle, high), (bad + 1, middle), (low, bad)]
                else:
                    middle = (low + high) // 2
                    pending += [(middle, high), (low, middle)]
                continue
            inserted += got[0]
            updated += got[1]
        return inserted, updated

    def _write_segment(
        self, connection: Connection, text: CopyText, low: int, high: int
    ) -> tuple[int, int]:
        """Rows `low` to `high` of the chunk: COPYed into the table, else merged from the stage;
        a refused row raises _RowError with its index in the segment."""
        unsendable = text.first_unsendable(low, high)
        if unsendable is not None:  # the driver could not encode it: nothing to send
            raise _RowError(text.unsendable[unsendable], unsendable - low)
        data = text.segment(low, high)
        if self.direct:
            try:
                with connection.begin_nested():
                    _copy_segment(connection, self.statements.direct, data, self._let_go)
            except _RowError as failure:
                if _sqlstate(failure.cause) != _UNIQUE_VIOLATION:
                    raise
                if not self.merge:  # COPY only: an existing key fails the chunk
                    raise failure.cause from None
                self.direct = False  # the data overlaps what is there: merge from now on
            else:
                return high - low, 0
        with connection.begin_nested():
            connection.exec_driver_sql(self.statements.create_stage)
            _copy_segment(connection, self.statements.stage_copy, data, self._let_go)
            try:
                inserted, updated = connection.exec_driver_sql(self.statements.merge).one()
            except sa.exc.DBAPIError as exc:
                if _is_row_error(exc.orig):
                    raise _RowError(exc.orig or exc, None) from exc
                raise
        return int(inserted), int(updated)


def _call_hook(hook: Callable[..., None], *args: Any) -> None:
    try:
        hook(*args)
    except BaseException as exc:
        exc._from_hook = True  # type: ignore[attr-defined]  # raised as is, never wrapped
        raise


def _copy_segment(
    connection: Connection, statement: sql.Composed, data: memoryview, started: Callable[[], None]
) -> None:
    """COPY the formatted rows (`started` once the server takes them); a row the server refuses
    becomes _RowError with its index (the line the error names)."""
    driver = connection.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            started()
            copy.write(data)
    except psycopg.Error as exc:
        if exc.sqlstate is None or not _is_row_error(exc):
            raise  # the connection or the statement, not the data
        raise _RowError(exc, _copy_line(exc)) from exc


_COPY_LINE = re.compile(r"^COPY \S+, line (\d+)")


def _copy_line(exc: psycopg.Error) -> int | None:
    match = _COPY_LINE.match(exc.diag.context or "")
    return int(match.group(1)) - 1 if match else None


def _is_row_error(exc: BaseException | None) -> bool:
    """A refusal of the data written (class 22: data exception, 23: integrity constraint)."""
    state = getattr(exc, "sqlstate", None)
    return isinstance(state, str) and state[:2] in ("22", "23")


def _sqlstate(exc: BaseException) -> str | None:
    if isinstance(exc, _RowError):
        exc = exc.cause
    orig = getattr(exc, "orig", exc)
    state = getattr(orig, "sqlstate", None)
    return state if isinstance(state, str) else None


def _backoff(attempt: int) -> float:
    """Full jitter: a random wait up to an exponentially growing, capped bound."""
    return random.uniform(0, min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2**attempt))  # noqa: S311


def _rollback(transaction: sa.RootTransaction) -> None:
    try:
        if transaction.is_active:
            transaction.rollback()
    except Exception:  # noqa: S110 - the connection is gone; the original error says why
        pass


_COPY_COLUMN = re.compile(r"column (\w+)")


def _refusal(
    exc: BaseException, plan: CopyPlan, connection: Connection
) -> InvalidInputError | ConflictError:
    """A refused row's reason in the package's vocabulary: field and rule, and the database's
    own words."""
    if not (isinstance(exc, psycopg.Error) and exc.sqlstate):
        return InvalidInputError(field="row", rule=f"cannot be sent to the database ({exc})")
    translated = refused_write(sa.exc.DBAPIError(None, None, exc))
    diag = exc.diag
    field = translated.field if translated is not None else "row"
    if field in ("row", plan.table.name):
        match = _COPY_COLUMN.search(diag.context or "")
        field = match.group(1) if match else _columns_of(connection, plan, diag.constraint_name)
    rule = translated.rule if translated is not None else "was refused by the database"
    words = diag.message_primary or str(exc).splitlines()[0]
    if isinstance(translated, ConflictError):
        return ConflictError(
            field=field, rule=f"{rule} ({words})", constraint=translated.constraint
        )
    return InvalidInputError(field=field, rule=f"{rule} ({words})")


_CONSTRAINT_COLUMNS = sa.text(
    "select string_agg(a.attname, ', ' order by a.attnum) from pg_constraint c"
    " join pg_attribute a on a.attrelid = c.conrelid and a.attnum = any(c.conkey)"
    " where c.conrelid = cast(:table as regclass) and c.conname = :name"
)


def _columns_of(connection: Connection, plan: CopyPlan, constraint: str | None) -> str:
    """The columns a constraint the code does not declare names, as the database knows it."""
    if not constraint:
        return "row"
    table = f"{plan.table.schema or 'public'}.{plan.table.name}"
    found = connection.execute(_CONSTRAINT_COLUMNS, {"table": table, "name": constraint})
    return found.scalar() or "row"


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", exc)
    diag = getattr(orig, "diag", None)
    if diag is not None and diag.message_primary:
        detail = f" ({diag.message_detail})" if diag.message_detail else ""
        return f"{diag.message_primary}{detail}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
