"""Steps revisions call to turn a populated table into a time-partitioned one, and back.

    partitions.convert(PartitionedTable(...))   # in upgrade()
    partitions.revert(PlainTable(...))          # in downgrade()

`convert` keeps the table readable and writable until one short swap:

1. a partitioned copy is built in the `conversion` schema (same columns, defaults and CHECKs,
   keys that hold the partition key, partitions from the oldest row to `premake` ahead, a
   default partition), and a row trigger on the old table mirrors every write into it;
2. rows are copied in batches of `batch_rows`, each batch its own transaction, in id order
   (the old primary key), skipping rows the mirror wrote already;
3. one transaction takes the table's lock (waiting at most the migration's lock_timeout: a
   busy table fails the step instead of queueing every reader behind it) and swaps: the old
   table becomes `archive.<table>_unpartitioned`, the copy and its partitions move to
   `public`, access, triggers and pg_partman's registration (where installed) follow;
4. row count and checksum of the kept old table and the new one are compared, and the result
   recorded in `system_events`. The old table stays until someone has looked: drop it then.

Offline (`make migrate-sql`) the same statements are written, with one INSERT … SELECT for the
batches (a script applied with psql runs in one transaction anyway).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from alembic import op

CONVERSION_SCHEMA = "conversion"
ARCHIVE_SCHEMA = "archive"


@dataclass(frozen=True)
class PartitionedTable:
    """A table as a revision converts it; every statement frozen in the revision."""

    name: str
    column: str
    unit: str  # "day", "week", "month"
    premake: int
    retention: str
    keep_retired: bool  # retired partitions go to the archive schema (else they are dropped)
    primary_key: Sequence[str]
    # (constraint name, columns) of unique constraints; (name, "col, col") of plain indexes
    unique: Sequence[tuple[str, Sequence[str]]]
    indexes: Sequence[tuple[str, str]] = ()
    # "add constraint …" clauses that LIKE does not copy (foreign keys)
    foreign_keys: Sequence[str] = ()
    access: Sequence[str] = ()  # RLS, grants, policies (on public.<name>)
    triggers: Sequence[str] = ()
    batch_rows: int = 20_000

    @property
    def partman4_suffix(self) -> str:
        return {"day": "YYYY_MM_DD", "week": 'IYYY"w"IW', "month": "YYYY_MM"}[self.unit]

    @property
    def partman4_interval(self) -> str:
        return {"day": "daily", "week": "weekly", "month": "monthly"}[self.unit]


def _offline() -> bool:
    return bool(op.get_context().as_sql)


def _partman_suffix_sql(table: PartitionedTable) -> str:
    # The names pg_partman gives partitions, so its registration finds ours by name.
    return (
        "(select case when split_part(e.extversion, '.', 1) = '4'"
        f" then '{table.partman4_suffix.replace(chr(39), chr(39) * 2)}' else 'YYYYMMDD' end"
        " from (select (select extversion from pg_extension where extname = 'pg_partman')"
        " as extversion) e)"
    )


_MIRROR = f"""
create or replace function {CONVERSION_SCHEMA}.mirror() returns trigger
language plpgsql volatile set search_path = '' as $$
begin
  -- Writes to the old table while it is copied land in the copy too (by id: a row's id
  -- never changes, its partition key may).
  if tg_op in ('UPDATE', 'DELETE') then
    execute format('delete from {CONVERSION_SCHEMA}.%I where id = $1', tg_table_name)
      using old.id;
  end if;
  if tg_op in ('INSERT', 'UPDATE') then
    execute format('insert into {CONVERSION_SCHEMA}.%I select ($1).* on conflict do nothing',
                   tg_table_name) using new;
  end if;
  return null;
