"""One function per `database inspect` verb: SQL over the statistics PostgreSQL keeps.

Each takes an open psycopg connection (autocommit, so every call reads a fresh statistics
snapshot) and returns `Result`s: a title, column names and rows of plain values (sizes in
bytes, durations in seconds or milliseconds as the column says). The command layer formats
them; `report` turns them into rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from database.errors import DatabasePackageError

Conn = psycopg.Connection[Any]

# Schemas that hold PostgreSQL's own objects, never the project's.
_SYSTEM = "('pg_catalog', 'information_schema')"
_USER_SCHEMA = (
    f"n.nspname not in {_SYSTEM} and n.nspname !~ '^pg_toast' and n.nspname !~ '^pg_temp'"
)


def _size(function: str, oid: str) -> str:
    """`function(oid)` unless someone holds or awaits an ACCESS EXCLUSIVE lock on it: sizing
    takes an ACCESS SHARE lock, and an inspect verb must never queue behind a migration."""
    return (
        f"(case when not exists (select from pg_locks l where l.relation = {oid}"
        f" and l.mode = 'AccessExclusiveLock' and l.pid <> pg_backend_pid())"
        f" then {function}({oid}) end)"
    )


class InspectUnavailableError(DatabasePackageError):
    """This server cannot answer the question asked (an extension missing or not loaded)."""


@dataclass(frozen=True)
class Result:
    title: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    note: str | None = None

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def _result(conn: Conn, title: str, query: sql.Composed | str, **params: Any) -> Result:
    cursor = conn.execute(sql.SQL(query) if isinstance(query, str) else query, params)
    columns = tuple(d.name for d in cursor.description or ())
    return Result(title, columns, [tuple(r) for r in cursor.fetchall()])


# -- pg_stat_statements ----------------------------------------------------------------------


def statements_schema(conn: Conn) -> str:
    """The schema pg_stat_statements lives in, or a clear error saying why it cannot be read."""
    row = conn.execute(
        "select extnamespace::regnamespace::text from pg_extension"
        " where extname = 'pg_stat_statements'"
    ).fetchone()
    if row is None:
        available = conn.execute(
            "select exists (select from pg_available_extensions where name = 'pg_stat_statements')"
        ).fetchone()
        if available and available[0]:
            raise InspectUnavailableError(
                "pg_stat_statements is not installed in this database: run `create extension "
                "pg_stat_statements with schema extensions` (the bootstrap does it for every "
                "database we create)"
            )
        raise InspectUnavailableError(
            "pg_stat_statements is not available on this server (its share/extension folder "
            "has no pg_stat_statements.control): install the PostgreSQL contrib modules"
        )
    schema = str(row[0])
    try:
        conn.execute(
            sql.SQL("select 1 from {}.pg_stat_statements limit 0").format(sql.Identifier(schema))
        )
    except psycopg.errors.ObjectNotInPrerequisiteState:
        raise InspectUnavailableError(
            "pg_stat_statements is installed but the server does not load it: add "
            "shared_preload_libraries = 'pg_stat_statements' to postgresql.conf and restart "
            "(`database local up` does this for the embedded server)"
        ) from None
    return schema


_STATEMENTS = """
with s as (
  select queryid, query, calls, total_exec_time, mean_exec_time, max_exec_time, rows,
         sum(total_exec_time) over () as all_time
    from {schema}.pg_stat_statements
   where dbid = (select oid from pg_database where datname = current_database())
)
select queryid, left(regexp_replace(query, '\\s+', ' ', 'g'), %(width)s) as query, calls,
       round(total_exec_time::numeric, 1) as total_ms, round(mean_exec_time::numeric, 2) as mean_ms,
       round(max_exec_time::numeric, 1) as max_ms, rows,
       round((100 * total_exec_time / nullif(all_time, 0))::numeric, 1) as share_pct
  from s
 where mean_exec_time >= %(min_mean_ms)s and calls >= %(min_calls)s
 order by {order} desc
 limit %(limit)s
