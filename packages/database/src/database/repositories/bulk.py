"""Bulk writes at COPY speed through `BulkWriter`: `upsert` (staging table + one merge per chunk)
and `copy` (COPY straight into the table).

The writer owns its connection and its transactions: each chunk is validated before any I/O,
written in one transaction and committed, so a chunk is all-or-nothing and earlier chunks stay
written whatever happens later. That is the point of chunking, and why a bulk write is never
part of a caller's session (repositories flush, they never commit). Both stream: the input is
read chunk by chunk, so memory stays flat however long it is.
"""

from __future__ import annotations

import gc
import itertools
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from functools import cache
from typing import Any, Literal

import psycopg
import sqlalchemy as sa
from psycopg import sql
from psycopg.types.json import Jsonb
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import SQLModel

from database.errors import BulkWriteError, InvalidInputError, invalid_input
from database.schema.registry import SCHEMAS
from database.schema.types import uuid7, uuid7_hex
from database.sessions import Claims, Database, identity_for, impersonate

DEFAULT_CHUNK = 50_000


@dataclass(frozen=True)
class UpsertResult:
    """What a bulk write did. `rows` counts valid input rows; a row repeated within a chunk is
    counted once in inserted/updated/unchanged and once in `merged_duplicates`."""

    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    merged_duplicates: int = 0
    chunks: int = 0

    def __add__(self, other: UpsertResult) -> UpsertResult:
        return UpsertResult(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


@dataclass(frozen=True)
class _Plan:
    """How rows of one Create schema become COPY tuples for one table."""

    table: sa.Table
    schema: type[BaseModel]
    fields: tuple[str, ...]  # Create fields, in `columns` order after the generated ones
    columns: tuple[str, ...]  # generated columns, then fields' columns, then extra columns
    converters: tuple[Callable[[Any], Any] | None, ...]
    generated: tuple[tuple[str, Callable[[], Any]], ...]
    key: tuple[str, ...]
    extra: tuple[tuple[str, Any], ...] = ()

    def key_positions(self) -> tuple[int, ...]:
        return tuple(self.columns.index(k) for k in self.key)

    def tuples(self, models: Iterable[BaseModel]) -> Iterator[tuple[Any, ...]]:
        # Hot loop (millions of rows): one C-level itemgetter per row; only JSON columns and
        # generated ids cost Python work.
        get = operator.itemgetter(*self.fields)
        convert = [(i, c) for i, c in enumerate(self.converters) if c is not None]
        makers = [make for _, make in self.generated]
        extra = tuple(v for _, v in self.extra)
        if len(self.fields) > 1 and not convert and not extra and len(makers) == 1:
            (make,) = makers  # the common case: a generated id and plain columns
            for model in models:
                yield (make(), *get(model.__dict__))
            return
        for model in models:
            got = get(model.__dict__)
            values = [got] if len(self.fields) == 1 else list(got)
            for i, conv in convert:
                if values[i] is not None:
                    values[i] = conv(values[i])
            yield (*[make() for make in makers], *values, *extra)


def _jsonable(value: Any) -> Jsonb:
    if isinstance(value, BaseModel):
        return Jsonb(value.model_dump(mode="json"))
    if isinstance(value, list):
        return Jsonb([v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value])
    return Jsonb(value)


def natural_key(table: sa.Table) -> tuple[str, ...]:
    """The first unique constraint's columns, else the primary key."""
    for constraint in sorted(table.constraints, key=lambda c: str(c.name)):
        if isinstance(constraint, sa.UniqueConstraint):
            return tuple(c.name for c in constraint.columns)
    return tuple(c.name for c in table.primary_key.columns)


@cache
def _base_plan(model: type[SQLModel], key: tuple[str, ...] | None) -> _Plan:
    schemas = SCHEMAS[str(model.__tablename__)]
    table: sa.Table = model.__table__  # type: ignore[attr-defined]
    mapper = sa.inspect(model)
    column_of = {attr.key: attr.columns[0] for attr in mapper.column_attrs}
    names = tuple(f for f in schemas.create.model_fields if f in column_of)
    generated: list[tuple[str, Callable[[], Any]]] = []
    pk = column_of.get("id")
    if pk is not None and "id" not in names and pk.primary_key:
        factory = model.model_fields["id"].default_factory
        assert factory is not None
        # COPY takes text: skip building UUID objects for ids made here.
        generated.append(("id", uuid7_hex if factory is uuid7 else factory))  # type: ignore[arg-type]
    # psycopg adapts str enums by value, Decimal, datetime and UUID natively: only JSON needs help.
    converters = [_jsonable if isinstance(column_of[n].type, JSONB) else None for n in names]
    columns = tuple(c for c, _ in generated) + tuple(column_of[n].name for n in names)
    return _Plan(
        table=table,
        schema=schemas.create,
        fields=names,
        columns=columns,
        converters=tuple(converters),
        generated=tuple(generated),
        key=key or natural_key(table),
    )


def _plan(
    model: type[SQLModel],
    key: Sequence[str] | None,
    extra: Mapping[str, Any],
    *,
    server_ids: bool = False,
) -> _Plan:
    plan = _base_plan(model, tuple(key) if key else None)
    if server_ids and plan.generated:
        # A user may not set ids: the database's default makes them.
        skip = len(plan.generated)
        plan = replace(plan, generated=(), columns=plan.columns[skip:])
    known = {c.name for c in plan.table.columns}
    for name in [*plan.key, *extra]:
        if name not in known:
            raise InvalidInputError(field=name, rule=f"is not a column of {plan.table.name}")
    missing = [k for k in plan.key if k not in plan.columns and k not in extra]
    if missing:
        raise InvalidInputError(field=missing[0], rule="is part of the key but never written")
    return replace(plan, columns=plan.columns + tuple(extra), extra=tuple(extra.items()))


def _validated_chunks(
    rows: Iterable[BaseModel | Mapping[str, Any]], plan: _Plan, chunk_size: int, progress: list[int]
) -> Iterator[list[BaseModel]]:
    """Chunks of validated models; raises InvalidInputError naming the global row position."""
    adapter = TypeAdapter(list[plan.schema])  # type: ignore[name-defined]
    iterator = iter(rows)
    while True:
        try:
            batch = list(itertools.islice(iterator, chunk_size))
        except Exception as exc:  # the caller's iterator failed: say how far we got
            raise _InputFailedError(exc) from exc
        if not batch:
            return
        start = progress[0]
        if all(isinstance(r, plan.schema) for r in batch):
            models: list[BaseModel] = batch  # type: ignore[assignment]
        else:
            payload = [r.model_dump() if isinstance(r, BaseModel) else r for r in batch]
            try:
                with _gc_paused():
                    models = adapter.validate_python(payload)
            except ValidationError as exc:
                error = invalid_input(exc)
                position, _, field = error.field.partition(".")
                raise InvalidInputError(
                    field=field or "row",
                    rule=error.rule,
                    position=start + int(position),
                    errors=error.errors,
                ) from None
        progress[0] += len(batch)
        yield models


class _Feed:
    """The validated chunks of one call, with its failures turned into the package's errors."""

    def __init__(self, rows: Iterable[Any], plan: _Plan, chunk_size: int) -> None:
        self._progress = [0]
        self._chunks = _validated_chunks(rows, plan, chunk_size, self._progress)

    @property
    def read(self) -> int:
        return self._progress[0]

    def next(self, *, committed: UpsertResult) -> list[BaseModel] | None:
        try:
            return next(self._chunks, None)
        except InvalidInputError as exc:
            exc.committed = committed  # type: ignore[attr-defined]
            raise
        except _InputFailedError as exc:
            raise BulkWriteError(
                f"the input failed after row {self.read}: {exc.__cause__!r}", committed=committed
            ) from exc.__cause__


class _InputFailedError(Exception):
    """The caller's iterator raised; carried out of the chunk generator as the cause."""


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while a chunk's rows are built and sent.

    Those rows are acyclic tuples, yet allocating 50k of them triggers dozens of collections,
    each walking everything the caller holds (a list of a million models costs seconds).
    Reference counting still frees memory; the collector resumes right after the chunk.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _dedupe(rows: Iterator[tuple[Any, ...]], positions: tuple[int, ...]) -> list[tuple[Any, ...]]:
    """Last occurrence of each key wins (one merge statement may not touch a row twice)."""
    key = operator.itemgetter(*positions)
    return list({key(row): row for row in rows}.values())


def copy_rows(
    connection: Connection, statement: sql.Composed, rows: Iterable[tuple[Any, ...]]
) -> None:
    """COPY `rows` through the connection's own transaction."""
    driver = connection.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _ident_list(names: Iterable[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _merge_sql(plan: _Plan, stage: str, on_conflict: str) -> sql.Composed:
    target = sql.Identifier(plan.table.schema or "public", plan.table.name)
    cols, key = _ident_list(plan.columns), _ident_list(plan.key)
    changing = [c for c in plan.columns if c not in plan.key and c != "id"]
    if on_conflict == "ignore" or not changing:
        action: sql.Composable = sql.SQL("do nothing")
    else:
        action = sql.SQL("do update set {sets} where ({old}) is distinct from ({new})").format(
            sets=sql.SQL(", ").join(
                sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c)) for c in changing
            ),
            old=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in changing),
            new=sql.SQL(", ").join(
                sql.SQL("excluded.{}").format(sql.Identifier(c)) for c in changing
            ),
        )
    if not plan.table.dialect_options["postgresql"]["partition_by"]:
        return sql.SQL(
            "with merged as (insert into {target} as t ({cols}) select {cols} from {stage}"
            " order by {key} on conflict ({key}) {action} returning (xmax = 0) as inserted)"
            " select count(*) filter (where inserted), count(*) filter (where not inserted)"
            " from merged"
        ).format(target=target, cols=cols, stage=sql.Identifier(stage), key=key, action=action)
    # A partitioned table cannot return xmax from this INSERT: a row is new when its key was
    # not there in the statement's snapshot (the same snapshot the merge runs in).
    return sql.SQL(
        "with present as (select {key} from {target} where ({key}) in"
        " (select {key} from {stage})),"
        " merged as (insert into {target} as t ({cols}) select {cols} from {stage}"
        " order by {key} on conflict ({key}) {action} returning {key}),"
        " flagged as (select not exists (select from present p where ({pkey}) = ({mkey}))"
        " as inserted from merged m)"
        " select count(*) filter (where inserted), count(*) filter (where not inserted)"
        " from flagged"
    ).format(
        target=target,
        cols=cols,
        stage=sql.Identifier(stage),
        key=key,
        action=action,
        pkey=sql.SQL(", ").join(sql.SQL("p.{}").format(sql.Identifier(c)) for c in plan.key),
        mkey=sql.SQL(", ").join(sql.SQL("m.{}").format(sql.Identifier(c)) for c in plan.key),
    )


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

    @contextmanager
    def _chunk(self, connection: Connection) -> Iterator[None]:
        """One chunk's transaction: committed when the block ends, rolled back on error."""
        with connection.begin():
            if self.identity is not None:
                impersonate(connection, self.identity)
            yield

    def upsert(
        self,
        model: type[SQLModel],
        *,
        rows: Iterable[BaseModel | Mapping[str, Any]],
        key: Sequence[str] | None = None,
        extra: Mapping[str, Any] | None = None,
        on_conflict: Literal["update", "ignore"] = "update",
    ) -> UpsertResult:
        """Insert or update `rows` (Create models or dicts) by their natural `key`.

        Per chunk: validate every row (an invalid one raises InvalidInputError with its
        position, field and rule, and nothing of that chunk is written); merge rows repeated
        within the chunk (last wins); COPY into a temporary staging table; apply one
        `INSERT … SELECT … ORDER BY key ON CONFLICT (key) DO UPDATE … WHERE changed`; commit.

        Fast path: while no chunk has met an existing key (and RLS does not apply to the role,
        which would forbid COPY), a chunk is first COPYed straight into the table inside a
        savepoint. New data thus goes in at COPY speed; the first existing key rolls that
        savepoint back and the call switches to the staging merge for the rest.

        What a failure leaves behind: every earlier chunk is committed, the failing chunk is
        rolled back entirely. A database error or an input iterator that raises becomes a
        BulkWriteError whose `committed` is the UpsertResult of the committed chunks; an invalid
        row raises InvalidInputError (with `.committed` set the same way). Unchanged rows are
        not rewritten, so their `updated_at` stays. `extra` gives constant columns the schema
        does not carry (e.g. user_id).
        """
        plan = _plan(model, key, extra or {}, server_ids=self.identity is not None)
        statements = _UpsertStatements(plan, on_conflict)
        direct: bool | None = None
        total = UpsertResult()
        feed = _Feed(rows, plan, self.chunk_size)
        with self._connection() as connection:
            while (models := feed.next(committed=total)) is not None:
                tuples: list[tuple[Any, ...]] = []
                unique = tuples
                try:
                    with self._chunk(connection):
                        if direct is None:  # decided once per call, on the first chunk
                            direct = not connection.exec_driver_sql(statements.rls).scalar_one()
                        # A repeated key (in the table or in the chunk) makes the direct COPY
                        # fail; only then are duplicates merged, so the fast path pays nothing.
                        if direct and _any_exists(connection, plan, models):
                            direct = False  # known conflicts: do not send the chunk twice
                        with _gc_paused():
                            # Rows are built while COPY sends them (Python and the server work
                            # at once), and kept, in case the chunk has to be merged after all.
                            kept = _keep(plan.tuples(models), tuples)
                            inserted = (
                                _try_direct_copy(connection, statements.direct, kept)
                                if direct
                                else None
                            )
                        if inserted is not None:
                            updated = 0
                        else:
                            direct = False  # the data overlaps what is there: merge from now on
                            connection.exec_driver_sql(statements.create_stage)
                            with _gc_paused():
                                if len(tuples) < len(models):
                                    tuples[:] = plan.tuples(models)
                                unique = _dedupe(iter(tuples), plan.key_positions())
                                copy_rows(connection, statements.stage_copy, unique)
                            inserted, updated = connection.exec_driver_sql(statements.merge).one()
                except Exception as exc:
                    first = feed.read - len(models)
                    raise BulkWriteError(
                        f"chunk of rows {first}-{feed.read - 1} failed: {_reason(exc)}",
                        committed=total,
                    ) from exc
                total = total + UpsertResult(
                    rows=len(models),
                    inserted=inserted,
                    updated=updated,
                    unchanged=len(unique) - inserted - updated,
                    merged_duplicates=len(models) - len(unique),
                    chunks=1,
                )
        return total

    def copy(
        self,
        model: type[SQLModel],
        *,
        rows: Iterable[BaseModel | Mapping[str, Any]],
        extra: Mapping[str, Any] | None = None,
    ) -> UpsertResult:
        """COPY validated rows straight into the table: the fastest path for rows known to be
        new. A duplicate key fails its chunk (rolled back) with BulkWriteError; earlier chunks
        stay."""
        plan = _plan(model, None, extra or {}, server_ids=self.identity is not None)
        target: sql.Composed = sql.SQL("copy {} ({}) from stdin").format(
            _table_ident(plan), _ident_list(plan.columns)
        )
        total = UpsertResult()
        feed = _Feed(rows, plan, self.chunk_size)
        with self._connection() as connection:
            while (models := feed.next(committed=total)) is not None:
                try:
                    with self._chunk(connection), _gc_paused():
                        copy_rows(connection, target, plan.tuples(models))
                except Exception as exc:
                    raise BulkWriteError(f"copy failed: {_reason(exc)}", committed=total) from exc
                total = total + UpsertResult(rows=len(models), inserted=len(models), chunks=1)
        return total


