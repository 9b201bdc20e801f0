"""time partitions: ohlcv (by bucket_start, a month each), market_data (observed_at, a week)
and dex_trades (block_timestamp, a week) become range-partitioned, converted with their rows
(database.migrations.partitions: a partitioned copy, batches, a short swap; the old tables are
kept in the archive schema until dropped by hand). Primary keys become (id, <partition key>),
dex_trades' natural key gains block_timestamp. Where pg_partman is installed it is registered
to maintain them; elsewhere `database maintain` does, with private.create_partitions

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 09:00:00
"""

from collections.abc import Sequence

from alembic import op

from database.migrations import partitions
from database.migrations.partitions import PartitionedTable, PlainTable

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

squawk_ignore = {
    "prefer-robust-stmts": (
        "the conversion commits in steps (batches, then one swap per table); a run that failed"
        " part way is rerun as is: a table swapped already is skipped, an unfinished copy in"
        " the conversion schema is dropped and rebuilt, nothing in public changed before a swap"
    ),
    "renaming-table": (
        "the old table is renamed and moved to the archive schema in the same transaction that"
        " moves the partitioned copy in under the old name: clients see the same name throughout"
    ),
    "ban-set-schema": (
        "the partitioned copy moves from the conversion schema to public under the old table's"
        " name, in the swap transaction; the old table moves to archive, which no client reads"
    ),
    "ban-drop-constraint": (
        "the foreign key dropped is the one of the old table kept in the archive schema, so"
        " that deleting a pool no longer cascades into the copy kept for verification"
    ),
    "ban-drop-table": (
        "only a leftover unfinished copy in the conversion schema is dropped (no client reads"
        " that schema), before it is built again"
    ),
    "ban-drop-schema": (
        "the conversion schema only held the copies under construction and the mirror trigger"
        " function; it is empty of tables when dropped"
    ),
}
exclusive_lock_ok = {
    "ohlcv": "the swap is renames and schema moves under lock_timeout: milliseconds",
    "market_data": "the swap is renames and schema moves under lock_timeout: milliseconds",
    "dex_trades": "the swap is renames and schema moves under lock_timeout: milliseconds",
}

_FK_POOL = "fk_dex_trades_pool_id_pools foreign key (pool_id) references public.pools (id) on delete cascade"

TABLES = (
    PartitionedTable(
        name="ohlcv",
        column="bucket_start",
        unit="month",
        premake=3,
        retention="24 months",
        keep_retired=True,
        primary_key=("id", "bucket_start"),
        unique=(
            (
                "uq_ohlcv_source_symbol_timeframe_bucket_start",
                ("source", "symbol", "timeframe", "bucket_start"),
            ),
        ),
        access=(
            "alter table public.ohlcv enable row level security",
            "revoke all on public.ohlcv from anon, authenticated, service_role",
            "grant select on public.ohlcv to anon",
            "grant select on public.ohlcv to authenticated",
            "grant select, insert, update, delete on public.ohlcv to service_role",
            "create policy ohlcv_select_public on public.ohlcv as permissive for select to anon, authenticated using (true)",
        ),
    ),
    PartitionedTable(
        name="market_data",
        column="observed_at",
        unit="week",
        premake=2,
        retention="12 weeks",
        keep_retired=False,
        primary_key=("id", "observed_at"),
        unique=(
            ("uq_market_data_exchange_symbol_observed_at", ("exchange", "symbol", "observed_at")),
        ),
        indexes=(
            ("ix_market_data_symbol_observed_at", "symbol, observed_at"),
            ("ix_market_data_xact_id_id", "xact_id, id"),
        ),
        access=(
            "alter table public.market_data enable row level security",
            "revoke all on public.market_data from anon, authenticated, service_role",
            "grant select on public.market_data to anon",
            "grant select on public.market_data to authenticated",
            "grant select, insert, update, delete on public.market_data to service_role",
            "create policy market_data_select_public on public.market_data as permissive for select to anon, authenticated using (true)",
        ),
        triggers=(
            "create trigger market_data_notify after insert on public.market_data"
            " for each statement execute function private.notify_stream()",
        ),
    ),
    PartitionedTable(
        name="dex_trades",
        column="block_timestamp",
        unit="week",
        premake=2,
        retention="52 weeks",
        keep_retired=True,
        primary_key=("id", "block_timestamp"),
        unique=(
            (
                "uq_dex_trades_network_tx_hash_log_index_block_timestamp",
                ("network", "tx_hash", "log_index", "block_timestamp"),
            ),
        ),
        indexes=(("ix_dex_trades_pool_id_block_timestamp_id", "pool_id, block_timestamp, id"),),
        foreign_keys=(_FK_POOL,),
        access=(
            "alter table public.dex_trades enable row level security",
            "revoke all on public.dex_trades from anon, authenticated, service_role",
            "grant select on public.dex_trades to anon",
            "grant select on public.dex_trades to authenticated",
            "grant select, insert, update, delete on public.dex_trades to service_role",
            "create policy dex_trades_select_public on public.dex_trades as permissive for select to anon, authenticated using (true)",
        ),
    ),
)