"""


def _statements(
    conn: Conn,
    *,
    title: str,
    order: str,
    limit: int,
    width: int,
    min_mean_ms: float,
    min_calls: int,
) -> Result:
    query = sql.SQL(_STATEMENTS).format(
        schema=sql.Identifier(statements_schema(conn)), order=sql.Identifier(order)
    )
    return _result(
        conn, title, query, limit=limit, width=width, min_mean_ms=min_mean_ms, min_calls=min_calls
    )


def outliers(conn: Conn, *, limit: int = 10, width: int = 80) -> Result:
    """Statements by total execution time, with their share of all time spent."""
    return _statements(
        conn, title="outliers (by total time)", order="total_exec_time", limit=limit,
        width=width, min_mean_ms=0, min_calls=0,
    )  # fmt: skip


def calls(conn: Conn, *, limit: int = 10, width: int = 80) -> Result:
    """Statements by number of calls."""
    return _statements(
        conn, title="calls (most frequent)", order="calls", limit=limit, width=width,
        min_mean_ms=0, min_calls=0,
    )  # fmt: skip


def slow(
    conn: Conn, *, min_mean_ms: float = 100.0, min_calls: int = 1, limit: int = 20, width: int = 80
) -> Result:
    """Statements whose mean execution time is at least `min_mean_ms`."""
    return _statements(
        conn, title=f"slow (mean >= {min_mean_ms:g} ms)", order="mean_exec_time", limit=limit,
        width=width, min_mean_ms=min_mean_ms, min_calls=min_calls,
    )  # fmt: skip


# -- indexes and tables ----------------------------------------------------------------------

_INDEXES = f"""
with idx as (
  select n.nspname as schema, t.relname as table_name, i.relname as index_name,
         x.indexrelid, x.indrelid, x.indisunique, am.amname,
         x.indkey::text as keys, x.indclass::text as opclasses,
         coalesce(pg_get_expr(x.indexprs, x.indrelid), '') as exprs,
         coalesce(pg_get_expr(x.indpred, x.indrelid), '') as pred,
         {_size("pg_relation_size", "x.indexrelid")} as size, coalesce(s.idx_scan, 0) as scans,
         coalesce(ts.n_live_tup, 0) as table_rows,
         exists (select from pg_constraint c
                  where c.conindid = x.indexrelid and c.contype in ('p', 'u', 'x')) as enforces
    from pg_index x
    join pg_class i on i.oid = x.indexrelid
    join pg_class t on t.oid = x.indrelid
    join pg_namespace n on n.oid = t.relnamespace
    join pg_am am on am.oid = i.relam
    left join pg_stat_all_indexes s on s.indexrelid = x.indexrelid
    left join pg_stat_all_tables ts on ts.relid = x.indrelid
   where {_USER_SCHEMA} and i.relkind = 'i'
)
select schema, table_name as table, index_name as index, size, scans, table_rows,
       scans = 0 and not enforces as unused,
       (select string_agg(o.index_name, ', ' order by o.index_name) from idx o
         where o.indrelid = idx.indrelid and o.indexrelid <> idx.indexrelid
           and o.amname = idx.amname and o.keys = idx.keys and o.opclasses = idx.opclasses
           and o.exprs = idx.exprs and o.pred = idx.pred) as duplicate_of,
       (select string_agg(o.index_name, ', ' order by o.index_name) from idx o
         where o.indrelid = idx.indrelid and o.indexrelid <> idx.indexrelid
           and idx.amname = 'btree' and o.amname = 'btree' and not idx.indisunique
           and idx.exprs = '' and o.exprs = '' and o.pred = idx.pred
           and o.keys like idx.keys || ' %%'
           and o.opclasses like idx.opclasses || ' %%') as prefix_of
  from idx
 order by schema, table_name, index_name
"""


def index_stats(conn: Conn) -> Result:
    """Every index: size, scans, unused (never scanned, enforcing no constraint), duplicate
    (same definition on the same table) and prefix_of (its keys lead another b-tree)."""
    return _result(conn, "index stats", _INDEXES)


_TABLES = f"""
select n.nspname as schema, c.relname as table, coalesce(s.n_live_tup, 0) as rows,
       {_size("pg_total_relation_size", "c.oid")} as total_size,
       {_size("pg_relation_size", "c.oid")} as table_size,
       {_size("pg_indexes_size", "c.oid")} as index_size, coalesce(s.seq_scan, 0) as seq_scans,
       coalesce(s.seq_tup_read, 0) as seq_rows_read, coalesce(s.idx_scan, 0) as index_scans,
       coalesce(s.n_dead_tup, 0) as dead_rows,
       greatest(s.last_vacuum, s.last_autovacuum) as last_vacuum,
       greatest(s.last_analyze, s.last_autoanalyze) as last_analyze
  from pg_class c
  join pg_namespace n on n.oid = c.relnamespace
  left join pg_stat_all_tables s on s.relid = c.oid
 where {_USER_SCHEMA} and c.relkind in ('r', 'm')
 order by total_size desc nulls first, schema, c.relname
