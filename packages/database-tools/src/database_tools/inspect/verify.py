"""`database verify`: integrity checks that read data, not statistics. Any finding fails.

* amcheck: `bt_index_check` on every valid b-tree index (with `heapallindexed`: every heap row
  is found in the index), and `verify_heapam` on every table where amcheck has it (1.3+, i.e.
  PostgreSQL 14+). The extension is created in `extensions` when missing. Both take only
  ACCESS SHARE locks: safe on a live database, but they read everything.
* rows breaking a constraint added NOT VALID (foreign-key orphans, CHECK violations): such a
  constraint only guards new rows until someone validates it;
* sequences past `sequence_threshold` of their limit (the owning column's type included);
* tables without a primary key, and tables with row-level security off, in the schemas the
  Data API exposes (`pgrst.db_schemas`, else public).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from database_tools.inspect.queries import Conn

_TYPE_MAX = {"smallint": 32767, "integer": 2147483647, "bigint": 9223372036854775807}
_USER_SCHEMA = "n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_'"


@dataclass(frozen=True)
class Finding:
    check: str
    object: str
    detail: str


@dataclass
class Check:
    name: str
    examined: int = 0
    findings: list[Finding] = field(default_factory=list)
    skipped: str | None = None

    @property
    def status(self) -> str:
        if self.skipped is not None:
            return "skipped"
        return "fail" if self.findings else "ok"

    def find(self, obj: str, detail: str) -> None:
        self.findings.append(Finding(self.name, obj, detail))


def exposed_schemas(conn: Conn) -> list[str]:
    row = conn.execute("select current_setting('pgrst.db_schemas', true)").fetchone()
    raw = (row[0] if row else None) or "public"
    names = [s.strip() for s in str(raw).split(",") if s.strip()]
    return names or ["public"]


def _amcheck_schema(conn: Conn) -> tuple[str | None, str | None]:
    """(schema of amcheck, why it is unavailable)."""
    row = conn.execute(
        "select extnamespace::regnamespace::text from pg_extension where extname = 'amcheck'"
    ).fetchone()
    if row is not None:
        return str(row[0]), None
    available = conn.execute(
        "select exists (select from pg_available_extensions where name = 'amcheck')"
    ).fetchone()
    if not (available and available[0]):
        return None, (
            "amcheck is not available on this server (its share/extension folder has no "
            "amcheck.control): install the PostgreSQL contrib modules"
        )
    has_schema = conn.execute("select to_regnamespace('extensions') is not null").fetchone()
    try:
        if has_schema and has_schema[0]:
            conn.execute("create extension if not exists amcheck with schema extensions")
        else:
            conn.execute("create extension if not exists amcheck")
    except psycopg.Error as exc:
        return None, f"cannot create the amcheck extension: {exc.diag.message_primary}"
    return _amcheck_schema(conn)


_BTREE_INDEXES = f"""
select x.indexrelid, n.nspname || '.' || i.relname
  from pg_index x
  join pg_class i on i.oid = x.indexrelid
  join pg_namespace n on n.oid = i.relnamespace
  join pg_am am on am.oid = i.relam
 where am.amname = 'btree' and i.relkind = 'i' and x.indisvalid and x.indisready
   and i.relpersistence <> 't' and {_USER_SCHEMA}
 order by 2
"""
_HEAP_TABLES = f"""
select c.oid, n.nspname || '.' || c.relname
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where c.relkind in ('r', 'm') and c.relpersistence <> 't' and {_USER_SCHEMA}
 order by 2