end
$$"""


def _build_sql(table: PartitionedTable) -> list[str]:
    t, c = table.name, CONVERSION_SCHEMA
    sql = [
        # A conversion that failed part way left these: it starts over (the batches before the
        # swap change nothing in public).
        f"drop trigger if exists {t}_conversion_mirror on public.{t}",
        f"drop table if exists {c}.{t}",
        f"create table {c}.{t} (like public.{t} including defaults including constraints"
        f" including generated including comments) partition by range ({table.column})",
        f"alter table {c}.{t} add constraint pk_{t} primary key ({', '.join(table.primary_key)})",
    ]
    sql += [
        f"alter table {c}.{t} add constraint {name} unique ({', '.join(columns)})"
        for name, columns in table.unique
    ]
    sql += [f"alter table {c}.{t} add constraint {fk}" for fk in table.foreign_keys]
    sql += [f"create index {name} on {c}.{t} ({columns})" for name, columns in table.indexes]
    # From the oldest row (or now) to `premake` partitions ahead; the default takes the rest.
    sql.append(
        f"select private.create_partitions('{c}.{t}', '{table.unit}',"
        f" least((select min({table.column}) from public.{t}), now()),"
        f" now() + interval '{table.premake} {table.unit}', {_partman_suffix_sql(table)})"
    )
    sql.append(
        f"create trigger {t}_conversion_mirror after insert or update or delete on public.{t}"
        f" for each row execute function {c}.mirror()"
    )
    return sql


def _copy_batches(table: PartitionedTable) -> None:
    t, c = table.name, CONVERSION_SCHEMA
    if _offline():
        op.execute(f"insert into {c}.{t} select * from public.{t} on conflict do nothing")
        return
    batch = sa.text(
        f"with batch as (select * from public.{t} where id > :after order by id limit :n),"
        f" copied as (insert into {c}.{t} select * from batch on conflict do nothing)"
        " select id from batch order by id desc limit 1"
    )
    after = "00000000-0000-0000-0000-000000000000"
    bind = op.get_bind()
    while True:
        last = bind.execute(batch, {"after": after, "n": table.batch_rows}).scalar()
        if last is None:
            return
        after = str(last)


def _swap_sql(table: PartitionedTable) -> list[str]:
    t, c, a = table.name, CONVERSION_SCHEMA, ARCHIVE_SCHEMA
    sql = [
        # Writers wait here at most lock_timeout; then the step fails and can be rerun.
        f"lock table public.{t} in access exclusive mode",
        f"drop trigger {t}_conversion_mirror on public.{t}",
        f"alter table public.{t} rename to {t}_unpartitioned",
        f"alter table public.{t}_unpartitioned set schema {a}",
        f"revoke all on {a}.{t}_unpartitioned from anon, authenticated, service_role",
    ]
    sql += [
        f"drop trigger if exists {trigger.split()[2]} on {a}.{t}_unpartitioned"
        for trigger in table.triggers
    ]
    # The kept table must not hold up deletes of what it referenced (or cascade into it).
    sql += [
        f"alter table {a}.{t}_unpartitioned drop constraint {fk.split()[0]}"
        for fk in table.foreign_keys
    ]
    # Partitions first (they are found through the parent), then the parent itself.
    sql.append(f"""
        do $$
        declare child text;
        begin
          for child in
            select p.relname from pg_inherits i join pg_class p on p.oid = i.inhrelid
             where i.inhparent = '{c}.{t}'::regclass order by 1
          loop
            execute format('alter table {c}.%I set schema public', child);
          end loop;
        end
        $$""")
    sql.append(f"alter table {c}.{t} set schema public")
    sql += list(table.access)
    sql += list(table.triggers)
    sql.append(f"select private.secure_partitions('public.{t}')")
    sql.append(_register_sql(table))
    return sql


def _register_sql(table: PartitionedTable) -> str:
    """pg_partman, where installed, takes over maintenance: 4.x and 5.x have different
    create_parent signatures; both make their own default partition (ours goes first, empty:
    every row is inside a range)."""
    t = table.name
    keep = "true" if table.keep_retired else "false"
    schema = f"'{ARCHIVE_SCHEMA}'" if table.keep_retired else "null"
    return f"""
        do $$
        declare
          version text;
          partman text;
        begin
          select e.extversion, n.nspname into version, partman
            from pg_extension e join pg_namespace n on n.oid = e.extnamespace
           where e.extname = 'pg_partman';
          if version is null then
            return;
          end if;
          set local timezone = 'UTC';
          if split_part(version, '.', 1) = '4' then
            execute format('select %I.create_parent(p_parent_table => %L, p_control => %L,'
                           ' p_type => %L, p_interval => %L, p_premake => %s,'
                           ' p_start_partition => %L)', partman, 'public.{t}', '{table.column}',
                           'native', '{table.partman4_interval}', {table.premake},
                           (select least(min({table.column}), now()) from public.{t})::text);
          else
            execute format('select %I.create_parent(p_parent_table => %L, p_control => %L,'
                           ' p_interval => %L, p_type => %L, p_premake => %s)',
                           partman, 'public.{t}', '{table.column}', '1 {table.unit}', 'range',
                           {table.premake});
          end if;
          execute format('update %I.part_config set retention = %L, retention_keep_table = %L,'
                         ' retention_schema = %s, infinite_time_partitions = true'
                         ' where parent_table = %L', partman, '{table.retention}', {keep},
                         coalesce(quote_literal({schema}::text), 'null'), 'public.{t}');
          perform private.secure_partitions('public.{t}');
        end
        $$"""


def _verify_sql(table: PartitionedTable) -> str:
    t, a = table.name, ARCHIVE_SCHEMA
    summary = "select count(*) as n, coalesce(sum(hashtextextended(r::text, 0)), 0) as sum"
    return f"""
        do $$
        declare
          old_rows record;
          new_rows record;
        begin
          {summary} into old_rows from {a}.{t}_unpartitioned r;
          {summary} into new_rows from public.{t} r;
          insert into public.system_events (event_type, severity, message, context)
          values (case when old_rows = new_rows then 'migration.partitioned'
                       else 'migration.partitioned_differs' end,
                  case when old_rows = new_rows then 'info' else 'warning' end,
                  'public.{t} is partitioned; {a}.{t}_unpartitioned is kept until dropped',
                  jsonb_build_object('table', '{t}', 'old_rows', old_rows.n,
                                     'new_rows', new_rows.n,
                                     'same_checksum', old_rows.sum = new_rows.sum));
          if old_rows <> new_rows then
            raise warning 'public.{t}: % rows (checksum %) now, % kept in {a} (checksum %):'
                          ' rows written since the swap, or a difference to look at',
                          new_rows.n, new_rows.sum, old_rows.n, old_rows.sum;
          end if;
        end
        $$"""


def prepare() -> None:
    """Schemas and the mirror function, in the revision's transaction."""
    op.execute(f"create schema if not exists {ARCHIVE_SCHEMA}")
    op.execute(f"revoke all on schema {ARCHIVE_SCHEMA} from public")
    op.execute(f"create schema if not exists {CONVERSION_SCHEMA}")
    op.execute(f"revoke all on schema {CONVERSION_SCHEMA} from public")
    op.execute(_MIRROR)


