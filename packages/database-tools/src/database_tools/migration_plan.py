"""What `database migrate` is about to do: each statement of each pending revision, the lock it
takes, and the live size of the table it touches.

The statements are the revisions' offline SQL (`database.migrations.revision_sql`), parsed by
PostgreSQL's own parser (pglast). The lock is derived from the statement kind, as PostgreSQL
documents it (ALTER TABLE subcommands as in `AlterTableGetLockLevel`); "holds" says whether the
lock lasts as long as a scan or rewrite of the table (it grows with the table), or only
briefly (catalog changes). Sizes and row estimates are read live (`pg_total_relation_size`,
`pg_class.reltuples`, summed over partitions).

`--max-lock-table-size` refuses a statement that blocks writes (SHARE or stronger) for the
length of a scan or rewrite on a table above the threshold, unless its revision declares the
table in `exclusive_lock_ok = {"table": "reason"}`. Brief locks are bounded by the migration
lock timeout instead: they cannot hold a queue of queries for longer than that.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pglast import ast, enums, parse_sql
from pglast.parser import ParseError
from psycopg import Connection
from sqlalchemy.engine import URL

from database.connect import Purpose, connect_raw
from database.errors import DatabasePackageError
from database.migrations import revision_sql, scripts
from database.migrations.declarations import Revision, revision_of
from database.schema.base import VERSION_TABLE_SCHEMA

ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"
EXCLUSIVE = "EXCLUSIVE"
SHARE_ROW_EXCLUSIVE = "SHARE ROW EXCLUSIVE"
SHARE = "SHARE"
SHARE_UPDATE_EXCLUSIVE = "SHARE UPDATE EXCLUSIVE"
ROW_EXCLUSIVE = "ROW EXCLUSIVE"
ROW_SHARE = "ROW SHARE"
ACCESS_SHARE = "ACCESS SHARE"

#: Weakest to strongest; SHARE and above conflict with ROW EXCLUSIVE, i.e. block writes.
LOCK_ORDER = [
    ACCESS_SHARE,
    ROW_SHARE,
    ROW_EXCLUSIVE,
    SHARE_UPDATE_EXCLUSIVE,
    SHARE,
    SHARE_ROW_EXCLUSIVE,
    EXCLUSIVE,
    ACCESS_EXCLUSIVE,
]
_LOCK_STMT_MODES = dict(enumerate(LOCK_ORDER, start=1))  # LOCK TABLE … IN <mode> MODE


def blocks_writes(mode: str) -> bool:
    return mode in LOCK_ORDER and LOCK_ORDER.index(mode) >= LOCK_ORDER.index(SHARE)


class PlanRefusedError(DatabasePackageError):
    """A pending statement would block a large table for the length of a scan or rewrite."""


@dataclass(frozen=True)
class Lock:
    schema: str
    name: str
    mode: str
    scans: bool  # held while the table is scanned or rewritten


@dataclass(frozen=True)
class Step:
    revision: str
    statement: str
    schema: str | None
    table: str | None
    mode: str
    scans: bool
    rows: int | None
    bytes: int | None
    new: bool
    declared_ok: str | None

    @property
    def holds(self) -> str:
        if not self.mode:
            return ""
        return "while it scans/rewrites" if self.scans else "briefly"

    def qualified(self) -> str:
        return f"{self.schema}.{self.table}" if self.table else ""


# -- what each statement locks -------------------------------------------------------------

_AT = enums.AlterTableType
_SHARE_UPDATE_SUBCOMMANDS = {
    _AT.AT_SetStatistics,
    _AT.AT_SetOptions,
    _AT.AT_ResetOptions,
    _AT.AT_ClusterOn,
    _AT.AT_DropCluster,
    _AT.AT_ValidateConstraint,
    _AT.AT_SetRelOptions,
    _AT.AT_ResetRelOptions,
    _AT.AT_AttachPartition,
    _AT.AT_DetachPartitionFinalize,
}
_TRIGGER_SUBCOMMANDS = {
    _AT.AT_EnableTrig,
    _AT.AT_EnableAlwaysTrig,
    _AT.AT_EnableReplicaTrig,
    _AT.AT_DisableTrig,
    _AT.AT_EnableTrigAll,
    _AT.AT_DisableTrigAll,
    _AT.AT_EnableTrigUser,
    _AT.AT_DisableTrigUser,
}
_REWRITING_SUBCOMMANDS = {_AT.AT_AlterColumnType, _AT.AT_SetTableSpace, _AT.AT_SetLogged}
# Column defaults PostgreSQL 11+ stores in the catalog instead of rewriting every row.
_CATALOG_DEFAULTS = {"now", "current_timestamp", "transaction_timestamp", "statement_timestamp"}


def _name(rangevar: Any) -> tuple[str, str]:
    return str(rangevar.schemaname or "public"), str(rangevar.relname)


def _lock(rangevar: Any, mode: str, scans: bool = False) -> Lock:
    schema, name = _name(rangevar)
    return Lock(schema=schema, name=name, mode=mode, scans=scans)


def _strongest(modes: Iterable[str]) -> str:
    return max(modes, key=LOCK_ORDER.index)


def _default_rewrites(column: Any) -> bool:
    for constraint in column.constraints or ():
        if constraint.contype != enums.ConstrType.CONSTR_DEFAULT:
            continue
        expr = constraint.raw_expr
        if isinstance(expr, ast.FuncCall):
            name = (expr.funcname or ())[-1:]
            return not name or name[0].sval not in _CATALOG_DEFAULTS
    return False


def _alter_table(stmt: ast.AlterTableStmt, *, validated: set[tuple[str, str]]) -> list[Lock]:
    schema, name = _name(stmt.relation)
    modes: list[str] = []
    scans = False
    extra: list[Lock] = []
    for cmd in stmt.cmds or ():
        subtype = cmd.subtype
        definition = cmd.def_
        if subtype == _AT.AT_AddConstraint and isinstance(definition, ast.Constraint):
            foreign = definition.contype == enums.ConstrType.CONSTR_FOREIGN
            modes.append(SHARE_ROW_EXCLUSIVE if foreign else ACCESS_EXCLUSIVE)
            # A key over an existing index (`unique using index`) is a catalog change: the
            # index, built concurrently before, already holds the proof.
            over_index = bool(getattr(definition, "indexname", None))
            scans = scans or not (definition.skip_validation or over_index)
            if foreign and definition.pktable is not None:
                extra.append(_lock(definition.pktable, SHARE_ROW_EXCLUSIVE, False))
        elif subtype in _SHARE_UPDATE_SUBCOMMANDS:
            modes.append(SHARE_UPDATE_EXCLUSIVE)
            if subtype == _AT.AT_ValidateConstraint:
                validated.add((schema, name))
            if subtype == _AT.AT_AttachPartition and isinstance(definition, ast.PartitionCmd):
                extra.append(_lock(definition.name, ACCESS_EXCLUSIVE, False))
        elif subtype in _TRIGGER_SUBCOMMANDS:
            modes.append(SHARE_ROW_EXCLUSIVE)
        elif subtype == _AT.AT_DetachPartition:
            concurrent = isinstance(definition, ast.PartitionCmd) and definition.concurrent
            modes.append(SHARE_UPDATE_EXCLUSIVE if concurrent else ACCESS_EXCLUSIVE)
        else:
            modes.append(ACCESS_EXCLUSIVE)
            if subtype in _REWRITING_SUBCOMMANDS:
                scans = True
            elif subtype == _AT.AT_AddColumn and isinstance(definition, ast.ColumnDef):
                scans = scans or _default_rewrites(definition)
            elif subtype == _AT.AT_SetNotNull:
                # Without a validated CHECK (col is not null) PostgreSQL scans the table.
                scans = scans or (schema, name) not in validated
    if not modes:
        return extra
    return [Lock(schema, name, _strongest(modes), scans), *extra]


def _create_table(stmt: ast.CreateStmt) -> list[Lock]:
    locks = [_lock(stmt.relation, ACCESS_EXCLUSIVE, False)]
    elements = list(stmt.tableElts or ())
    constraints = [e for e in elements if isinstance(e, ast.Constraint)]
    for column in (e for e in elements if isinstance(e, ast.ColumnDef)):
        constraints += [c for c in column.constraints or () if isinstance(c, ast.Constraint)]
    for constraint in constraints:
        if constraint.contype == enums.ConstrType.CONSTR_FOREIGN and constraint.pktable:
            locks.append(_lock(constraint.pktable, SHARE_ROW_EXCLUSIVE, False))
    if stmt.partbound is not None:
        for parent in stmt.inhRelations or ():
            locks.append(_lock(parent, ACCESS_EXCLUSIVE, False))
    return locks


def _qualified_name(parts: Sequence[str]) -> tuple[str, str]:
    return (parts[-2], parts[-1]) if len(parts) > 1 else ("public", parts[-1])


def _drop(
    stmt: ast.DropStmt, *, index_tables: dict[tuple[str, str], tuple[str, str]]
) -> list[Lock]:
    kind = stmt.removeType
    locks = []
    for obj in stmt.objects or ():
        parts: list[str] = [str(p.sval) for p in obj] if isinstance(obj, tuple) else []
        if not parts:
            continue
        if kind == enums.ObjectType.OBJECT_INDEX:
            key = _qualified_name(parts)
            schema, table = index_tables.get(key, key)
            mode = SHARE_UPDATE_EXCLUSIVE if stmt.concurrent else ACCESS_EXCLUSIVE
            locks.append(Lock(schema=schema, name=table, mode=mode, scans=False))
        elif kind in (enums.ObjectType.OBJECT_TABLE, enums.ObjectType.OBJECT_VIEW):
            schema, table = _qualified_name(parts)
            locks.append(Lock(schema=schema, name=table, mode=ACCESS_EXCLUSIVE, scans=False))
        elif (
            kind in (enums.ObjectType.OBJECT_TRIGGER, enums.ObjectType.OBJECT_POLICY)
            and len(parts) > 1  # [schema.]table.name
        ):
            schema, table = _qualified_name(parts[:-1])
            locks.append(Lock(schema=schema, name=table, mode=ACCESS_EXCLUSIVE, scans=False))
    return locks


def statement_locks(
    stmt: Any,
    *,
    validated: set[tuple[str, str]],
    index_tables: dict[tuple[str, str], tuple[str, str]],
) -> list[Lock]:
    """The table locks one parsed statement takes (empty: catalog-only or none)."""
    if isinstance(stmt, ast.AlterTableStmt):
        return _alter_table(stmt, validated=validated)
    if isinstance(stmt, ast.CreateStmt):
        return _create_table(stmt)
    if isinstance(stmt, ast.IndexStmt):
        mode = SHARE_UPDATE_EXCLUSIVE if stmt.concurrent else SHARE
        # ON ONLY a partitioned parent builds nothing: the partitions' indexes are separate.
        return [_lock(stmt.relation, mode, bool(getattr(stmt.relation, "inh", True)))]
    if isinstance(stmt, ast.DropStmt):
        return _drop(stmt, index_tables=index_tables)
    if isinstance(stmt, ast.CreateTrigStmt):
        return [_lock(stmt.relation, SHARE_ROW_EXCLUSIVE, False)]
    if isinstance(stmt, ast.CreatePolicyStmt | ast.AlterPolicyStmt):
        return [_lock(stmt.table, ACCESS_EXCLUSIVE, False)]
    if isinstance(stmt, ast.ViewStmt):
        return [_lock(stmt.view, ACCESS_EXCLUSIVE, False)]
    if isinstance(stmt, ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt):
        return [_lock(stmt.relation, ROW_EXCLUSIVE, True)]
    if isinstance(stmt, ast.TruncateStmt):
        return [_lock(r, ACCESS_EXCLUSIVE, False) for r in stmt.relations or ()]
    if isinstance(stmt, ast.LockStmt):
        mode = _LOCK_STMT_MODES.get(int(stmt.mode or 8), ACCESS_EXCLUSIVE)
        return [_lock(r, mode, False) for r in stmt.relations or ()]
    if isinstance(stmt, ast.AlterPublicationStmt):
        return [
            _lock(o.pubtable.relation, SHARE_UPDATE_EXCLUSIVE, False)
            for o in stmt.pubobjects or ()
            if o.pubtable is not None
        ]
    if isinstance(stmt, ast.RefreshMatViewStmt):
        mode = EXCLUSIVE if stmt.concurrent else ACCESS_EXCLUSIVE
        return [_lock(stmt.relation, mode, True)]
    if isinstance(stmt, ast.RenameStmt) and stmt.relation is not None:
        mode = (
            SHARE_UPDATE_EXCLUSIVE
            if stmt.renameType == enums.ObjectType.OBJECT_INDEX
            else ACCESS_EXCLUSIVE
        )
        return [_lock(stmt.relation, mode, False)]
    return []


# -- the plan --------------------------------------------------------------------------------

_SKIPPED = (ast.TransactionStmt, ast.VariableSetStmt)


def _is_version_table(stmt: Any) -> bool:
    relation = getattr(stmt, "relation", None)
    if isinstance(stmt, ast.CreateSchemaStmt) and stmt.schemaname == VERSION_TABLE_SCHEMA:
        return True
    return relation is not None and getattr(relation, "schemaname", None) == VERSION_TABLE_SCHEMA


def _one_line(sql: str, width: int = 120) -> str:
    text = " ".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= width else text[: width - 1] + "…"


def _statements(sql: str) -> list[tuple[str, Any]]:
    encoded = sql.encode()
    found = []
    try:
        parsed = parse_sql(sql)
    except ParseError as exc:
        raise DatabasePackageError(f"cannot parse the migration SQL: {exc}") from None
    for raw in parsed:
        start = int(raw.stmt_location or 0)
        end = start + int(raw.stmt_len) if raw.stmt_len else len(encoded)
        found.append((encoded[start:end].decode(), raw.stmt))
    return found


_SIZES = """
select coalesce(nullif(c.reltuples, -1), s.n_live_tup, 0)::bigint,
       pg_total_relation_size(c.oid), c.relkind::text
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
  left join pg_stat_all_tables s on s.relid = c.oid
 where n.nspname = %(s)s and c.relname = %(t)s