PLAIN = (
    PlainTable(
        name="ohlcv",
        primary_key=("id",),
        unique=TABLES[0].unique,
        access=TABLES[0].access,
    ),
    PlainTable(
        name="market_data",
        primary_key=("id",),
        unique=TABLES[1].unique,
        indexes=TABLES[1].indexes,
        access=TABLES[1].access,
        triggers=TABLES[1].triggers,
    ),
    PlainTable(
        name="dex_trades",
        primary_key=("id",),
        unique=(("uq_dex_trades_network_tx_hash_log_index", ("network", "tx_hash", "log_index")),),
        indexes=TABLES[2].indexes,
        foreign_keys=(_FK_POOL,),
        access=TABLES[2].access,
    ),
)


def upgrade() -> None:
    op.execute("set local check_function_bodies = off")
    op.execute(
        "create or replace function private.secure_partitions(parent regclass) returns integer\nlanguage plpgsql volatile set search_path = '' as $$\ndeclare\n  child regclass;\n  api_role text;\n  secured integer := 0;\nbegin\n  for child in\n    select t.relid from pg_catalog.pg_partition_tree(parent) t where t.relid <> parent\n  loop\n    if not (select c.relrowsecurity from pg_catalog.pg_class c where c.oid = child) then\n      execute format('alter table %s enable row level security', child);\n      secured := secured + 1;\n    end if;\n    for api_role in\n      select r.rolname from pg_catalog.pg_roles r\n       where r.rolname in ('anon', 'authenticated', 'service_role')\n         and (pg_catalog.has_table_privilege(r.oid, child, 'select, insert, update, delete'))\n    loop\n      execute format('revoke all on %s from %I', child, api_role);\n    end loop;\n  end loop;\n  return secured;\nend\n$$"
    )
    op.execute("revoke all on function private.secure_partitions(regclass) from public")
    op.execute(
        "create or replace function private.create_partitions(parent regclass, unit text, since timestamptz, until timestamptz, suffix text default 'YYYYMMDD') returns integer\nlanguage plpgsql volatile set search_path = '' as $$\ndeclare\n  parent_schema text;\n  parent_name text;\n  start_at timestamp := pg_catalog.date_trunc(unit, since at time zone 'UTC');\n  end_at timestamp;\n  child text;\n  made integer := 0;\nbegin\n  select n.nspname, c.relname into parent_schema, parent_name\n    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace\n   where c.oid = parent;\n  if not exists (select from pg_catalog.pg_inherits i\n                   join pg_catalog.pg_class c on c.oid = i.inhrelid\n                  where i.inhparent = parent\n                    and pg_catalog.pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT') then\n    execute format('create table %I.%I partition of %s default',\n                   parent_schema, parent_name || '_default', parent);\n    made := made + 1;\n  end if;\n  while start_at < until at time zone 'UTC' loop\n    end_at := start_at + ('1 ' || unit)::interval;\n    child := parent_name || '_p' || pg_catalog.to_char(start_at, suffix);\n    if pg_catalog.to_regclass(format('%I.%I', parent_schema, child)) is null then\n      begin\n        execute format('create table %I.%I partition of %s for values from (%L) to (%L)',\n                       parent_schema, child, parent,\n                       pg_catalog.to_char(start_at, 'YYYY-MM-DD HH24:MI:SS') || '+00',\n                       pg_catalog.to_char(end_at, 'YYYY-MM-DD HH24:MI:SS') || '+00');\n        made := made + 1;\n      exception when invalid_object_definition then\n        null;  -- the range is another partition's already (named otherwise, e.g. by pg_partman)\n      end;\n    end if;\n    start_at := end_at;\n  end loop;\n  perform private.secure_partitions(parent);\n  return made;\nend\n$$"
    )
    op.execute(
        "revoke all on function private.create_partitions(regclass, text, timestamp with time zone, timestamp with time zone, text) from public"
    )
    partitions.prepare()
    for table in TABLES:
        partitions.convert(table)
    partitions.finish()


def downgrade() -> None:
    for table in PLAIN:
        partitions.revert(table)
    op.execute(
        "drop function if exists private.create_partitions(regclass, text, timestamp with time zone, timestamp with time zone, text)"
    )
    op.execute("drop function if exists private.secure_partitions(regclass)")