"""


def amcheck_indexes(conn: Conn, *, heapallindexed: bool) -> Check:
    check = Check("amcheck b-tree indexes")
    schema, why = _amcheck_schema(conn)
    if schema is None:
        check.skipped = why
        return check
    call = sql.SQL("select {}.bt_index_check(index => %s, heapallindexed => %s)").format(
        sql.Identifier(schema)
    )
    for oid, name in conn.execute(_BTREE_INDEXES).fetchall():
        check.examined += 1
        try:
            conn.execute(call, (oid, heapallindexed))
        except psycopg.errors.DataCorrupted as exc:
            check.find(str(name), str(exc.diag.message_primary))
        except psycopg.errors.IndexCorrupted as exc:
            check.find(str(name), str(exc.diag.message_primary))
    return check


def amcheck_heap(conn: Conn) -> Check:
    check = Check("amcheck heap (verify_heapam)")
    schema, why = _amcheck_schema(conn)
    if schema is None:
        check.skipped = why
        return check
    exists = conn.execute(
        "select exists (select from pg_proc where proname = 'verify_heapam'"
        " and pronamespace = to_regnamespace(%s))",
        (schema,),
    ).fetchone()
    if not (exists and exists[0]):
        check.skipped = "this amcheck has no verify_heapam (it needs PostgreSQL 14+)"
        return check
    call = sql.SQL(
        "select blkno, offnum, msg from {}.verify_heapam(relation => %s, check_toast => true)"
    ).format(sql.Identifier(schema))
    for oid, name in conn.execute(_HEAP_TABLES).fetchall():
        check.examined += 1
        for blkno, offnum, msg in conn.execute(call, (oid,)).fetchall():
            check.find(str(name), f"block {blkno}, offset {offnum}: {msg}")
    return check


_NOT_VALID_FKS = f"""
select c.conname, cn.nspname, ct.relname, pn.nspname, pt.relname,
       (select array_agg(a.attname order by k.ord) from unnest(c.conkey) with ordinality k(n, ord)
          join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.n),
       (select array_agg(a.attname order by k.ord) from unnest(c.confkey) with ordinality k(n, ord)
          join pg_attribute a on a.attrelid = c.confrelid and a.attnum = k.n)
  from pg_constraint c
  join pg_class ct on ct.oid = c.conrelid join pg_namespace cn on cn.oid = ct.relnamespace
  join pg_class pt on pt.oid = c.confrelid join pg_namespace pn on pn.oid = pt.relnamespace
  join pg_namespace n on n.oid = c.connamespace
 where c.contype = 'f' and not c.convalidated and {_USER_SCHEMA}
 order by 2, 3, 1
"""


def foreign_key_orphans(conn: Conn) -> Check:
    """Rows whose key (all columns set: MATCH SIMPLE) has no referenced row, for every
    foreign key not validated yet."""
    check = Check("orphans under NOT VALID foreign keys")
    for name, cs, ct, ps, pt, ccols, pcols in conn.execute(_NOT_VALID_FKS).fetchall():
        check.examined += 1
        child = sql.Identifier(cs, ct)
        parent = sql.Identifier(ps, pt)
        set_cols = sql.SQL(" and ").join(
            sql.SQL("c.{} is not null").format(sql.Identifier(col)) for col in ccols
        )
        matches = sql.SQL(" and ").join(
            sql.SQL("p.{} = c.{}").format(sql.Identifier(p), sql.Identifier(c))
            for c, p in zip(ccols, pcols, strict=True)
        )
        keys = sql.SQL(", ").join(sql.SQL("c.{}::text").format(sql.Identifier(c)) for c in ccols)
        query = sql.SQL(
            "select count(*), (array_agg(concat_ws(', ', {keys})))[1:3] from {child} c"
            " where {set_cols} and not exists (select from {parent} p where {matches})"
        ).format(keys=keys, child=child, set_cols=set_cols, parent=parent, matches=matches)
        row = conn.execute(query).fetchone()
        count, samples = (row[0], row[1]) if row else (0, None)
        if count:
            check.find(
                f"{cs}.{ct}.{name}",
                f"{count} row(s) reference missing {ps}.{pt} rows, e.g. "
                f"({', '.join(ccols)}) = {'; '.join(samples or [])}",
            )
    return check


_NOT_VALID_CHECKS = f"""
select c.conname, n2.nspname, t.relname, pg_get_expr(c.conbin, c.conrelid)
  from pg_constraint c
  join pg_class t on t.oid = c.conrelid join pg_namespace n2 on n2.oid = t.relnamespace
  join pg_namespace n on n.oid = c.connamespace
 where c.contype = 'c' and not c.convalidated and {_USER_SCHEMA}
 order by 2, 3, 1
