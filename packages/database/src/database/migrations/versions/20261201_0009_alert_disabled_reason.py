"""alert disabled reason: why the evaluator switched a rule off, for its owner to read
(server-written; the database clears it when the rule is enabled again)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 11:16:37.741161
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from database.migrations.steps import validate_constraints

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

squawk_ignore = {
    "prefer-robust-stmts": (
        "the DDL runs in the revision's one transaction (all of it or none); only the VALIDATE"
        " runs after it, on purpose, and is rerunnable"
    ),
}


def upgrade() -> None:
    op.add_column("alerts", sa.Column("disabled_reason", sa.Text(), nullable=True))
    op.execute(
        "alter table public.alerts add constraint ck_alerts_disabled_reason_length"
        " check (char_length(disabled_reason) <= 500) not valid"
    )
    op.execute("set local check_function_bodies = off")
    op.execute(
        "create or replace function private.clear_disabled_reason() returns trigger\n"
        "language plpgsql volatile set search_path = '' as $$\n"
        "begin\n  new.disabled_reason := null;\n  return new;\nend\n$$"
    )
    op.execute("revoke all on function private.clear_disabled_reason() from public")
    op.execute(
        "create trigger alerts_enabled_clears_reason before update of enabled on public.alerts"
        " for each row when (new.enabled and not old.enabled)"
        " execute function private.clear_disabled_reason()"
    )
    # the constraint added NOT VALID above, checked against stored rows (all null: instant)
    validate_constraints(("alerts", "ck_alerts_disabled_reason_length"))


def downgrade() -> None:
    op.execute("drop trigger if exists alerts_enabled_clears_reason on public.alerts")
    op.execute("drop function if exists private.clear_disabled_reason()")
    op.execute("alter table public.alerts drop constraint ck_alerts_disabled_reason_length")
    op.drop_column("alerts", "disabled_reason")
