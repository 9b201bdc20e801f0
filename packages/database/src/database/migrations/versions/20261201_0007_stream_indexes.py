"""stream indexes: consumers read new rows by (xact_id, id); the (created_at, id) index of
whale transactions, which only the old evaluator cursor read, goes. Built and dropped
concurrently (each step its own transaction, each rerunnable)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 10:06:00
"""

from collections.abc import Sequence

from database.migrations import safe

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STREAMS = ("whale_transactions", "market_data", "liquidity_zones", "smc_patterns")


def upgrade() -> None:
    for table in STREAMS:
        safe.create_index_concurrently(f"ix_{table}_xact_id_id", table, ["xact_id", "id"])
    safe.drop_index_concurrently("ix_whale_transactions_created_at_id")


def downgrade() -> None:
    safe.create_index_concurrently(
        "ix_whale_transactions_created_at_id", "whale_transactions", ["created_at", "id"]
    )
    for table in STREAMS:
        safe.drop_index_concurrently(f"ix_{table}_xact_id_id")