"""


def table_stats(conn: Conn) -> Result:
    """Every table: live rows, sizes, sequential vs index scans, dead rows, last vacuum and
    analyze (manual or automatic, whichever is later)."""
    return _result(conn, "table stats", _TABLES)


_BLOAT = f"""
with tables as (
  select n.nspname as schema, c.relname as name, 'table' as kind, c.relpages, c.reltuples,
         coalesce((select option_value::int from pg_options_to_table(c.reloptions)
                    where option_name = 'fillfactor'), 100) as fillfactor,
         (select sum((1 - coalesce(st.null_frac, 0)) * coalesce(st.avg_width, 0))
            from pg_stats st where st.schemaname = n.nspname and st.tablename = c.relname)
           as data_width,
         (select count(*) from pg_stats st
           where st.schemaname = n.nspname and st.tablename = c.relname) as analyzed_columns,
         (select count(*) from pg_attribute a
           where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped) as columns,
         24 + 4 as overhead
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
   where {_USER_SCHEMA} and c.relkind in ('r', 'm') and c.reltuples > 0
), indexes as (
  select n.nspname as schema, i.relname as name, 'index' as kind, i.relpages, i.reltuples,
         coalesce((select option_value::int from pg_options_to_table(i.reloptions)
                    where option_name = 'fillfactor'), 90) as fillfactor,
         (select sum(coalesce(st.avg_width, 0)) from pg_attribute a
            join pg_stats st on st.schemaname = n.nspname and st.tablename = t.relname
                            and st.attname = a.attname
           where a.attrelid = t.oid and a.attnum = any(x.indkey)) as data_width,
         (select count(*) from pg_attribute a
            join pg_stats st on st.schemaname = n.nspname and st.tablename = t.relname
                            and st.attname = a.attname
           where a.attrelid = t.oid and a.attnum = any(x.indkey)) as analyzed_columns,
         x.indnatts::bigint as columns,
         8 + 4 as overhead
    from pg_index x
    join pg_class i on i.oid = x.indexrelid
    join pg_class t on t.oid = x.indrelid
    join pg_namespace n on n.oid = t.relnamespace
    join pg_am am on am.oid = i.relam
   where {_USER_SCHEMA} and am.amname = 'btree' and i.reltuples > 0 and x.indexprs is null
), sized as (
  select schema, name, kind, relpages::bigint * current_setting('block_size')::int as size,
         greatest(ceil(reltuples * (overhead + ceil(data_width / 8.0) * 8)
                       / ((current_setting('block_size')::int - 24) * fillfactor / 100.0)), 1)
           as expected_pages,
         relpages
    from (select * from tables union all select * from indexes) o
   where analyzed_columns = columns and data_width is not null
)
select schema, name, kind, size,
       round((relpages / expected_pages)::numeric, 1) as bloat,
       greatest(relpages - expected_pages, 0)::bigint * current_setting('block_size')::int
         as wasted
  from sized
 order by wasted desc, schema, name
"""


def bloat(conn: Conn) -> Result:
    """Estimated bloat of tables and b-tree indexes: actual pages over the pages their rows
    would need (from pg_stats widths), and the bytes that represents. Objects never analyzed
    are left out; run ANALYZE first for a fresh estimate."""
    result = _result(conn, "bloat (estimate)", _BLOAT)
    return Result(
        result.title,
        result.columns,
        result.rows,
        note="an estimate from pg_stats column widths; tables never analyzed are not listed",
    )


_CACHE_HIT = """
select 'index hit rate' as name,
       round(sum(idx_blks_hit)::numeric / nullif(sum(idx_blks_hit + idx_blks_read), 0), 4) as ratio,
       coalesce(sum(idx_blks_hit), 0)::bigint as hits,
       coalesce(sum(idx_blks_read), 0)::bigint as reads
  from pg_statio_user_indexes
