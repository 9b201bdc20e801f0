"""The alert service's tests run on the package's migrated test database. They commit for
real (API requests, workers), so every table they write is emptied after each test."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import text

from database.sessions import Database

#: `owner_rules(...)`: writes an alert row the way the table owner could.
Writer = Callable[..., uuid.UUID]


@pytest.fixture(autouse=True)
def _isolated(settings_use_test_database: None, truncate_after: Callable[..., None]) -> None:
    truncate_after(
        "alert_events", "alerts", "profiles", "whale_transactions", "market_data",
        "liquidity_zones", "smc_patterns", "evaluator_cursors", "auth.users",
    )  # fmt: skip


@pytest.fixture
def owner_rules(database: Database) -> Iterator[Writer]:
    """`write(conditions=…, channels=…, secret=…)`: an alert row as the owner would write it,
    with every CHECK on alerts dropped for the test and triggers off; restored afterwards."""
    with database.service_session() as s:
        checks = s.execute(
            text(
                "select conname, pg_get_constraintdef(oid) from pg_constraint"
                " where conrelid = 'public.alerts'::regclass and contype = 'c'"
            )
        ).all()
        for name, _ in checks:
            s.execute(text(f'alter table alerts drop constraint "{name}"'))

    def write(
        *,
        conditions: Any,
        channels: Any = None,
        secret: str | None = None,
        user: uuid.UUID | None = None,
        alert_type: str = "whale_transaction",
        name: str = "rule",
    ) -> uuid.UUID:
        with database.service_session() as s:
            s.execute(text("set local session_replication_role = replica"))
            if user is None:
                user = s.execute(
                    text("insert into auth.users (id) values (gen_random_uuid()) returning id")
                ).scalar_one()
            rule: uuid.UUID = s.execute(
                text(
                    "insert into alerts (user_id, name, alert_type, conditions, channels,"
                    " cooldown_seconds) values (:u, :name, :type,"
                    " cast(:c as jsonb), cast(:ch as jsonb), 0) returning id"
                ),
                {"u": user, "c": json.dumps(conditions), "name": name, "type": alert_type,
                 "ch": json.dumps(channels if channels is not None else [{"type": "in_app"}])},
            ).scalar_one()  # fmt: skip
            if secret is not None:  # the trigger that issues secrets is off here
                s.execute(
                    text("insert into alert_webhook_secrets (alert_id, secret) values (:a, :k)"),
                    {"a": rule, "k": secret},
                )
        return rule

    try:
        yield write
    finally:
        with database.service_session() as s:
            s.execute(text("truncate alerts cascade"))
            for name, definition in checks:
                s.execute(text(f'alter table alerts add constraint "{name}" {definition}'))