def _table_ident(plan: _Plan) -> sql.Identifier:
    return sql.Identifier(plan.table.schema or "public", plan.table.name)


class _UpsertStatements:
    """The SQL of one upsert call, rendered once."""

    def __init__(self, plan: _Plan, on_conflict: str) -> None:
        stage = f"stage_{plan.table.name}"
        target = _table_ident(plan)
        columns = _ident_list(plan.columns)
        self.stage_copy = sql.SQL("copy {} ({}) from stdin").format(sql.Identifier(stage), columns)
        self.direct = sql.SQL("copy {} ({}) from stdin").format(target, columns)
        self.merge = _merge_sql(plan, stage, on_conflict).as_string()
        # Dropped at commit; "if not exists" + truncate also covers a chunk that met an existing
        # key after the stage was made earlier in the same transaction.
        self.create_stage = (
            sql.SQL(
                "create temp table if not exists {stage} on commit drop as"
                " select {cols} from {target} with no data; truncate {stage}"
            )
            .format(stage=sql.Identifier(stage), cols=columns, target=target)
            .as_string()
        )
        name = f"{plan.table.schema or 'public'}.{plan.table.name}"
        self.rls = sql.SQL("select row_security_active({})").format(sql.Literal(name)).as_string()


def _keep(
    rows: Iterable[tuple[Any, ...]], kept: list[tuple[Any, ...]]
) -> Iterator[tuple[Any, ...]]:
    for row in rows:
        kept.append(row)
        yield row