union all
select 'table hit rate',
       round(sum(heap_blks_hit)::numeric / nullif(sum(heap_blks_hit + heap_blks_read), 0), 4),
       coalesce(sum(heap_blks_hit), 0)::bigint, coalesce(sum(heap_blks_read), 0)::bigint
  from pg_statio_user_tables
"""


def cache_hit(conn: Conn) -> Result:
    """Share of block reads served from shared buffers, for indexes and for tables."""
    return _result(conn, "cache hit", _CACHE_HIT)


# -- sessions and locks ----------------------------------------------------------------------

_LOCKS = """
select l.pid, coalesce(c.oid::regclass::text, l.locktype) as object, l.mode, l.granted,
       coalesce(a.application_name, '') as application_name, a.state,
       round(extract(epoch from now() - coalesce(l.waitstart, a.xact_start, a.query_start))
             ::numeric, 3) as age_s,
       left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), %(width)s) as query
  from pg_locks l
  join pg_stat_activity a on a.pid = l.pid
  left join pg_class c on c.oid = l.relation and l.locktype = 'relation'
  left join pg_namespace n on n.oid = c.relnamespace
 where l.pid <> pg_backend_pid() and a.datname = current_database()
   and (not l.granted
        or (l.locktype = 'relation' and c.relkind in ('r', 'p', 'm', 'v')
            and n.nspname not in ('pg_catalog', 'information_schema')))
 order by l.granted, age_s desc nulls last, l.pid
"""


def locks(conn: Conn, *, width: int = 60) -> Result:
    """Locks other sessions hold on tables and views, and every lock still waited for; age
    is how long the holding transaction has been open (or how long the wait has lasted)."""
    return _result(conn, "locks", _LOCKS, width=width)


_BLOCKING = """
select w.pid as blocked_pid, coalesce(w.application_name, '') as blocked_application,
       round(extract(epoch from now() - coalesce(
         (select min(l.waitstart) from pg_locks l where l.pid = w.pid and not l.granted),
         w.query_start))::numeric, 1) as waiting_s,
       left(regexp_replace(coalesce(w.query, ''), '\\s+', ' ', 'g'), %(width)s) as blocked_query,
       b.pid as blocking_pid, coalesce(b.application_name, '') as blocking_application,
       b.state as blocking_state,
       round(extract(epoch from now() - b.xact_start)::numeric, 1) as blocking_xact_s,
       left(regexp_replace(coalesce(b.query, ''), '\\s+', ' ', 'g'), %(width)s) as blocking_query
  from pg_stat_activity w
  cross join lateral unnest(pg_blocking_pids(w.pid)) as blocker(pid)
  join pg_stat_activity b on b.pid = blocker.pid
 where w.datname = current_database()
 order by waiting_s desc nulls last, w.pid
"""


def blocking(conn: Conn, *, width: int = 60) -> Result:
    """Who waits on whom: each blocked session with the session(s) holding it up."""
    return _result(conn, "blocking", _BLOCKING, width=width)


_LONG_RUNNING = """
select pid, coalesce(application_name, '') as application_name, state,
       round(extract(epoch from now() - case when state = 'active' then query_start
                                             else xact_start end)::numeric, 1) as duration_s,
       left(regexp_replace(coalesce(query, ''), '\\s+', ' ', 'g'), %(width)s) as query
  from pg_stat_activity
 where datname = current_database() and pid <> pg_backend_pid()
   and backend_type = 'client backend'
   and (state = 'active' or state like 'idle in transaction%%')
   and now() - case when state = 'active' then query_start else xact_start end
       >= make_interval(secs => %(min_seconds)s)
 order by duration_s desc