"""


def check_violations(conn: Conn) -> Check:
    """Rows breaking a CHECK constraint not validated yet."""
    check = Check("violations of NOT VALID checks")
    for name, schema, table, expression in conn.execute(_NOT_VALID_CHECKS).fetchall():
        check.examined += 1
        # The expression is PostgreSQL's own rendering of the constraint, from the catalog.
        query = sql.SQL("select count(*) from {} where not coalesce(({}), true)").format(
            sql.Identifier(schema, table), sql.SQL(expression)
        )
        row = conn.execute(query).fetchone()
        if row and row[0]:
            check.find(f"{schema}.{table}.{name}", f"{row[0]} row(s) break: {expression}")
    return check


_SEQUENCES = """
select s.schemaname, s.sequencename, s.last_value, s.min_value, s.max_value, s.increment_by,
       (select format_type(a.atttypid, null) from pg_depend d
          join pg_attribute a on a.attrelid = d.refobjid and a.attnum = d.refobjsubid
         where d.classid = 'pg_class'::regclass and d.refclassid = 'pg_class'::regclass
           and d.objid = (quote_ident(s.schemaname) || '.' || quote_ident(s.sequencename))::regclass
           and d.deptype in ('a', 'i') limit 1) as column_type
  from pg_sequences s
 where s.last_value is not null
   and s.schemaname not in ('pg_catalog', 'information_schema')
 order by 1, 2
"""


def sequences_near_limit(conn: Conn, *, threshold: float) -> Check:
    """Sequences that have used more than `threshold` of their range; an owning column of a
    smaller type (an int column fed by a bigint sequence) sets the limit."""
    check = Check(f"sequences past {threshold:.0%} of their limit")
    for schema, name, last, low, high, step, column_type in conn.execute(_SEQUENCES).fetchall():
        check.examined += 1
        limit = min(int(high), _TYPE_MAX.get(str(column_type), int(high)))
        if step < 0:
            used = (int(high) - int(last)) / max(int(high) - int(low), 1)
        else:
            used = (int(last) - int(low)) / max(limit - int(low), 1)
        if used > threshold:
            check.find(f"{schema}.{name}", f"{used:.1%} used: {last} of {limit}")
    return check


_NO_PRIMARY_KEY = """
select n.nspname || '.' || c.relname
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where c.relkind in ('r', 'p') and not c.relispartition and n.nspname = any(%(schemas)s)
   and not exists (select from pg_constraint k where k.conrelid = c.oid and k.contype = 'p')
   and not exists (select from pg_depend d where d.objid = c.oid and d.deptype = 'e')
 order by 1
"""
_RLS_OFF = """
select n.nspname || '.' || c.relname, c.relkind::text
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where c.relkind in ('r', 'p') and n.nspname = any(%(schemas)s) and not c.relrowsecurity
   and not exists (select from pg_depend d where d.objid = c.oid and d.deptype = 'e')
 order by 1
"""
_TABLE_COUNT = """
select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where c.relkind in ('r', 'p') and n.nspname = any(%(schemas)s)
"""


def _count(conn: Conn, schemas: list[str]) -> int:
    row = conn.execute(_TABLE_COUNT, {"schemas": schemas}).fetchone()
    return int(row[0]) if row else 0


def missing_primary_keys(conn: Conn, *, schemas: list[str]) -> Check:
    check = Check(f"tables without a primary key ({', '.join(schemas)})")
    check.examined = _count(conn, schemas)
    for (table,) in conn.execute(_NO_PRIMARY_KEY, {"schemas": schemas}).fetchall():
        check.find(str(table), "no primary key: rows cannot be addressed or replicated reliably")
    return check


def rls_disabled(conn: Conn, *, schemas: list[str]) -> Check:
    check = Check(f"row-level security off in exposed schemas ({', '.join(schemas)})")
    check.examined = _count(conn, schemas)
    for table, _kind in conn.execute(_RLS_OFF, {"schemas": schemas}).fetchall():
        check.find(
            str(table), "row level security is disabled: the Data API serves it to any grantee"
        )
    return check


def run_verify(
    conn: Conn,
    *,
    heapallindexed: bool = True,
    sequence_threshold: float = 0.8,
    schemas: list[str] | None = None,
) -> list[Check]:
    exposed = schemas or exposed_schemas(conn)
    # Maintenance reads whole tables: no app statement timeout here.
    conn.execute("set statement_timeout = 0")
    return [
        amcheck_indexes(conn, heapallindexed=heapallindexed),
        amcheck_heap(conn),
        foreign_key_orphans(conn),
        check_violations(conn),
        sequences_near_limit(conn, threshold=sequence_threshold),
        missing_primary_keys(conn, schemas=exposed),
        rls_disabled(conn, schemas=exposed),
    ]


def summary(checks: list[Check]) -> list[tuple[Any, ...]]:
    return [(c.name, c.status, c.examined, len(c.findings), c.skipped or "") for c in checks]