def _partitioned_already(table: PartitionedTable) -> bool:
    if _offline():
        return False
    kind = op.get_bind().execute(
        sa.text("select relkind::text from pg_class where oid = to_regclass(:t)"),
        {"t": f"public.{table.name}"},
    )
    return kind.scalar() == "p"


def convert(table: PartitionedTable) -> None:
    """Steps 1-4 above for one table; `prepare()` first, `finish()` after the last table.
    A table a failed run converted already (each swap commits) is left as it is."""
    if _partitioned_already(table):
        return
    for statement in _build_sql(table):
        op.execute(statement)
    with op.get_context().autocommit_block():
        _copy_batches(table)
    for statement in _swap_sql(table):
        op.execute(statement)
    with op.get_context().autocommit_block():
        op.execute(_verify_sql(table))


def finish() -> None:
    op.execute(f"drop schema {CONVERSION_SCHEMA} cascade")


@dataclass(frozen=True)
class PlainTable:
    """The unpartitioned table a downgrade restores."""

    name: str
    primary_key: Sequence[str]
    unique: Sequence[tuple[str, Sequence[str]]]
    indexes: Sequence[tuple[str, str]] = ()
    foreign_keys: Sequence[str] = ()
    access: Sequence[str] = ()
    triggers: Sequence[str] = ()


def revert(table: PlainTable) -> None:
    """Back to one plain table with every row, in the revision's transaction (a downgrade is
    rare and deliberate: it holds the lock for the copy)."""
    t, c = table.name, CONVERSION_SCHEMA
    op.execute(f"create schema if not exists {c}")
    op.execute(
        f"create table {c}.{t} (like public.{t} including defaults including constraints"
        " including generated including comments)"
    )
    op.execute(
        f"alter table {c}.{t} add constraint pk_{t} primary key ({', '.join(table.primary_key)})"
    )
    for name, columns in table.unique:
        op.execute(f"alter table {c}.{t} add constraint {name} unique ({', '.join(columns)})")
    for fk in table.foreign_keys:
        op.execute(f"alter table {c}.{t} add constraint {fk}")
    for name, columns in table.indexes:
        op.execute(f"create index {name} on {c}.{t} ({columns})")
    op.execute(f"insert into {c}.{t} select * from public.{t}")
    op.execute(f"""
        do $$
        declare partman text;
        begin
          select n.nspname into partman from pg_extension e
            join pg_namespace n on n.oid = e.extnamespace where e.extname = 'pg_partman';
          if partman is not null then
            execute format('delete from %I.part_config where parent_table = %L',
                           partman, 'public.{t}');
            execute format('drop table if exists %I.%I', partman, 'template_public_{t}');
          end if;
        end
        $$""")
    op.execute(f"drop table public.{t}")
    op.execute(f"drop table if exists {ARCHIVE_SCHEMA}.{t}_unpartitioned")
    op.execute(f"alter table {c}.{t} set schema public")
    for statement in (*table.access, *table.triggers):
        op.execute(statement)
    op.execute(f"drop schema {c}")
