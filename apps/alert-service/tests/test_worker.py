"""The evaluator and the deliverer against the real database: NOTIFY, catch-up, two workers,
cooldowns, webhook retries and signatures (an HTTPS receiver on loopback, reachable only
because the tests allow `localhost` through WEBHOOK_ALLOWED_HOSTS)."""

from __future__ import annotations

import json
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
from sqlmodel import Session

from alert_service.changes import NotifySource, RealtimeSource, change_source
from alert_service.delivery import SIGNATURE_HEADER, TIMESTAMP_HEADER, Backoff, Deliverer, verify
from alert_service.evaluator import Evaluator
from alert_service.rules import AlertRepository
from database.repositories import BulkWriter
from database.schema import WhaleTransaction, WhaleTransactionCreate
from database.schema.base import build_row
from database.sessions import Database
from database.settings import load_settings
from database_tools.https_receiver import HttpsReceiver
from service_kit.egress import PublicClient, TargetPolicy


def _whales(n: int, value_eth: str = "5000") -> list[WhaleTransactionCreate]:
    rows = []
    for _ in range(n):
        rows.append(
            WhaleTransactionCreate(
                hash="0x" + uuid.uuid4().hex + uuid.uuid4().hex,
                from_address="0x" + "1" * 40,
                to_address="0x" + "2" * 40,
                value_eth=Decimal(value_eth),
                gas_price=1,
                block_number=1,
                block_timestamp=datetime(2026, 5, 1, tzinfo=UTC),
                whale_score=Decimal("0.9"),
            )
        )
    return rows


@pytest.fixture
def ingest(database: Database) -> Callable[..., list[WhaleTransactionCreate]]:
    def run(n: int, value_eth: str = "5000") -> list[WhaleTransactionCreate]:
        rows = _whales(n, value_eth)
        BulkWriter(database).upsert(WhaleTransaction, rows=rows)
        return rows

    return run


@pytest.fixture
def rule(database: Database) -> Callable[..., uuid.UUID]:
    def make(
        *,
        cooldown: int = 0,
        channels: list[dict[str, str]] | None = None,
        min_value_eth: str = "1000",
    ) -> uuid.UUID:
        with database.service_session() as s:
            user = s.execute(
                text("insert into auth.users (id) values (gen_random_uuid()) returning id")
            ).scalar_one()
            data: dict[str, Any] = {
                "name": "whales",
                "alert_type": "whale_transaction",
                "conditions": {"min_value_eth": min_value_eth},
                "cooldown_seconds": cooldown,
            }
            if channels:
                data["channels"] = channels
            rule = AlertRepository(s).create(data=data, user_id=user).id
            # The database issued a random secret; a known one lets the test check signatures.
            s.execute(
                text("update alert_webhook_secrets set secret = :k where alert_id = :a"),
                {"k": "5" * 64, "a": rule},
            )
            return rule

    return make


def _events(database: Database, alert_id: uuid.UUID | None = None) -> list[Any]:
    with database.service_session() as s:
        return list(
            s.execute(
                text(
                    "select * from alert_events where (cast(:a as uuid) is null or alert_id = :a)"
                    " order by triggered_at"
                ),
                {"a": alert_id},
            ).all()
        )


