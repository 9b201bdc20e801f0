"""Bulk writes at COPY speed through `BulkWriter`: `upsert` (COPY, or a staging merge once keys
exist) and `copy` (COPY straight into the table).

The writer owns its connection and its transactions: each chunk is written in one transaction
and committed, so earlier chunks stay written whatever happens later. That is the point of
chunking, and why a bulk write is never part of a caller's session (repositories flush, they
never commit). Both stream: memory stays flat however long the input is.

How a call runs:

* **Two threads.** The caller's thread validates rows (inside pydantic-core, into dicts, see
  `database.repositories.rows`), builds COPY tuples, sorts and de-duplicates each chunk and
  formats it as COPY text; a writer thread owns the connection and sends the previous chunk
  meanwhile. It needs the GIL for little more than its round trips, and the caller starts on
  the next chunk only once the current one streams, so the server (index maintenance
  dominates) is never kept waiting by Python. Chunks start small, so the server starts at
  once, and double up to `chunk_size`.
* **Key order everywhere.** Each chunk is sorted by its natural key before any COPY or merge,
  so concurrent writers over overlapping keys take their row locks in one global order and
  cannot deadlock each other; deadlocks and serialization failures from elsewhere are retried
  (the whole chunk, bounded jittered backoff) before they are reported. A retried chunk is
  counted once.
* **A refused row costs only itself** (with `on_reject`): when the database (or the driver)
  refuses a row, the chunk is split — at the line a COPY names, else in halves — inside
  savepoints until the row is alone; it is reported with the database's reason, the others
  are written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import Connection
from sqlmodel import SQLModel

from database.errors import BulkWriteError, InvalidInputError
from database.repositories.bulk_feed import Feed, InputIteratorError
from database.repositories.bulk_plan import Statements, copy_plan, copy_rows, natural_key
from database.repositories.bulk_results import OnChunk, OnReject, Rejected, UpsertResult
from database.repositories.bulk_write import ChunkWriter
from database.sessions import Claims, Database, identity_for

__all__ = [
    "DEFAULT_CHUNK",
    "BulkWriter",
    "InputFailedError",
    "OnChunk",
    "OnReject",
    "Rejected",
    "UpsertResult",
    "copy_rows",
    "natural_key",
]

DEFAULT_CHUNK = 20_000


class InputFailedError(BulkWriteError):
    """The rows' iterator raised (its exception is the `__cause__`); earlier chunks stay."""