"""


def long_running(conn: Conn, *, min_seconds: float = 300.0, width: int = 80) -> Result:
    """Queries running (and transactions left idle) for at least `min_seconds`."""
    return _result(
        conn,
        f"long-running (>= {min_seconds:g} s)",
        _LONG_RUNNING,
        min_seconds=min_seconds,
        width=width,
    )


# -- maintenance -----------------------------------------------------------------------------

_VACUUM = f"""
with t as (
  select n.nspname as schema, c.relname as name, c.reltuples, c.reloptions, s.*
    from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
    join pg_stat_all_tables s on s.relid = c.oid
   where {_USER_SCHEMA} and c.relkind in ('r', 'm')
), o as (
  select t.*,
         coalesce((select option_value from pg_options_to_table(t.reloptions)
                    where option_name = 'autovacuum_enabled'),
                  current_setting('autovacuum'))::bool as autovacuum_enabled,
         coalesce((select option_value::float8 from pg_options_to_table(t.reloptions)
                    where option_name = 'autovacuum_vacuum_threshold'),
                  current_setting('autovacuum_vacuum_threshold')::float8)
         + coalesce((select option_value::float8 from pg_options_to_table(t.reloptions)
                      where option_name = 'autovacuum_vacuum_scale_factor'),
                    current_setting('autovacuum_vacuum_scale_factor')::float8)
           * greatest(t.reltuples, 0) as threshold
    from t
)
select schema, name as table, n_live_tup as rows, n_dead_tup as dead_rows,
       round(threshold) as vacuum_threshold, n_dead_tup > threshold as expect_autovacuum,
       autovacuum_enabled, last_vacuum, last_autovacuum, last_analyze, last_autoanalyze,
       vacuum_count + autovacuum_count as vacuums
  from o
 order by n_dead_tup desc, schema, name
"""


def vacuum_stats(conn: Conn) -> Result:
    """Dead rows against the autovacuum threshold (per-table settings honoured), whether
    autovacuum is due, and when each table was last vacuumed and analyzed."""
    return _result(conn, "vacuum stats", _VACUUM)


_DB_STATS = f"""
select d.datname as database, pg_database_size(d.datname) as database_size,
       (select coalesce(sum({_size("pg_indexes_size", "c.oid")}), 0)::bigint from pg_class c
          join pg_namespace n on n.oid = c.relnamespace
         where {_USER_SCHEMA} and c.relkind in ('r', 'm')) as index_size,
       (select coalesce(sum({_size("pg_relation_size", "c.oid")}), 0)::bigint from pg_class c
          join pg_namespace n on n.oid = c.relnamespace
         where {_USER_SCHEMA} and c.relkind in ('r', 'm')) as table_size,
       round(d.blks_hit::numeric / nullif(d.blks_hit + d.blks_read, 0), 4) as cache_hit_ratio,
       d.numbackends as connections, d.xact_commit as commits, d.xact_rollback as rollbacks,
       d.deadlocks, d.temp_files, d.temp_bytes, d.conflicts, d.stats_reset,
       current_setting('server_version') as server_version
  from pg_stat_database d
 where d.datname = current_database()
"""


def db_stats(conn: Conn) -> Result:
    """The database as a whole: sizes, cache hit ratio, connections, commits, deadlocks,
    temporary files, and since when the statistics count (stats_reset)."""
    return _result(conn, "database stats", _DB_STATS)


_SLOTS = """
select slot_name, slot_type, coalesce(plugin, '') as plugin, coalesce(database, '') as database,
       active, active_pid,
       case when pg_is_in_recovery() then null
            else pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint end as retained_wal,
       wal_status
  from pg_replication_slots
 order by slot_name
"""
_STANDBYS = """
select coalesce(application_name, '') as application_name, client_addr::text, state,
       sync_state, extract(epoch from write_lag) as write_lag_s,
       extract(epoch from flush_lag) as flush_lag_s, extract(epoch from replay_lag) as replay_lag_s
  from pg_stat_replication
 order by application_name
"""


def replication(conn: Conn) -> list[Result]:
    """Replication slots (how much WAL each keeps) and connected standbys with their lag."""
    return [
        _result(conn, "replication slots", _SLOTS),
        _result(conn, "standbys", _STANDBYS),
    ]


_FOREIGN_KEYS = f"""
select c.conrelid::regclass::text as table, c.conname as constraint,
       (select string_agg(a.attname, ', ' order by k.ord)
          from unnest(c.conkey) with ordinality k(attnum, ord)
          join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.attnum) as columns,
       c.confrelid::regclass::text as references,
       (select string_agg(a.attname, ', ' order by k.ord)
          from unnest(c.confkey) with ordinality k(attnum, ord)
          join pg_attribute a on a.attrelid = c.confrelid and a.attnum = k.attnum)
         as referenced_columns,
       case c.confdeltype when 'a' then 'no action' when 'r' then 'restrict'
            when 'c' then 'cascade' when 'n' then 'set null' when 'd' then 'set default' end
         as on_delete,
       c.convalidated as valid,
       exists (select from pg_index x where x.indrelid = c.conrelid
                and (x.indkey::int2[])[0:cardinality(c.conkey) - 1] = c.conkey) as indexed
  from pg_constraint c join pg_namespace n on n.oid = c.connamespace
 where c.contype = 'f' and {_USER_SCHEMA} and c.conparentid = 0
 order by 1, 2
