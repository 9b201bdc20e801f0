"""How rows of a Create schema become COPY tuples for one table, and the SQL a bulk write runs
(COPY into the table or a staging table, one merge per chunk), rendered once per call."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import sql
from psycopg.types.json import Jsonb
from pydantic import BaseModel
from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import SQLModel

from database.errors import InvalidInputError
from database.schema.registry import SCHEMAS
from database.schema.types import uuid7, uuid7_hex


@dataclass(frozen=True)
class CopyPlan:
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
        """Where the key is in a complete COPY tuple."""
        return tuple(self.columns.index(k) for k in self.key)

    def bare_key_positions(self) -> tuple[int, ...]:
        """Where the key is in a tuple from `builder` (generated columns not yet there); empty
        when the key is generated here (fresh ids: nothing to sort by, nothing to conflict)."""
        skip = len(self.generated)
        positions = tuple(p - skip for p in self.key_positions())
        return () if any(p < 0 for p in positions) else positions

    def builder(self) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
        """Row (a dict of every field) -> its fields' and extra columns' values. Hot (millions
        of rows): one C-level itemgetter per row; only JSON columns cost Python work."""
        get = operator.itemgetter(*self.fields)
        convert = [(i, c) for i, c in enumerate(self.converters) if c is not None]
        extra = tuple(v for _, v in self.extra)
        if len(self.fields) > 1 and not convert and not extra:
            return get  # the common case: plain columns, the getter's tuple as it is
        single = len(self.fields) == 1

        def build(row: Mapping[str, Any]) -> tuple[Any, ...]:
            got = get(row)
            values = [got] if single else list(got)
            for i, conv in convert:
                if values[i] is not None:
                    values[i] = conv(values[i])
            return (*values, *extra)

        return build

    def complete(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """`rows` (built, in the order they will be written) with their generated columns in
        front. Time-ordered ids are handed out in ascending order along the rows, so the
        primary key's index (and the created_at, id one) grow at their right edge."""
        if not self.generated:
            return rows
        if len(self.generated) == 1:
            (_, make), count = self.generated[0], len(rows)
            ids = [make() for _ in range(count)]
            if make is uuid7_hex:
                ids.sort()  # fixed-width lower-case hex: text order is time order
            return [(i, *row) for i, row in zip(ids, rows, strict=True)]
        makers = [make for _, make in self.generated]
        return [(*[make() for make in makers], *row) for row in rows]


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
def _base_plan(model: type[SQLModel], key: tuple[str, ...] | None) -> CopyPlan:
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
    return CopyPlan(
        table=table,
        schema=schemas.create,
        fields=names,
        columns=columns,
        converters=tuple(converters),
        generated=tuple(generated),
        key=key or natural_key(table),
    )


def copy_plan(
    model: type[SQLModel],
    key: Sequence[str] | None,
    extra: Mapping[str, Any],
    *,
    server_ids: bool = False,
) -> CopyPlan:
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