def _wait_for(condition: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _wait_for_events(database: Database, alert: Any, count: int) -> None:
    _wait_for(lambda: len(_events(database, alert)) == count)


@contextmanager
def running(evaluator: Evaluator) -> Iterator[threading.Event]:
    """The worker's evaluation loop on a thread, stopped (gracefully) on exit."""
    stop = threading.Event()
    thread = threading.Thread(target=evaluator.run, args=(stop,), kwargs={"catch_up_every": 0.5})
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive()


def test_notify_drives_evaluation(database: Database, ingest: Any, rule: Any) -> None:
    alert = rule()
    with running(Evaluator(database)):
        time.sleep(0.3)
        rows = ingest(3)
        _wait_for(lambda: len(_events(database, alert)) == 3)
    events = _events(database, alert)
    assert {e.payload["hash"] for e in events} == {r.hash for r in rows}
    assert all(e.delivery_status == "delivered" for e in events)  # in-app only


def test_a_wake_reads_only_the_streams_it_names(
    database: Database, ingest: Any, rule: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whale row's NOTIFY reads the whale stream alone (one round of reads, not four); the
    other streams wait for their own signal or the catch-up timer."""
    alert = rule()
    evaluator = Evaluator(database)
    read: list[str] = []
    real = Evaluator._source_batch

    def recording(self: Evaluator, source: Any) -> int | None:
        read.append(source.table.value)
        return real(self, source)

    monkeypatch.setattr(Evaluator, "_source_batch", recording)
    stop = threading.Event()
    thread = threading.Thread(target=evaluator.run, args=(stop,), kwargs={"catch_up_every": 60})
    thread.start()
    try:
        _wait_for(lambda: len(set(read)) == len(evaluator.sources))  # the start's catch-up
        read.clear()
        ingest(2)
        _wait_for(lambda: len(_events(database, alert)) == 2)
        assert set(read) == {"whale_transactions"}
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_notify_source_names_every_channel_it_heard(database: Database) -> None:
    source = NotifySource(database, channels=["whale_transactions", "market_data"])
    try:
        with database.service_session() as s:
            s.execute(
                text("select pg_notify('whale_transactions', ''), pg_notify('market_data', '')")
            )
        assert source.wait(5)
        assert source.announced() == frozenset({"whale_transactions", "market_data"})
        assert not source.wait(0.05)
        assert source.announced() == frozenset()
    finally:
        source.close()


def test_catch_up_after_a_stop_evaluates_each_transaction_once(
    database: Database, ingest: Any, rule: Any
) -> None:
    alert = rule()
    evaluator = Evaluator(database)
    ingest(2)
    assert evaluator.run_until_idle() == 2
    ingest(5)  # arrives while no worker runs
    with running(Evaluator(database)):
        _wait_for(lambda: len(_events(database, alert)) == 7)
    assert evaluator.run_until_idle() == 0  # nothing is evaluated twice
    assert len(_events(database, alert)) == 7


def _insert_uncommitted(session: Session, rows: list[WhaleTransactionCreate]) -> None:
    """Write `rows` in the caller's open transaction (flushed, not committed)."""
    session.add_all([build_row(WhaleTransaction, r) for r in rows])
    session.flush()


def test_a_late_commit_is_evaluated_once_after_it_and_holds_nothing_back(
    database: Database, ingest: Any, rule: Any
) -> None:
    """A writing transaction is held open while other rows commit: those are evaluated at
    once; the held rows, written first (older created_at), are evaluated after their commit,
    once."""
    alert = rule()
    evaluator = Evaluator(database)
    held = _whales(3)
    with database.service_session() as long_ingest:
        _insert_uncommitted(long_ingest, held)
        for round_ in range(1, 4):
            ingest(2)
            assert evaluator.run_until_idle() == 2  # no waiting on the open transaction
            assert len(_events(database, alert)) == 2 * round_
        assert not evaluator.pending()  # uncommitted rows are not there yet
    assert evaluator.pending()
    assert evaluator.run_until_idle() == 3
    assert evaluator.run_until_idle() == 0
    events = _events(database, alert)
    assert len(events) == 9 == len({e.source_id for e in events})
    with database.service_session() as s:
        oldest = s.execute(text("select min(created_at) from whale_transactions")).scalar_one()
        first_held = s.execute(
            text("select created_at from whale_transactions where hash = :h"),
            {"h": held[0].hash},
        ).scalar_one()
    assert first_held == oldest  # a (created_at, id) cursor would have passed it by


def test_a_running_worker_evaluates_a_late_commit_once(
    database: Database, ingest: Any, rule: Any
) -> None:
    alert = rule()
    held = _whales(4)
    with running(Evaluator(database)), running(Evaluator(database)):
        with database.service_session() as long_ingest:
            _insert_uncommitted(long_ingest, held)
            for round_ in range(1, 4):
                ingest(5)
                _wait_for_events(database, alert, 5 * round_)
        _wait_for_events(database, alert, 15 + 4)
        time.sleep(0.5)  # time for a duplicate to show up, were there one
    events = _events(database, alert)
    assert len(events) == 19 == len({e.source_id for e in events})
    assert {e.payload["hash"] for e in events} >= {r.hash for r in held}


def test_two_workers_produce_each_event_exactly_once(
    database: Database, ingest: Any, rule: Any
) -> None:
    alerts = [rule() for _ in range(3)]
    first, second = Evaluator(database, batch_size=7), Evaluator(database, batch_size=7)
    with running(first), running(second):
        for _ in range(5):
            ingest(20)
        _wait_for(lambda: len(_events(database)) == 3 * 100)
        time.sleep(1.0)  # time for a duplicate to show up, were there one
    events = _events(database)
    assert len(events) == 300 == len({(e.alert_id, e.source_id) for e in events})
    assert {e.alert_id for e in events} == set(alerts)
    assert first.stats.rows + second.stats.rows == 100


def test_cooldown_is_honoured(database: Database, ingest: Any, rule: Any) -> None:
    cooling = rule(cooldown=3600)
    eager = rule(cooldown=0)
    evaluator = Evaluator(database)
    ingest(4)
    evaluator.run_until_idle()
    ingest(2)
    evaluator.run_until_idle()
    assert len(_events(database, cooling)) == 1
    assert len(_events(database, eager)) == 6


@pytest.fixture
def receiver() -> Iterator[HttpsReceiver]:
    with HttpsReceiver() as r:
        yield r


def deliverer_for(
    database: Database, receiver: HttpsReceiver, *, backoff: Backoff | None = None
) -> Deliverer:
    """A deliverer allowed to reach the loopback receiver — through the setting, as a
    developer would — and trusting its certificate authority."""
    targets = TargetPolicy.from_settings(load_settings(webhook_allowed_hosts="localhost"))
    client = PublicClient(targets, ssl_context=receiver.client_context())
    return Deliverer(database, backoff=backoff, client=client)


def _deliver_until(deliverer: Deliverer, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 20
    while not done():
        assert time.monotonic() < deadline, "delivery did not settle"
        deliverer.deliver_due()
        time.sleep(0.05)


def test_webhook_retried_until_accepted_once_with_a_valid_signature(
    database: Database, ingest: Any, rule: Any, receiver: HttpsReceiver
) -> None:
    receiver.statuses = [503, 503, 204]
    alert = rule(channels=[{"type": "webhook", "url": receiver.url()}])
    ingest(1)
    Evaluator(database).run_until_idle()
    (event,) = _events(database, alert)
    assert event.delivery_status == "pending"
    deliverer = deliverer_for(
        database, receiver, backoff=Backoff(base_seconds=0.01, max_attempts=5)
    )
    _deliver_until(deliverer, lambda: _events(database, alert)[0].delivery_status != "pending")
    (event,) = _events(database, alert)
    assert (event.delivery_status, event.attempts) == ("delivered", 3)
    assert len(receiver.received) == 3
    headers, body, sni = receiver.received[-1]
    assert sni == "localhost"
    assert verify("5" * 64, int(headers[TIMESTAMP_HEADER]), body, headers[SIGNATURE_HEADER])
    assert not verify("t" * 64, int(headers[TIMESTAMP_HEADER]), body, headers[SIGNATURE_HEADER])
    assert json.loads(body)["event_id"] == str(event.id)


def test_webhook_that_always_fails_ends_failed(
    database: Database, ingest: Any, rule: Any, receiver: HttpsReceiver
) -> None:
    receiver.statuses = [503]
    alert = rule(channels=[{"type": "webhook", "url": receiver.url()}])
    ingest(1)
    Evaluator(database).run_until_idle()
    deliverer = deliverer_for(
        database, receiver, backoff=Backoff(base_seconds=0.01, max_attempts=4)
    )
    _deliver_until(deliverer, lambda: _events(database, alert)[0].delivery_status != "pending")
    (event,) = _events(database, alert)
    assert (event.delivery_status, event.attempts, event.last_error) == ("failed", 4, "HTTP 503")
    assert len(receiver.received) == 4


def test_loopback_webhooks_are_refused_without_the_setting(
    database: Database, ingest: Any, rule: Any, receiver: HttpsReceiver
) -> None:
    alert = rule(channels=[{"type": "webhook", "url": receiver.url()}])
    ingest(1)
    Evaluator(database).run_until_idle()
    client = PublicClient(TargetPolicy.from_settings(load_settings()),
                          ssl_context=receiver.client_context())  # fmt: skip
    deliverer = Deliverer(database, backoff=Backoff(max_attempts=1), client=client)
    _deliver_until(deliverer, lambda: _events(database, alert)[0].delivery_status != "pending")
    (event,) = _events(database, alert)
    assert (event.delivery_status, event.last_error) == ("failed", "target refused")
    assert receiver.received == []


def test_the_change_source_follows_the_settings(database: Database) -> None:
    plain = change_source(database, load_settings())
    try:
        assert isinstance(plain, NotifySource)
    finally:
        plain.close()
    hosted = load_settings(
        supabase_url="https://abcd.supabase.co", supabase_service_role_key="sb_secret_x"
    )
    assert isinstance(change_source(database, hosted), RealtimeSource)  # connects on first wait