"""
_DEGREES = f"""
with fk as (
  select conrelid, confrelid from pg_constraint c join pg_namespace n on n.oid = c.connamespace
   where c.contype = 'f' and {_USER_SCHEMA} and c.conparentid = 0
)
select t.oid::regclass::text as table,
       (select count(*) from fk where fk.conrelid = t.oid) as references,
       (select count(*) from fk where fk.confrelid = t.oid) as referenced_by,
       (select string_agg(distinct fk.conrelid::regclass::text, ', ') from fk
         where fk.confrelid = t.oid) as referencing_tables
  from pg_class t join pg_namespace n on n.oid = t.relnamespace
 where {_USER_SCHEMA} and t.relkind in ('r', 'p') and not t.relispartition
   and exists (select from fk where fk.conrelid = t.oid or fk.confrelid = t.oid)
 order by 1
"""


def relationships(conn: Conn) -> list[Result]:
    """The foreign-key graph: every foreign key (columns, target, on delete, validated,
    covered by an index), then per table how many it references and is referenced by."""
    return [
        _result(conn, "foreign keys", _FOREIGN_KEYS),
        _result(conn, "tables in the graph", _DEGREES),
    ]


def reset_stats(conn: Conn) -> Result:
    """Zero pg_stat_statements (this database) and the statistics counters of this database,
    for before/after comparisons."""
    done = []
    try:
        schema = statements_schema(conn)
        conn.execute(
            sql.SQL(
                "select {}.pg_stat_statements_reset(0, "
                "(select oid from pg_database where datname = current_database()), 0)"
            ).format(sql.Identifier(schema))
        )
        done.append(("pg_stat_statements (this database)", "reset"))
    except InspectUnavailableError as exc:
        done.append(("pg_stat_statements", f"skipped: {exc}"))
    except psycopg.errors.InsufficientPrivilege as exc:
        done.append(("pg_stat_statements", f"not allowed: {exc.diag.message_primary}"))
    try:
        conn.execute("select pg_stat_reset()")
        done.append(("table, index and database counters", "reset"))
    except psycopg.errors.InsufficientPrivilege as exc:
        done.append(
            ("table, index and database counters", f"not allowed: {exc.diag.message_primary}")
        )
    return Result("reset-stats", ("statistics", "result"), done)


# -- time partitions (declared on the models) --------------------------------------------------


def partitions(conn: Conn) -> list[Result]:
    """Per partitioned table of the model: each partition with its range and estimated rows,
    the rows its default partition caught (exact), and what retention would retire now."""
    from database import maintenance
    from database.schema.partitions import partitioned_tables

    listed: list[tuple[Any, ...]] = []
    summary: list[tuple[Any, ...]] = []
    for table, spec in partitioned_tables():
        expired = {p.name for p in maintenance.expired(conn, table.name, spec)}
        found = maintenance.partitions(conn, table.name)
        for p in found:
            bounds = (
                ("default", None, None)
                if p.is_default
                else ("range", p.lower.isoformat() if p.lower else None,
                      p.upper.isoformat() if p.upper else None)
            )  # fmt: skip
            listed.append(
                (table.name, p.name, *bounds, p.estimated_rows, p.name in expired, p.detach_pending)
            )
        summary.append(
            (
                table.name,
                spec.column,
                spec.interval.value,
                sum(not p.is_default for p in found),
                maintenance.default_rows(conn, table.name),
                spec.retention,
                spec.retired.value,
                ", ".join(sorted(expired)),
            )
        )
    return [
        Result(
            "partitions",
            ("table", "partition", "kind", "from", "to", "estimated_rows", "expired",
             "detach_pending"),
            listed,
        ),
        Result(
            "partitioned tables",
            ("table", "column", "interval", "partitions", "default_rows", "retention", "retired",
             "retention_would_retire"),
            summary,
        ),
    ]  # fmt: skip
