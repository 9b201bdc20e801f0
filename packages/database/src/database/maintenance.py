"""Partition maintenance from the declarations on the models (database.schema.partitions):
partitions made ahead of time, and retention, by `database maintain` (or the worker, or a cron
entry running it).

Where pg_partman is installed (Supabase, CI's Debian PostgreSQL 15) the tables are registered
with it by the partitioning revision, and maintenance is its `run_maintenance()` per table
(then the new partitions are closed to the API roles). Elsewhere this module does the same from
the declarations:

* the partition holding now and `premake` partitions after it exist (and the default one),
  made by `private.create_partitions`;
* a partition whose whole range is older than `retention` is detached — `CONCURRENTLY` where
  the server allows it (PostgreSQL 14+, and only for a table without a default partition;
  ours have one, so a plain DETACH under a short lock_timeout) — then dropped, or moved to the
  `archive` schema with its rows. Never a DELETE of rows;
* a detach left pending by an interrupted `CONCURRENTLY` is finalized.

Every statement runs on an autocommit connection (a concurrent detach refuses a transaction
block) and each step is idempotent: a second run finds nothing to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from database.schema.partitions import ARCHIVE_SCHEMA, Partitioning, Retired, partitioned_tables

Conn = psycopg.Connection[Any]


def _value(conn: Conn, query: str | sql.Composable, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    return None if row is None else row[0]


#: How long a plain DETACH may wait for the parent's lock before the run fails (and is rerun).
DETACH_LOCK_TIMEOUT = "5s"


@dataclass(frozen=True)
class Partition:
    table: str
    name: str  # schema-qualified, quoted where needed
    is_default: bool
    lower: datetime | None
    upper: datetime | None
    estimated_rows: int
    detach_pending: bool


@dataclass(frozen=True)
class Action:
    table: str
    action: str  # create, detach, drop, archive, finalize, partman
    target: str
    detail: str = ""


_PARTITIONS = """
select format('%%I.%%I', n.nspname, c.relname) as name,
       pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT' as is_default,
       (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \\(''([^'']+)''\\)'))[1]
         ::timestamptz as lower,
       (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \\(''([^'']+)''\\)'))[1]
         ::timestamptz as upper,
       greatest(c.reltuples, 0)::bigint as estimated_rows,
       i.inhdetachpending as detach_pending
  from pg_inherits i
  join pg_class c on c.oid = i.inhrelid
  join pg_namespace n on n.oid = c.relnamespace
 where i.inhparent = to_regclass(%(parent)s)
 order by lower nulls first, name
"""


def partitions(conn: Conn, table: str) -> list[Partition]:
    """The partitions of public.`table`, oldest first (the default one first of all)."""
    rows = conn.execute(_PARTITIONS, {"parent": f"public.{table}"}).fetchall()
    return [Partition(table, *row) for row in rows]


def default_rows(conn: Conn, table: str) -> int:
    """Exact: the rows the default partition caught (0 without one)."""
    found = _value(conn, "select to_regclass(%s)", (f"public.{table}_default",))
    if found is None:
        return 0
    query = sql.SQL("select count(*) from {}").format(sql.Identifier("public", f"{table}_default"))
    return int(_value(conn, query))


def partman_schema(conn: Conn) -> str | None:
    found: str | None = _value(
        conn,
        "select n.nspname from pg_extension e join pg_namespace n on n.oid = e.extnamespace"
        " where e.extname = 'pg_partman'",
    )
    return found


def _cutoff(conn: Conn, spec: Partitioning) -> datetime:
    value: datetime = _value(conn, "select now() - cast(%s as interval)", (spec.retention,))
    return value


def expired(conn: Conn, table: str, spec: Partitioning) -> list[Partition]:
    """Partitions whose whole range is older than the retention: what retention retires."""
    cutoff = _cutoff(conn, spec)
    return [
        p
        for p in partitions(conn, table)
        if not p.is_default and p.upper is not None and p.upper <= cutoff
    ]


def _missing_ahead(conn: Conn, table: str, spec: Partitioning) -> list[datetime]:
    """Lower bounds of the partitions that should exist (now's, and `premake` after it) and
    do not; a range covered by another partition counts as existing."""
    unit = spec.interval.unit
    wanted: list[datetime] = [
        row[0]
        for row in conn.execute(
            "select (g at time zone 'UTC') from generate_series("
            " date_trunc(%(unit)s, now() at time zone 'UTC'),"
            " (now() + cast(%(ahead)s as interval)) at time zone 'UTC',"
            " cast(%(step)s as interval)) g",
            {"unit": unit, "ahead": f"{spec.premake} {unit}", "step": spec.interval.value},
        ).fetchall()
    ]
    have = [p for p in partitions(conn, table) if not p.is_default]
    return [
        start
        for start in wanted
        if not any(
            p.lower is not None and p.upper is not None and p.lower <= start < p.upper for p in have
        )
    ]


def plan(conn: Conn, table: str, spec: Partitioning) -> list[Action]:
    """What a run would do to public.`table` without pg_partman, in order."""
    actions: list[Action] = []
    parts = partitions(conn, table)
    for p in parts:
        if p.detach_pending:
            actions.append(Action(table, "finalize", p.name, "a concurrent detach left pending"))
    if not any(p.is_default for p in parts):
        actions.append(Action(table, "create", f"public.{table}_default", "default partition"))
    for start in _missing_ahead(conn, table, spec):
        actions.append(Action(table, "create", f"from {start.isoformat()}", spec.interval.value))
    for p in expired(conn, table, spec):
        if p.detach_pending:
            continue
        actions.append(Action(table, "detach", p.name, f"older than {spec.retention}"))
        retired = "archive" if spec.retired is Retired.ARCHIVE else "drop"
        actions.append(Action(table, retired, p.name, f"~{p.estimated_rows} rows"))
    return actions


def _can_detach_concurrently(conn: Conn, table: str) -> bool:
    version = int(_value(conn, "show server_version_num"))
    has_default = any(p.is_default for p in partitions(conn, table))
    return version >= 140000 and not has_default


def _apply(conn: Conn, table: str, spec: Partitioning, actions: list[Action]) -> None:
    parent = sql.Identifier("public", table)
    if any(a.action == "create" for a in actions):
        unit = spec.interval.unit
        conn.execute(
            "select private.create_partitions(cast(%(parent)s as regclass), %(unit)s, now(),"
            " now() + cast(%(ahead)s as interval))",
            {"parent": f"public.{table}", "unit": unit, "ahead": f"{spec.premake} {unit}"},
        )
    for action in actions:
        # Partition names come quoted from the catalog (format('%I.%I')).
        child = sql.SQL(action.target)
        if action.action == "finalize":
            conn.execute(
                sql.SQL("alter table {} detach partition {} finalize").format(parent, child)
            )
        elif action.action == "detach":
            if _can_detach_concurrently(conn, table):
                conn.execute(
                    sql.SQL("alter table {} detach partition {} concurrently").format(parent, child)
                )
            else:
                conn.execute(
                    sql.SQL("set lock_timeout = {}").format(sql.Literal(DETACH_LOCK_TIMEOUT))
                )
                conn.execute(sql.SQL("alter table {} detach partition {}").format(parent, child))
        elif action.action == "drop":
            conn.execute(sql.SQL("drop table {}").format(child))
        elif action.action == "archive":
            conn.execute(
                sql.SQL("alter table {} set schema {}").format(
                    child, sql.Identifier(ARCHIVE_SCHEMA)
                )
            )


def maintain(conn: Conn, *, dry_run: bool = False) -> list[Action]:
    """Maintain every partitioned table of the model; returns what was (or would be) done.
    `conn` must be in autocommit mode."""
    if not conn.autocommit:
        raise ValueError("partition maintenance needs an autocommit connection")
    partman = partman_schema(conn)
    done: list[Action] = []
    for table, spec in partitioned_tables():
        if partman is not None:
            done.append(Action(table.name, "partman", f"{partman}.run_maintenance", ""))
            if not dry_run:
                conn.execute(
                    sql.SQL("select {}.run_maintenance(p_parent_table => %s)").format(
                        sql.Identifier(partman)
                    ),
                    (f"public.{table.name}",),
                )
                conn.execute(
                    "select private.secure_partitions(cast(%s as regclass))",
                    (f"public.{table.name}",),
                )
            continue
        actions = plan(conn, table.name, spec)
        if not dry_run:
            _apply(conn, table.name, spec, actions)
        done += actions
    return done
