"""Workers that no row can stop. Bad rows are written as the table owner with the alerts
table's CHECKs dropped and triggers off (the database refuses them from users — or soon will —
but a worker must not depend on that), then the real loops run on threads under their
supervisors: the poisoned rules are quarantined, every other user still gets their events, the
cursor moves on, deliveries that cannot be made fail alone, and neither loop dies."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from alert_service.delivery import Backoff, Deliverer
from alert_service.evaluator import Evaluator
from alert_service.quarantine import QUARANTINED
from alert_service.supervisor import CRASHED, Supervisor
from database.repositories import BulkWriter
from database.schema import WhaleTransaction, WhaleTransactionCreate
from database.sessions import Database, user_claims
from database.settings import load_settings
from database_tools.https_receiver import HttpsReceiver
from service_kit.egress import PublicClient, TargetPolicy

Writer = Callable[..., uuid.UUID]


@pytest.fixture(autouse=True)
def _system_events(truncate_after: Callable[..., None]) -> None:
    truncate_after("system_events")


def _ingest(database: Database, n: int) -> list[str]:
    rows = [
        WhaleTransactionCreate(
            hash="0x" + uuid.uuid4().hex + uuid.uuid4().hex,
            from_address="0x" + "1" * 40,
            to_address="0x" + "2" * 40,
            value_eth=Decimal(5000),
            value_usd=Decimal(15_000_000),
            gas_price=1,
            block_number=1,
            block_timestamp=datetime(2026, 5, 1, tzinfo=UTC),
            whale_score=Decimal("0.9"),
        )
        for _ in range(n)
    ]
    BulkWriter(database).upsert(WhaleTransaction, rows=rows)
    return [r.hash for r in rows]


def _count(database: Database, sql: str, **params: Any) -> int:
    with database.service_session() as s:
        return int(s.execute(text(sql), params).scalar_one())


def _events_of(database: Database, rule: uuid.UUID) -> int:
    return _count(database, "select count(*) from alert_events where alert_id = :a", a=rule)


def _wait_for(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@contextmanager
def supervised(
    name: str, loop: Callable[[threading.Event], None], database: Database
) -> Iterator[tuple[Supervisor, threading.Thread]]:
    """The loop on a thread under its supervisor, as `alert-service worker` runs it."""
    stop = threading.Event()
    supervisor = Supervisor(name, loop, database, base_seconds=0.1)
    thread = supervisor.thread(stop)
    thread.start()
    try:
        yield supervisor, thread
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive()


POISON = [
    {"alert_type": "whale_transaction", "min_value_eth": "abc"},
    {"alert_type": "whale_transaction", "addresses": "not-a-list"},
    {"alert_type": "whale_transaction", "min_value_usd": "1e999999"},
    {"alert_type": "whale_transaction", "min_whale_score": {"nested": True}},
]


def test_poisoned_rules_are_quarantined_and_everyone_else_keeps_their_events(
    database: Database, owner_rules: Writer
) -> None:
    good = [owner_rules(conditions={"alert_type": "whale_transaction", "min_value_eth": "1000"})
            for _ in range(3)]  # fmt: skip
    evaluator = Evaluator(database, batch_size=50)
    loop = lambda stop: evaluator.run(stop, catch_up_every=0.5)  # noqa: E731
    with supervised("evaluation", loop, database) as (supervisor, thread):
        _ingest(database, 2)
        _wait_for(lambda: all(_events_of(database, r) == 2 for r in good))
        poisoned = [owner_rules(conditions=c) for c in POISON]  # while the worker runs
        _ingest(database, 3)
        _wait_for(lambda: all(_events_of(database, r) == 5 for r in good))
        _ingest(database, 1)  # and after the quarantine: the fast path again
        _wait_for(lambda: all(_events_of(database, r) == 6 for r in good))
        assert thread.is_alive() and supervisor.crashes == 0
    assert evaluator.stats.quarantined == len(POISON)
    with database.service_session() as s:
        states = s.execute(
            text("select id, enabled, disabled_reason from alerts where id = any(:ids)"),
            {"ids": poisoned},
        ).all()
        enabled = {row.id: row.enabled for row in states}
        shown = {row.id: row.disabled_reason for row in states}
        recorded = s.execute(
            text("select context from system_events where event_type = :t"), {"t": QUARANTINED}
        ).scalars()
        reasons = {uuid.UUID(c["alert_id"]): c["reason"] for c in recorded}
    assert enabled == dict.fromkeys(poisoned, False)
    assert set(reasons) == set(poisoned)
    assert shown == reasons  # the owner reads on the rule what the operators read
    assert "numeric" in reasons[poisoned[0]] and "scalar" in reasons[poisoned[1]]
    assert all(_events_of(database, p) == 0 for p in poisoned)
    assert not evaluator.pending()  # the stream moved past every transaction


def test_run_until_idle_quarantines_too(database: Database, owner_rules: Writer) -> None:
    """`alert-service worker --until-idle` (and any single batch) goes the same way."""
    good = owner_rules(conditions={"alert_type": "whale_transaction", "chain": "ethereum"})
    bad = owner_rules(conditions={"alert_type": "whale_transaction", "min_value_eth": "abc"})
    _ingest(database, 4)
    evaluator = Evaluator(database)
    assert evaluator.run_until_idle() == 4
    assert _events_of(database, good) == 4 and _events_of(database, bad) == 0
    assert not _count(database, "select count(*) from alerts where id = :a and enabled", a=bad)


def test_a_lost_listener_connection_is_recorded_and_the_loop_restarts(
    database: Database, owner_rules: Writer
) -> None:
    rule = owner_rules(conditions={"alert_type": "whale_transaction", "min_value_eth": "1"})
    evaluator = Evaluator(database)
    loop = lambda stop: evaluator.run(stop, catch_up_every=60)  # noqa: E731 - only NOTIFY wakes it
    listeners = ("select pid from pg_stat_activity where datname = current_database()"
                 " and query ilike 'listen %'")  # fmt: skip
    with supervised("evaluation", loop, database) as (supervisor, thread):
        _wait_for(lambda: _count(database, f"select count(*) from ({listeners}) l") == 1)
        with database.service_session() as s:
            s.execute(text(f"select pg_terminate_backend(pid) from ({listeners}) l"))
        _wait_for(lambda: supervisor.crashes == 1)
        _ingest(database, 2)  # heard by the new listener (or caught up at restart)
        _wait_for(lambda: _events_of(database, rule) == 2)
        assert thread.is_alive()
    crashes = _count(database, "select count(*) from system_events where event_type = :t",
                     t=CRASHED)  # fmt: skip
    assert crashes == 1


def test_deliveries_that_cannot_be_made_fail_alone(database: Database, owner_rules: Writer) -> None:
    with HttpsReceiver() as receiver:
        hook = [{"type": "webhook", "url": receiver.url()}]
        secret = "5" * 64
        cases = {
            "good": owner_rules(conditions={}, channels=hook, secret=secret),
            "no url": owner_rules(conditions={}, channels=[{"type": "webhook"}], secret=secret),
            "url not text": owner_rules(
                conditions={}, channels=[{"type": "webhook", "url": 5}], secret=secret
            ),
            "channels an object": owner_rules(conditions={}, channels=hook[0], secret=secret),
            "channels a string": owner_rules(conditions={}, channels="webhook", secret=secret),
            "no secret": owner_rules(conditions={}, channels=hook, secret=None),
            "plain http": owner_rules(
                conditions={},
                channels=[{"type": "webhook", "url": receiver.url().replace("https", "http")}],
                secret=secret,
            ),
            "metadata": owner_rules(
                conditions={},
                channels=[{"type": "webhook", "url": "https://169.254.169.254/latest"}],
                secret=secret,
            ),
        }
        with database.service_session() as s:
            for rule in cases.values():
                s.execute(
                    text(
                        "insert into alert_events (alert_id, user_id, source, source_id, payload)"
                        " select id, user_id, 'whale_transactions', gen_random_uuid(),"
                        ' \'{"hash": "0x1"}\' from alerts where id = :a'
                    ),
                    {"a": rule},
                )
        targets = TargetPolicy.from_settings(load_settings(webhook_allowed_hosts="localhost"))
        deliverer = Deliverer(
            database,
            backoff=Backoff(max_attempts=1),
            client=PublicClient(targets, ssl_context=receiver.client_context()),
        )
        pending = "select count(*) from alert_events where delivery_status = 'pending'"
        with supervised("delivery", deliverer.run, database) as (supervisor, thread):
            _wait_for(lambda: _count(database, pending) == 0)
            assert thread.is_alive() and supervisor.crashes == 0
        assert len(receiver.received) == 1
    with database.service_session() as s:
        outcome = {
            row.alert_id: (row.delivery_status, row.last_error)
            for row in s.execute(text("select * from alert_events"))
        }
    unusable = ("failed", "the rule has no usable webhook channel")
    assert {name: outcome[rule] for name, rule in cases.items()} == {
        "good": ("delivered", None),
        "no url": unusable,
        "url not text": unusable,
        "channels an object": unusable,
        "channels a string": unusable,
        "no secret": ("failed", "the rule has no webhook signing secret"),
        "plain http": ("failed", "target refused"),
        "metadata": ("failed", "target refused"),
    }


def test_a_crashing_loop_is_recorded_and_restarted(database: Database) -> None:
    """Whatever escapes a loop — here the loop itself failing twice — is logged, recorded in
    system_events, and followed by a restart, until stop is set."""
    calls: list[float] = []

    def flaky(stop: threading.Event) -> None:
        calls.append(time.monotonic())
        if len(calls) <= 2:
            raise RuntimeError(f"failure {len(calls)}")
        stop.wait()

    with supervised("flaky", flaky, database) as (supervisor, thread):
        _wait_for(lambda: len(calls) == 3)
        assert thread.is_alive()
    assert supervisor.crashes == 2
    with database.service_session() as s:
        rows = s.execute(
            text("select message, context from system_events where event_type = :t"),
            {"t": CRASHED},
        ).all()
    assert sorted(r.context["error"] for r in rows) == ["failure 1", "failure 2"]


def test_the_owner_reads_why_a_rule_was_disabled_and_enabling_it_clears_that(
    database: Database, owner_rules: Writer
) -> None:
    """As through the Data API (the owner's own session): the reason is readable, not
    writable, and the database drops it when the owner switches the rule back on."""
    with database.service_session() as s:
        user = s.execute(
            text("insert into auth.users (id) values (gen_random_uuid()) returning id")
        ).scalar_one()
    bad = owner_rules(
        conditions={"alert_type": "whale_transaction", "min_value_eth": "abc"}, user=user
    )
    _ingest(database, 1)
    Evaluator(database).run_until_idle()
    claims = user_claims(user_id=user)
    with database.user_session(claims=claims) as s:
        row = s.execute(
            text("select enabled, disabled_reason from alerts where id = :a"), {"a": bad}
        )
        enabled, reason = row.one()
    assert enabled is False and "numeric" in reason
    with (
        pytest.raises(ProgrammingError, match="permission denied"),
        database.user_session(claims=claims) as s,
    ):
        s.execute(text("update alerts set disabled_reason = null where id = :a"), {"a": bad})
    with database.user_session(claims=claims) as s:
        s.execute(text("update alerts set enabled = true where id = :a"), {"a": bad})
    with database.service_session() as s:
        after = s.execute(
            text("select enabled, disabled_reason from alerts where id = :a"), {"a": bad}
        ).one()
    assert tuple(after) == (True, None)
