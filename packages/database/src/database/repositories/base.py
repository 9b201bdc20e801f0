"""The generic repository: get / list / create / update / delete for one table.

A repository works inside the session it is given, so the same code serves a service session
(everything) and a user session (what RLS lets that user see: another user's rows are simply
not there for get, list, update or delete). Methods are keyword-only and never commit: the
session's block decides. Async code uses the same repositories through `AsyncRepository`,
which runs them on the async session's connection (SQLAlchemy's `run_sync`).

A write the database refuses comes back in the package's vocabulary: a duplicate key or a
missing referenced row is a ConflictError, a broken CHECK or NOT NULL an InvalidInputError,
each naming the field and the constraint. Bulk writes are `database.repositories.BulkWriter`'s.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from functools import cache
from typing import Any, ClassVar, Concatenate, Generic, ParamSpec, TypeVar

import psycopg
import sqlalchemy as sa
from pydantic import BaseModel, ValidationError
from sqlalchemy.dialects.postgresql import psycopg as postgresql_psycopg
from sqlmodel import Session, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from database.ddl import QUOTA_SQLSTATE
from database.errors import ConflictError, InvalidInputError, invalid_input
from database.public_json import row_json
from database.repositories.pagination import decode_cursor, encode_cursor
from database.schema.base import Page, build_row, metadata
from database.schema.partitions import partitioned_tables
from database.schema.registry import SCHEMAS, TableSchemas
from database.sessions import run_in

RowT = TypeVar("RowT", bound=SQLModel)
RepoT = TypeVar("RepoT")
P = ParamSpec("P")
T = TypeVar("T")

MAX_PAGE = 1000


def validate(schema: type[BaseModel], data: BaseModel | Mapping[str, Any]) -> BaseModel:
    """`data` as an instance of `schema`, validated; dicts are checked, instances trusted."""
    if isinstance(data, schema):
        return data
    try:
        payload = data.model_dump() if isinstance(data, BaseModel) else data
        return schema.model_validate(payload)
    except ValidationError as exc:
        raise invalid_input(exc) from None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(field="limit", rule=f"must be between 1 and {MAX_PAGE}")
    return limit


class Repository(Generic[RowT]):
    """CRUD and keyset listing for `model`, ordered by `sort` (unique together, newest first)."""

    model: ClassVar[type[SQLModel]]
    sort: ClassVar[tuple[str, ...]] = ("created_at", "id")

    def __init__(self, session: Session) -> None:
        self.session = session

    @classmethod
    def schemas(cls) -> TableSchemas:
        return SCHEMAS[str(cls.model.__tablename__)]

    @classmethod
    def column(cls, name: str) -> Any:
        table = cls.model.__table__  # type: ignore[attr-defined]
        for attr in sa.inspect(cls.model).column_attrs:
            if attr.key == name or attr.columns[0].name == name:
                return getattr(cls.model, attr.key)
        raise InvalidInputError(field=name, rule=f"is not a column of {table.name}")

    @classmethod
    def listing(cls, newest_first: bool) -> str:
        """What a cursor of `list` is bound to: table, sort columns, direction."""
        direction = "desc" if newest_first else "asc"
        return f"{cls.model.__tablename__}:{','.join(cls.sort)}:{direction}"

    @classmethod
    def row_columns(cls) -> list[sa.Label[Any]]:
        """The table's columns labelled with the model's attribute names: `select(*…)` gives
        rows whose attributes read like the model's (no ORM objects built, which is most of
        what a page costs)."""
        return list(_row_columns(cls.model))

    def get(self, *, id: Any) -> RowT | None:
        # Always ask the database: RLS, not the session's identity map, decides visibility.
        return self.session.get(self.model, id, populate_existing=True)  # type: ignore[return-value]

    def list(
        self,
        *,
        filters: Mapping[str, Any] | None = None,
        where: Sequence[sa.ColumnElement[bool]] = (),
        limit: int = 50,
        cursor: str | None = None,
        newest_first: bool = True,
    ) -> Page[Any]:
        """One page of rows (attributes named like the model's), in `sort` order. Pass the
        returned `next_cursor` to get the next page."""
        check_limit(limit)
        keys = self.sort_keys()
        conditions = [*where]
        conditions += [self.column(k) == v for k, v in (filters or {}).items()]
        if cursor is not None:
            values = decode_cursor(cursor, width=len(keys), listing=self.listing(newest_first))
            after = [sa.literal(v, k.type) for v, k in zip(values, keys, strict=True)]
            conditions.append(_after(keys, after, newest_first=newest_first))
        statement = (
            sa.select(*self.row_columns())
            .where(*conditions)
            .order_by(*_order(keys, newest_first=newest_first))
            .limit(limit + 1)
        )
        rows = list(self.session.execute(statement).all())
        if len(rows) <= limit:
            return Page.model_construct(data=rows, next_cursor=None)
        last = rows[limit - 1]
        next_cursor = encode_cursor(
            [getattr(last, k.key) for k in keys], listing=self.listing(newest_first)
        )
        return Page.model_construct(data=rows[:limit], next_cursor=next_cursor)

    @classmethod
    def sort_keys(cls) -> tuple[Any, ...]:
        return tuple(cls.column(name) for name in cls.sort)

    @classmethod
    def public_listing(
        cls,
        public: type[BaseModel],
        *,
        conditions: Mapping[str, Callable[[Any], sa.ColumnElement[bool]]],
        values: Mapping[str, Any],
        limit: int = 50,
        cursor: str | None = None,
        newest_first: bool = True,
    ) -> PublicListing:
        """`list` as `public`'s JSON rendered by the server (`database.public_json`): the SQL,
        its parameters and how its rows become a page. `conditions[name](value)` is the filter
        `name`; those named in `values` apply, each bound to its value."""
        check_limit(limit)
        after: list[Any] = []
        if cursor is not None:
            width = len(cls.sort)
            after = decode_cursor(cursor, width=width, listing=cls.listing(newest_first))
        names = tuple(sorted(values))

        def build() -> sa.Select[Any]:
            keys = cls.sort_keys()
            where = [conditions[name](sa.bindparam(name)) for name in names]
            if after:
                bound = [sa.bindparam(f"after_{i}", type_=k.type) for i, k in enumerate(keys)]
                where.append(_after(keys, bound, newest_first=newest_first))
            return (
                sa.select(cls.public_json(public), *keys)
                .where(*where)
                .order_by(*_order(keys, newest_first=newest_first))
                .limit(sa.bindparam("limit", type_=sa.Integer))
            )

        sql = _compiled((cls, public, names, bool(after), newest_first), build)
        params = {name: bound_value(name, value) for name, value in values.items()}
        params |= {f"after_{i}": value for i, value in enumerate(after)}
        params["limit"] = limit + 1
        return PublicListing(sql=sql, params=params, limit=limit, listing=cls.listing(newest_first))

    @classmethod
    def public_one(
        cls,
        public: type[BaseModel],
        *,
        condition: Callable[[Any], sa.ColumnElement[bool]],
        name: str,
        value: Any,
    ) -> PublicQuery:
        """The row where `condition(value)` holds (a unique key), as `public`'s JSON rendered
        by the server; `name` names the condition (one compiled statement per name)."""

        def build() -> sa.Select[Any]:
            return sa.select(cls.public_json(public)).where(condition(sa.bindparam(name)))

        sql = _compiled((cls, public, "one", name), build)
        return PublicQuery(sql=sql, params={name: bound_value(name, value)})

    @classmethod
    def public_json(cls, public: type[BaseModel]) -> sa.Label[str]:
        return row_json(public, cls.model.__table__).label("json")  # type: ignore[attr-defined]

    def create(self, /, *, data: BaseModel | Mapping[str, Any], **extra: Any) -> RowT:
        """Insert a row from the Create schema (`extra`: fields it does not carry, e.g. user_id).

        Only those columns are written; ids and timestamps come from the database's defaults,
        so the same call works for a user whose grants cover just the client's columns.
        """
        row = build_row(self.model, validate(self.schemas().create, data), **extra)
        keys = [*self._create_columns(), *(k for k in extra if k not in self._create_columns())]
        statement = (
            sa.insert(self.model)
            .values({key: getattr(row, key) for key in keys})
            .returning(self.model)
        )
        with refused_writes():
            return self.session.scalars(statement).one()  # type: ignore[return-value]

    @classmethod
    def _create_columns(cls) -> tuple[str, ...]:
        mapped = {attr.key for attr in sa.inspect(cls.model).column_attrs}
        return tuple(f for f in cls.schemas().create.model_fields if f in mapped)

    def update(self, *, id: Any, data: BaseModel | Mapping[str, Any]) -> RowT | None:
        """Apply the fields set in the Update schema; None when the row is not there (or not
        visible to this session's user)."""
        schema = self.schemas().update
        if schema is None:
            raise InvalidInputError(field=str(self.model.__tablename__), rule="is append-only")
        patch = validate(schema, data).model_dump(exclude_unset=True, mode="json")
        row = self.get(id=id)
        if row is None:
            return None
        if patch:
            # Rows loaded from the database hold enum columns as plain text: no warnings for that.
            current = row.model_dump(mode="json", warnings=False)
            merged = self.model.model_validate({**current, **patch})
            row.sqlmodel_update(merged.model_dump(include=set(patch)))
            with refused_writes():
                self.session.flush()
        return row

    def delete(self, *, id: Any) -> bool:
        """True when a row was deleted (False: absent, or not this session's user's)."""
        # The mapper's identity: `id` also on partitioned tables, whose key holds more.
        (pk,) = sa.inspect(self.model).primary_key
        with refused_writes():
            result = self.session.execute(sa.delete(self.model).where(pk == id))
        return bool(result.rowcount)  # type: ignore[attr-defined]


@cache
def _row_columns(model: type[SQLModel]) -> tuple[sa.Label[Any], ...]:
    return tuple(attr.columns[0].label(attr.key) for attr in sa.inspect(model).column_attrs)


def _order(keys: Sequence[Any], *, newest_first: bool) -> list[Any]:
    return [k.desc() if newest_first else k.asc() for k in keys]


def _after(keys: Sequence[Any], after: Sequence[Any], *, newest_first: bool) -> Any:
    """Rows past a cursor: a row comparison, which the (keys) index answers as one range."""
    return (
        sa.tuple_(*keys) < sa.tuple_(*after)
        if newest_first
        else sa.tuple_(*keys) > sa.tuple_(*after)
    )


def plain_value(value: Any) -> Any:
    """A value as its column holds it (psycopg would send an enum's name, not its value)."""
    return value.value if isinstance(value, Enum) else value


def bound_value(name: str, value: Any) -> Any:
    """`value` as a client-bound parameter: as its column holds it, instants in UTC (the text
    of `+18:18` is beyond what PostgreSQL reads as an offset; the instant is not)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise InvalidInputError(field=name, rule="is out of range in UTC") from None
    return plain_value(value)


_DIALECT = postgresql_psycopg.dialect()  # type: ignore[no-untyped-call]
_PUBLIC_SQL: dict[tuple[Any, ...], str] = {}


def _compiled(shape: tuple[Any, ...], build: Callable[[], sa.Select[Any]]) -> str:
    # Compiling costs more than the query it makes: once per shape (which filters are set,
    # whether a cursor is), then only the parameters change.
    sql = _PUBLIC_SQL.get(shape)
    if sql is None:
        sql = _PUBLIC_SQL[shape] = str(build().compile(dialect=_DIALECT))
    return sql


@dataclass(frozen=True)
class PublicQuery:
    """Rows rendered by the server as a Public model's JSON: `sql` with `%(name)s` placeholders
    for `params`, bound by the client (so one simple query can carry the caller's role too).
    Each row's first column is the JSON text."""

    sql: str
    params: dict[str, Any]


@dataclass(frozen=True)
class PublicListing(PublicQuery):
    """A page of a listing: rows are (json, *sort keys), one more than `limit` when a next
    page exists."""

    limit: int
    listing: str

    def page(self, rows: Sequence[Sequence[Any]]) -> JsonPage:
        items = [row[0] for row in rows[: self.limit]]
        if len(rows) <= self.limit:
            return JsonPage(items=items, next_cursor=None)
        keys = rows[self.limit - 1][1:]
        return JsonPage(items=items, next_cursor=encode_cursor(keys, listing=self.listing))


@dataclass(frozen=True)
class JsonPage:
    """One page as the JSON texts of its items, in order, and the cursor of the next."""

    items: list[str]
    next_cursor: str | None


class AsyncRepository(Generic[RepoT]):
    """Any repository, used from async code: `await AsyncRepository(s, Repo).run(Repo.m, …)`.
    One implementation serves both; `run` keeps the method's signature for type checkers."""

    def __init__(self, session: AsyncSession, repository: Callable[[Session], RepoT]) -> None:
        self.session = session
        self.repository = repository

    async def run(
        self, method: Callable[Concatenate[RepoT, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        def call(sync_session: Session, /) -> T:
            return method(self.repository(sync_session), *args, **kwargs)

        return await run_in(self.session, call)


# -- a refused write in the package's vocabulary -------------------------------------------

_CONFLICTS = {
    "23505": "already exists",  # unique_violation
    "23503": "refers to a row that does not exist (or is still referred to)",  # foreign_key
    "23P01": "overlaps an existing row",  # exclusion_violation
}
_INVALID = {
    "23514": "breaks the rule {constraint}",  # check_violation
    "23502": "must not be null",  # not_null_violation
    "22001": "is too long",  # string_data_right_truncation
    "22003": "is out of range",  # numeric_value_out_of_range
    "22P02": "has the wrong type",  # invalid_text_representation
}


def _constraint_columns(name: str | None) -> list[str]:
    if not name:
        return []
    for table in metadata.tables.values():
        for constraint in table.constraints:
            if constraint.name != name:
                continue
            if isinstance(constraint, sa.CheckConstraint):  # the columns its SQL names
                words = set(re.findall(r"[a-z_][a-z0-9_]*", str(constraint.sqltext)))
                return [c.name for c in table.columns if c.name in words]
            return [c.name for c in getattr(constraint, "columns", [])]
        for index in table.indexes:
            if index.name == name:
                return [c.name for c in index.columns]
    return []


def declared_constraint(table: str | None, constraint: str | None) -> str | None:
    """The declared name of `constraint`: a partition reports its own copy of the parent's key
    (`<partition>_pkey`, `<partition>_<columns>_key`, cut to 63 bytes); CHECKs keep theirs."""
    if not table or not constraint or not constraint.startswith(f"{table}_"):
        return constraint
    for parent, _ in partitioned_tables():
        if not table.startswith(f"{parent.name}_"):
            continue
        rest = constraint.removeprefix(f"{table}_")
        if rest == "pkey":
            return str(parent.primary_key.name)
        uniques = [c for c in parent.constraints if isinstance(c, sa.UniqueConstraint)]
        for unique in uniques:
            if "_".join(c.name for c in unique.columns).startswith(rest.removesuffix("_key")):
                return str(unique.name)
    return constraint


def refused_write(exc: sa.exc.DBAPIError) -> ConflictError | InvalidInputError | None:
    """A database refusal as ConflictError / InvalidInputError naming field and constraint, or
    None when `exc` is not about the data written (a lost connection, a timeout)."""
    orig = exc.orig
    if not isinstance(orig, psycopg.Error) or orig.sqlstate is None:
        return None
    diag = orig.diag
    constraint = declared_constraint(diag.table_name, diag.constraint_name)
    columns = _constraint_columns(constraint)
    field = diag.column_name or ", ".join(columns) or diag.table_name or "row"
    if orig.sqlstate == QUOTA_SQLSTATE:  # the quota trigger: "limit reached: at most …"
        table = diag.table_name or "rows"
        return ConflictError(field=table, rule=diag.message_primary or "limit reached",
                             constraint=f"{table}_quota")  # fmt: skip
    if orig.sqlstate in _CONFLICTS:
        return ConflictError(field=field, rule=_CONFLICTS[orig.sqlstate], constraint=constraint)
    if orig.sqlstate in _INVALID:
        rule = _INVALID[orig.sqlstate].format(constraint=constraint or "")
        return InvalidInputError(field=field, rule=rule)
    return None


@contextmanager
def refused_writes() -> Iterator[None]:
    """Around a flush or a write statement: refusals become the package's errors."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        translated = refused_write(exc)
        if translated is None:
            raise
        raise translated from exc