"""
_TREE = """
select coalesce(sum(coalesce(nullif(c.reltuples, -1), s.n_live_tup, 0)), 0)::bigint,
       coalesce(sum(pg_total_relation_size(t.relid)), 0)::bigint
  from pg_partition_tree(%(oid)s::regclass) t join pg_class c on c.oid = t.relid
  left join pg_stat_all_tables s on s.relid = c.oid
 where t.isleaf
"""
_INDEX_TABLES = """
select n.nspname, i.relname, tn.nspname, t.relname
  from pg_index x join pg_class i on i.oid = x.indexrelid
  join pg_namespace n on n.oid = i.relnamespace
  join pg_class t on t.oid = x.indrelid join pg_namespace tn on tn.oid = t.relnamespace
 where n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast')
"""


class _Live:
    """Sizes of the tables a plan touches, looked up once each."""

    def __init__(self, conn: Connection[Any] | None) -> None:
        self.conn = conn
        self.cache: dict[tuple[str, str], tuple[int, int] | None] = {}

    def index_tables(self) -> dict[tuple[str, str], tuple[str, str]]:
        if self.conn is None:
            return {}
        return {(r[0], r[1]): (r[2], r[3]) for r in self.conn.execute(_INDEX_TABLES)}

    def size(self, schema: str, table: str) -> tuple[int, int] | None:
        key = (schema, table)
        if key not in self.cache:
            self.cache[key] = self._lookup(schema, table)
        return self.cache[key]

    def _lookup(self, schema: str, table: str) -> tuple[int, int] | None:
        if self.conn is None:
            return None
        row = self.conn.execute(_SIZES, {"s": schema, "t": table}).fetchone()
        if row is None:
            return None
        if row[2] in ("p", "I"):  # partitioned: the partitions hold the rows
            tree = self.conn.execute(_TREE, {"oid": f'"{schema}"."{table}"'}).fetchone()
            if tree is not None:
                return int(tree[0]), int(tree[1])
        return int(row[0]), int(row[1])


def pending_revisions(
    *, current: str | None, target: str = "heads", script_location: Path | None = None
) -> list[Revision]:
    """Revisions `upgrade <target>` would run from `current`, in order."""
    directory = scripts(script_location)
    chain = list(directory.iterate_revisions(target, current or "base"))
    return [revision_of(s) for s in reversed(chain) if s.revision != current]


def build_plan(
    *,
    revisions: Sequence[Revision],
    url: URL | None,
    script_location: Path | None = None,
) -> list[Step]:
    """One step per (statement, table it locks); statements that lock nothing get one step."""
    conn = connect_raw(url, purpose=Purpose.MIGRATE, autocommit=True) if url is not None else None
    try:
        live = _Live(conn)
        index_tables = live.index_tables()
        created: set[tuple[str, str]] = set()
        steps: list[Step] = []
        for revision in revisions:
            validated: set[tuple[str, str]] = set()
            sql = revision_sql(revision=revision.revision, script_location=script_location)
            for text, stmt in _statements(sql):
                if isinstance(stmt, _SKIPPED) or _is_version_table(stmt):
                    continue
                locks = statement_locks(stmt, validated=validated, index_tables=index_tables)
                if isinstance(stmt, ast.CreateStmt):
                    created.add(_name(stmt.relation))
                if isinstance(stmt, ast.IndexStmt) and stmt.idxname:
                    index_tables[(_name(stmt.relation)[0], stmt.idxname)] = _name(stmt.relation)
                steps += _steps(revision, _one_line(text), locks, live=live, created=created)
        return steps
    finally:
        if conn is not None:
            conn.close()


def _steps(
    revision: Revision, text: str, locks: list[Lock], *, live: _Live, created: set[tuple[str, str]]
) -> list[Step]:
    if not locks:
        return [Step(revision.revision, text, None, None, "", False, None, None, False, None)]
    steps = []
    for lock in locks:
        key = (lock.schema, lock.name)
        is_new = key in created and live.size(*key) is None
        size = None if is_new else live.size(*key)
        steps.append(
            Step(
                revision=revision.revision,
                statement=text,
                schema=lock.schema,
                table=lock.name,
                mode=lock.mode,
                scans=lock.scans and not is_new,
                rows=size[0] if size else None,
                bytes=size[1] if size else None,
                new=is_new,
                declared_ok=revision.exclusive_lock_ok.get(lock.name),
            )
        )
    return steps


def refused(steps: Sequence[Step], *, max_bytes: int) -> list[Step]:
    """Steps that block writes on a table above `max_bytes` while scanning it, undeclared."""
    return [
        s
        for s in steps
        if blocks_writes(s.mode)
        and s.scans
        and (s.bytes or 0) > max_bytes
        and s.declared_ok is None
    ]


_UNITS = {"": 1, "b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}


def parse_size(text: str) -> int:
    """'500MB', '2 GB', '1048576' -> bytes (binary units, as pg_size_pretty prints them)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?b?)\s*", text.lower())
    if match is None or match.group(2) not in _UNITS:
        raise ValueError(f"not a size: {text!r} (try 500MB or 2GB)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def pretty_size(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"
