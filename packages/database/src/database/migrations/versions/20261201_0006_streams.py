"""streams: whale transactions, market data, liquidity zones and SMC patterns record the
transaction that inserted each row (xact_id, xid8) and notify their own channel per INSERT
statement; stream consumers keep snapshots (done, window) and a position in the window instead
of a (created_at, id) cursor. The rows an existing whale cursor had not reached are stamped
with this revision's transaction, so the new position finds exactly them

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:05:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

squawk_ignore = {
    "ban-drop-column": (
        "evaluator_cursors is internal (no client reads it): its (created_at, id) position is"
        " converted to the stream position in the same transaction before the columns go"
    ),
    "ban-drop-constraint": (
        "the position CHECK of evaluator_cursors is redeclared over its new columns, in the same"
        " transaction"
    ),
    "ban-drop-function": (
        "private.notify_whale_transactions is an internal trigger function (not exposed, not"
        " executable by clients), replaced by private.notify_stream in the same transaction"
    ),
    "constraint-missing-not-valid": (
        "the CHECKs are added to evaluator_cursors, a table of one row per stream consumer:"
        " the scan is instant"
    ),
}

STREAMS = ("whale_transactions", "market_data", "liquidity_zones", "smc_patterns")


def upgrade() -> None:
    op.execute("set local check_function_bodies = off")
    op.execute(
        "create or replace function private.notify_stream() returns trigger\n"
        "language plpgsql volatile set search_path = '' as $$\nbegin\n"
        "  perform pg_notify(tg_table_name, tg_op);\n  return null;\nend\n$$"
    )
    op.execute("revoke all on function private.notify_stream() from public")
    for table in STREAMS:
        # No default while the column is added: rows from before the stream keep null (a
        # default would stamp them all with this transaction: every row new again). New rows
        # get the inserting transaction's id from the default set right after.
        op.execute(f"alter table public.{table} add column xact_id xid8")
        op.execute(
            f"alter table public.{table} alter column xact_id set default pg_current_xact_id()"
        )
        op.execute(f"drop trigger if exists {table}_notify on public.{table}")
        op.execute(
            f"create trigger {table}_notify after insert on public.{table}"
            " for each statement execute function private.notify_stream()"
        )
    op.execute("drop function private.notify_whale_transactions()")

    # The whale evaluator's position: the rows after its (created_at, id) cursor (all of them
    # when it has none yet) become this transaction's rows, which the new position, empty,
    # reads first. Rows before it stay null: evaluated, never again.
    op.execute("""
        update public.whale_transactions t set xact_id = pg_current_xact_id()
         where exists (select 1 from public.evaluator_cursors c
                        where c.name = 'alerts.whale_transactions'
                          and (c.last_created_at is null
                               or (t.created_at, t.id) > (c.last_created_at, c.last_id)))
    """)
    op.execute(
        "alter table public.evaluator_cursors"
        " drop constraint ck_evaluator_cursors_position_complete,"
        " drop column last_created_at, drop column last_id,"
        " add column done_snapshot pg_snapshot, add column window_snapshot pg_snapshot,"
        " add column after_xact_id xid8, add column after_id uuid"
    )
    op.execute(
        "alter table public.evaluator_cursors add constraint ck_evaluator_cursors_position_complete"
        " check ((after_xact_id is null) = (after_id is null))"
    )
    op.execute(
        "alter table public.evaluator_cursors add constraint"
        " ck_evaluator_cursors_position_in_window"
        " check (after_id is null or window_snapshot is not null)"
    )


def downgrade() -> None:
    op.execute(
        "alter table public.evaluator_cursors"
        " add column last_created_at timestamptz, add column last_id uuid"
    )
    # Back to a (created_at, id) cursor: the newest row the done snapshot covers. (The old
    # cursor may then skip a late commit, which is why it went.)
    op.execute("""
        update public.evaluator_cursors c set (last_created_at, last_id) = (
          select t.created_at, t.id from public.whale_transactions t
           where c.done_snapshot is not null
             and (t.xact_id is null or pg_visible_in_snapshot(t.xact_id, c.done_snapshot))
           order by t.created_at desc, t.id desc limit 1)
    """)
    op.execute(
        "alter table public.evaluator_cursors"
        " drop constraint ck_evaluator_cursors_position_in_window,"
        " drop constraint ck_evaluator_cursors_position_complete,"
        " drop column done_snapshot, drop column window_snapshot,"
        " drop column after_xact_id, drop column after_id"
    )
    op.execute(
        "alter table public.evaluator_cursors add constraint ck_evaluator_cursors_position_complete"
        " check ((last_created_at is null) = (last_id is null))"
    )
    op.execute(
        "create or replace function private.notify_whale_transactions() returns trigger\n"
        "language plpgsql volatile set search_path = '' as $$\nbegin\n"
        "  perform pg_notify('whale_transactions', tg_op);\n  return null;\nend\n$$"
    )
    op.execute("revoke all on function private.notify_whale_transactions() from public")
    for table in STREAMS:
        op.execute(f"drop trigger if exists {table}_notify on public.{table}")
        op.execute(f"alter table public.{table} drop column xact_id")
    op.execute(
        "create trigger whale_transactions_notify after insert on public.whale_transactions"
        " for each statement execute function private.notify_whale_transactions()"
    )
    op.execute("drop function private.notify_stream()")