class Statements:
    """The SQL of one call, rendered once."""

    def __init__(self, plan: CopyPlan, on_conflict: str) -> None:
        stage = f"stage_{plan.table.name}"
        target = table_ident(plan)
        self.plan_key = plan.key
        columns = ident_list(plan.columns)
        # Rows are formatted as UTF-8 on the caller's thread (bulk_copy), whatever the
        # connection's client encoding.
        copy = "copy {} ({}) from stdin with (encoding 'utf8')"
        self.stage_copy = sql.SQL(copy).format(sql.Identifier(stage), columns)
        self.direct = sql.SQL(copy).format(target, columns)
        self.merge = _merge_sql(plan, stage, on_conflict).as_string()
        # Dropped at commit; "if not exists" + truncate also covers a segment after another one
        # made the stage earlier in the same transaction.
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
        self._probe_key = operator.itemgetter(*plan.bare_key_positions() or (0,))
        one = sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * len(plan.key)))
        self._probe = (
            sql.SQL("select exists (select from {target} where ({key}) in ({values}))").format(
                target=target, key=ident_list(plan.key), values=sql.SQL(", ").join([one] * 3)
            )
            if plan.bare_key_positions()
            else None  # the key is an id made here: fresh, it cannot exist
        )

    def exists(self, connection: Connection, rows: list[tuple[Any, ...]]) -> bool:
        """Whether the first, middle or last key of `rows` (built tuples, sorted by key) is
        stored: three index lookups, rendered once and sent through the driver. Data that
        overlaps what is stored almost always shows it there."""
        if self._probe is None or not rows:
            return False
        get, single = self._probe_key, len(self.plan_key) == 1
        params: list[Any] = []
        for row in (rows[0], rows[len(rows) // 2], rows[-1]):
            params += [get(row)] if single else get(row)
        driver = connection.connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        found = driver.execute(self._probe, params).fetchone()
        return bool(found and found[0])


def copy_rows(
    connection: Connection, statement: sql.Composed, rows: Iterable[tuple[Any, ...]]
) -> None:
    """COPY `rows` through the connection's own transaction."""
    driver = connection.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def ident_list(names: Iterable[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def table_ident(plan: CopyPlan) -> sql.Identifier:
    return sql.Identifier(plan.table.schema or "public", plan.table.name)


def _key_order(plan: CopyPlan) -> sql.Composed:
    """ORDER BY the key as Python sorted it: text bytewise (COLLATE "C" orders UTF-8 by code
    point, as Python compares str), whatever the database's collation."""
    parts = []
    for name in plan.key:
        column = plan.table.c[name]
        text = isinstance(column.type, sa.String | sa.Text | sa.Enum)
        parts.append(
            sql.SQL('{} collate "C"').format(sql.Identifier(name)) if text else sql.Identifier(name)
        )
    return sql.SQL(", ").join(parts)


def _merge_sql(plan: CopyPlan, stage: str, on_conflict: str) -> sql.Composed:
    target = sql.Identifier(plan.table.schema or "public", plan.table.name)
    cols, key = ident_list(plan.columns), ident_list(plan.key)
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
    parts = {
        "target": target,
        "cols": cols,
        "stage": sql.Identifier(stage),
        "order": _key_order(plan),
        "key": key,
        "action": action,
    }
    if not plan.table.dialect_options["postgresql"]["partition_by"]:
        return sql.SQL(
            "with merged as (insert into {target} as t ({cols}) select {cols} from {stage}"
            " order by {order} on conflict ({key}) {action} returning (xmax = 0) as inserted)"
            " select count(*) filter (where inserted), count(*) filter (where not inserted)"
            " from merged"
        ).format(**parts)
    # A partitioned table cannot return xmax from this INSERT. When the id is made here (a fresh
    # UUIDv7 per staged row, never part of the key), a row is new exactly when it comes back with
    # the id it was staged with: an update keeps the stored row's id. That also holds for a key a
    # concurrent writer committed after this statement's snapshot. One join (hash or merge) of
    # the returned ids with the stage, no second probe of the partitions.
    if "id" in dict(plan.generated) and "id" not in plan.key:
        return sql.SQL(
            "with merged as (insert into {target} as t ({cols}) select {cols} from {stage}"
            " order by {order} on conflict ({key}) {action} returning t.id)"
            " select count(s.id), count(*) - count(s.id)"
            " from merged m left join {stage} s on s.id = m.id"
        ).format(**parts)
    # Otherwise a row is new when its key was not there in the statement's snapshot. `present`
    # is materialized and joined (a hash join): inlined into a per-row NOT EXISTS, it rescanned
    # the staged rows for every written row — quadratic in the chunk.
    return sql.SQL(
        "with present as materialized (select true as found, {key} from {target}"
        " where ({key}) in (select {key} from {stage})),"
        " merged as (insert into {target} as t ({cols}) select {cols} from {stage}"
        " order by {order} on conflict ({key}) {action} returning {key})"
        " select count(*) filter (where p.found is null), count(*) filter (where p.found)"
        " from merged m left join present p on ({pkey}) = ({mkey})"
    ).format(
        **parts,
        pkey=sql.SQL(", ").join(sql.SQL("p.{}").format(sql.Identifier(c)) for c in plan.key),
        mkey=sql.SQL(", ").join(sql.SQL("m.{}").format(sql.Identifier(c)) for c in plan.key),
    )
