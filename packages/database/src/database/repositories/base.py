"""The generic repository: get / list / create / update / delete for one table.

A repository works inside the session it is given, so the same code serves a service session
(everything) and a user session (what RLS lets that user see: another user's rows are simply
not there for get, list, update or delete). Methods are keyword-only and never commit: the
session's block decides. Async code uses the same repositories through `AsyncRepository`,
which runs them on the async session's connection (SQLAlchemy's `run_sync`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Concatenate, Generic, Literal, ParamSpec, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, ValidationError
from sqlmodel import Session, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from database.errors import InvalidInputError
from database.models.base import build_row
from database.models.registry import SCHEMAS, TableSchemas
from database.repositories.bulk import DEFAULT_CHUNK, UpsertResult, copy_many, upsert_many
from database.repositories.pagination import decode_cursor, encode_cursor

RowT = TypeVar("RowT", bound=SQLModel)
RepoT = TypeVar("RepoT")
P = ParamSpec("P")
T = TypeVar("T")

MAX_PAGE = 1000


@dataclass(frozen=True)
class RowsPage(Generic[RowT]):
    rows: list[RowT]
    next_cursor: str | None


def invalid_input(exc: ValidationError, *, position: int | None = None) -> InvalidInputError:
    """The first problem of a pydantic error as an InvalidInputError (all of them attached)."""
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "row"
    error = InvalidInputError(
        field=field, rule=str(first["msg"]).removeprefix("Value error, "), position=position
    )
    error.errors = exc.errors()  # type: ignore[attr-defined]
    return error


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
    ) -> RowsPage[RowT]:
        """One page, in `sort` order. Pass the returned `next_cursor` to get the next page."""
        check_limit(limit)
        keys = [self.column(name) for name in self.sort]
        conditions = [*where]
        conditions += [self.column(k) == v for k, v in (filters or {}).items()]
        if cursor is not None:
            values = decode_cursor(cursor, width=len(keys))
            after = sa.tuple_(*(sa.literal(v, k.type) for v, k in zip(values, keys, strict=True)))
            conditions.append(
                sa.tuple_(*keys) < after if newest_first else sa.tuple_(*keys) > after
            )
        statement = (
            select(self.model)
            .where(*conditions)
            .order_by(*(k.desc() if newest_first else k.asc() for k in keys))
            .limit(limit + 1)
        )
        rows = list(self.session.exec(statement).all())
        if len(rows) <= limit:
            return RowsPage(rows, None)  # type: ignore[arg-type]
        last = rows[limit - 1]
        next_cursor = encode_cursor([getattr(last, k.key) for k in keys])
        return RowsPage(rows[:limit], next_cursor)  # type: ignore[arg-type]

    def create(self, /, *, data: BaseModel | Mapping[str, Any], **extra: Any) -> RowT:
        """Insert a row from the Create schema (`extra`: fields it does not carry, e.g. user_id)."""
        row = build_row(self.model, validate(self.schemas().create, data), **extra)
        self.session.add(row)
        self.session.flush()
        return row  # type: ignore[return-value]

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
            self.session.flush()
        return row

    def upsert_many(
        self,
        *,
        rows: Iterable[BaseModel | Mapping[str, Any]],
        key: Sequence[str] | None = None,
        extra: Mapping[str, Any] | None = None,
        on_conflict: Literal["update", "ignore"] = "update",
        chunk_size: int = DEFAULT_CHUNK,
    ) -> UpsertResult:
        """Bulk insert-or-update by natural key; see `database.repositories.bulk.upsert_many`."""
        return upsert_many(
            self.session,
            model=self.model,
            rows=rows,
            key=key,
            extra=extra,
            on_conflict=on_conflict,
            chunk_size=chunk_size,
        )

    def copy_many(
        self,
        *,
        rows: Iterable[BaseModel | Mapping[str, Any]],
        extra: Mapping[str, Any] | None = None,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> UpsertResult:
        """COPY rows known to be new; see `database.repositories.bulk.copy_many`."""
        return copy_many(
            self.session, model=self.model, rows=rows, extra=extra, chunk_size=chunk_size
        )

    def delete(self, *, id: Any) -> bool:
        """True when a row was deleted (False: absent, or not this session's user's)."""
        (pk,) = self.model.__table__.primary_key.columns  # type: ignore[attr-defined]
        result = self.session.execute(sa.delete(self.model).where(pk == id))
        return bool(result.rowcount)  # type: ignore[attr-defined]


class AsyncRepository(Generic[RepoT]):
    """Any repository, used from async code: `await AsyncRepository(s, Repo).run(Repo.m, …)`,
    or the shortcut `await AsyncRepository(s, Repo).m(…)`. One implementation serves both."""

    def __init__(self, session: AsyncSession, repository: Callable[[Session], RepoT]) -> None:
        self.session = session
        self.repository = repository

    async def run(
        self, method: Callable[Concatenate[RepoT, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        def call(sync_session: Any, /) -> T:
            return method(self.repository(sync_session), *args, **kwargs)

        return await self.session.run_sync(call)

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.repository, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self.run(method, *args, **kwargs)

        return call