def _any_exists(connection: Connection, plan: _Plan, models: list[BaseModel]) -> bool:
    """Probe the first, middle and last keys of a chunk (three index lookups): data that
    overlaps what is stored almost always shows it there."""
    positions = plan.key_positions()
    sample = plan.tuples([models[0], models[len(models) // 2], models[-1]])
    probes = {tuple(row[p] for p in positions) for row in sample}
    columns = [plan.table.c[name] for name in plan.key]
    statement = sa.select(sa.exists().where(sa.tuple_(*columns).in_(list(probes))))
    return bool(connection.execute(statement).scalar())


def _try_direct_copy(
    connection: Connection, statement: sql.Composed, rows: Iterable[tuple[Any, ...]]
) -> int | None:
    """COPY straight into the table inside a savepoint: the fast path for rows that are all
    new. Returns how many went in, or None (savepoint rolled back) when a key already exists."""
    sent = 0

    def counted() -> Iterator[tuple[Any, ...]]:
        nonlocal sent
        for row in rows:
            sent += 1
            yield row

    try:
        with connection.begin_nested():
            copy_rows(connection, statement, counted())
    except psycopg.errors.UniqueViolation:
        return None
    return sent


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", exc)
    diag = getattr(orig, "diag", None)
    if diag is not None and diag.message_primary:
        detail = f" ({diag.message_detail})" if diag.message_detail else ""
        return f"{diag.message_primary}{detail}"
    return str(exc).splitlines()[0]