class BulkWriter:
    """Bulk writes for one database, on connections the writer owns.

        writer = BulkWriter(db)                       # the service: RLS bypassed
        result = writer.upsert(WhaleTransaction, rows=creates_or_dicts)
        writer.copy(Ohlcv, rows=bars_known_to_be_new)
        BulkWriter(db, claims=claims).upsert(...)     # as a user: RLS applies to every row

    Each chunk is one committed transaction (a user writer sets the role and claims at the start
    of each, as a user session does). Async code calls it through a worker thread.
    """

    def __init__(
        self, database: Database, *, claims: Claims | None = None, chunk_size: int = DEFAULT_CHUNK
    ) -> None:
        if chunk_size < 1:
            raise InvalidInputError(field="chunk_size", rule="must be at least 1")
        self.database = database
        self.identity = identity_for(claims) if claims is not None else None
        self.chunk_size = chunk_size

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        engine = self.database.engine if self.identity is None else self.database.api_engine
        with engine.connect() as connection:
            yield connection

    def upsert(
        self,
        model: type[SQLModel],
        *,
        rows: Iterable[BaseModel | Mapping[str, Any]],
        key: Sequence[str] | None = None,
        extra: Mapping[str, Any] | None = None,
        on_conflict: Literal["update", "ignore"] = "update",
        on_reject: OnReject | None = None,
        on_chunk: OnChunk | None = None,
        prevalidated: bool = False,
    ) -> UpsertResult:
        """Insert or update `rows` (Create models or dicts) by their natural `key`.

        Per chunk: validate every row; sort by key and merge rows repeated within the chunk
        (last wins); write; commit. While no chunk has met an existing key (and RLS does not
        apply to the role, which would forbid COPY), a chunk is COPYed straight into the table
        inside a savepoint: new data goes in at COPY speed. The first existing key rolls that
        savepoint back and the call switches to a staging table and one
        `INSERT … SELECT … ORDER BY key ON CONFLICT (key) DO UPDATE … WHERE changed` per chunk.
        Unchanged rows are not rewritten, so their `updated_at` stays. `extra` gives constant
        columns the schema does not carry (e.g. user_id).

        Bad rows. Without `on_reject`, an invalid row raises InvalidInputError (its position,
        field and rule; `.committed` set) and nothing of its chunk is written, and a row the
        database refuses fails its chunk with BulkWriteError. With `on_reject`, both are handed
        to it as `Rejected` and left out, and the rest of the chunk is written.

        `prevalidated=True` takes mappings that are already valid: every field of the Create
        schema present, as `RowValidator` returns them (the database's constraints still hold).

        What a failure leaves behind: every earlier chunk is committed, the failing chunk is
        rolled back entirely. A database error or an input iterator that raises becomes a
        BulkWriteError whose `committed` is the UpsertResult of the committed chunks; an
        exception from a hook, or an interrupt, is raised as it is, after the chunk in flight
        has finished.
        """
        plan = copy_plan(model, key, extra or {}, server_ids=self.identity is not None)
        writer = ChunkWriter(
            self._connection,
            plan,
            Statements(plan, on_conflict),
            identity=self.identity,
            merge=True,
            on_reject=on_reject,
            on_chunk=on_chunk,
        )
        feed = Feed(
            rows,
            plan,
            chunk_size=self.chunk_size,
            collect_invalid=on_reject is not None,
            prevalidated=prevalidated,
            dedupe=True,
        )
        return _pipeline(feed, writer)

    def copy(
        self,
        model: type[SQLModel],
        *,
        rows: Iterable[BaseModel | Mapping[str, Any]],
        extra: Mapping[str, Any] | None = None,
        on_reject: OnReject | None = None,
        prevalidated: bool = False,
    ) -> UpsertResult:
        """COPY validated rows straight into the table: the fastest path for rows known to be
        new. A duplicate key fails its chunk (rolled back) with BulkWriteError; earlier chunks
        stay. Bad rows as in `upsert`."""
        plan = copy_plan(model, None, extra or {}, server_ids=self.identity is not None)
        statements = Statements(plan, "ignore")
        writer = ChunkWriter(
            self._connection,
            plan,
            statements,
            identity=self.identity,
            merge=False,
            on_reject=on_reject,
            on_chunk=None,
        )
        writer.direct = True
        feed = Feed(
            rows,
            plan,
            chunk_size=self.chunk_size,
            collect_invalid=on_reject is not None,
            prevalidated=prevalidated,
            dedupe=False,
        )
        return _pipeline(feed, writer)


def _pipeline(feed: Feed, writer: ChunkWriter) -> UpsertResult:
    """Build chunks here while the writer's thread writes the previous one."""
    writer.start()
    try:
        for chunk in feed.chunks():
            writer.put(chunk)
    except InvalidInputError as exc:
        _stop(writer)
        exc.committed = writer.total  # type: ignore[attr-defined]
        raise
    except InputIteratorError as exc:
        _stop(writer)
        raise InputFailedError(
            f"the input failed after row {feed.read}: {exc.__cause__!r}", committed=writer.total
        ) from exc.__cause__
    except BaseException:
        _stop(writer)
        raise
    writer.finish()
    return writer.total


def _stop(writer: ChunkWriter) -> None:
    """Let the chunk in flight finish (its failure, if any, gives way to the caller's)."""
    with contextlib.suppress(BaseException):
        writer.finish()
