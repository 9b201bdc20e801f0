"""The evaluator and the deliverer against the real database: NOTIFY, catch-up, two workers,
cooldowns, webhook retries and signatures (a receiver on loopback)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from sqlalchemy import text

from alert_service.changes import NotifySource, RealtimeSource, change_source
from alert_service.delivery import SIGNATURE_HEADER, TIMESTAMP_HEADER, Backoff, Deliverer, verify
from alert_service.evaluator import Evaluator
from alert_service.rules import AlertRepository
from database.repositories import BulkWriter
from database.schema import WhaleTransaction, WhaleTransactionCreate
from database.sessions import Database
from database.settings import load_settings

SETTLE = 0.4  # the evaluator reads rows older than the oldest open transaction minus 0.25 s


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
            return AlertRepository(s).create(data=data, user_id=user).id

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


def test_catch_up_after_a_stop_evaluates_each_transaction_once(
    database: Database, ingest: Any, rule: Any
) -> None:
    alert = rule()
    evaluator = Evaluator(database)
    ingest(2)
    time.sleep(SETTLE)
    assert evaluator.run_until_idle() == 2
    ingest(5)  # arrives while no worker runs
    time.sleep(SETTLE)
    with running(Evaluator(database)):
        _wait_for(lambda: len(_events(database, alert)) == 7)
    assert evaluator.run_until_idle() == 0  # nothing is evaluated twice
    assert len(_events(database, alert)) == 7


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
    assert len(events) == 300 == len({(e.alert_id, e.whale_transaction_id) for e in events})
    assert {e.alert_id for e in events} == set(alerts)
    assert first.stats.transactions + second.stats.transactions == 100


def test_cooldown_is_honoured(database: Database, ingest: Any, rule: Any) -> None:
    cooling = rule(cooldown=3600)
    eager = rule(cooldown=0)
    evaluator = Evaluator(database)
    ingest(4)
    time.sleep(SETTLE)
    evaluator.run_until_idle()
    ingest(2)
    time.sleep(SETTLE)
    evaluator.run_until_idle()
    assert len(_events(database, cooling)) == 1
    assert len(_events(database, eager)) == 6


class _Receiver(BaseHTTPRequestHandler):
    """Fails the first `failures` requests with 503, then accepts (and keeps) the rest."""

    failures = 0
    seen: list[tuple[dict[str, str], bytes]] = []
    accepted: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        headers = dict(self.headers.items())
        type(self).seen.append((headers, body))
        if len(type(self).seen) <= type(self).failures:
            self.send_response(503)
        else:
            type(self).accepted.append((headers, body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver(loopback_webhooks: None) -> Iterator[tuple[str, type[_Receiver]]]:
    _Receiver.seen, _Receiver.accepted = [], []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Receiver
    server.shutdown()


@pytest.fixture
def loopback_webhooks(database: Database) -> Iterator[None]:
    """The receiver is http on loopback, which the channels rule refuses (https, public host
    names): the rule is lifted for the test, as an owner could, and put back after."""
    with database.service_session() as s:
        s.execute(text("alter table alerts drop constraint ck_alerts_channels_valid"))
    yield
    with database.service_session() as s:
        s.execute(text("delete from alerts where not private.valid_alert_channels(channels)"))
        s.execute(
            text(
                "alter table alerts add constraint ck_alerts_channels_valid"
                " check (private.valid_alert_channels(channels))"
            )
        )


def _secret(database: Database, alert: uuid.UUID) -> str:
    with database.service_session() as s:
        secret: str = s.execute(
            text("select secret from alert_webhook_secrets where alert_id = :a"), {"a": alert}
        ).scalar_one()
    return secret


def _webhook_rule(database: Database, rule: Callable[..., uuid.UUID], url: str) -> uuid.UUID:
    """A rule delivering to `url` (set by SQL: the API only takes https; the receiver is http)."""
    alert = rule(channels=[{"type": "webhook", "url": "https://placeholder.example/hook"}])
    with database.service_session() as s:
        s.execute(
            text(
                "update alerts set channels = jsonb_build_array(jsonb_build_object("
                "'type', 'webhook', 'url', cast(:u as text))) where id = :a"
            ),
            {"u": url, "a": alert},
        )
    return alert


def _deliver_until(deliverer: Deliverer, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 20
    while not done():
        assert time.monotonic() < deadline, "delivery did not settle"
        deliverer.deliver_due()
        time.sleep(0.05)


def test_webhook_retried_until_accepted_once_with_a_valid_signature(
    database: Database, ingest: Any, rule: Any, receiver: tuple[str, type[_Receiver]]
) -> None:
    url, handler = receiver
    handler.failures = 2
    alert = _webhook_rule(database, rule, url)
    ingest(1)
    time.sleep(SETTLE)
    Evaluator(database).run_until_idle()
    (event,) = _events(database, alert)
    assert event.delivery_status == "pending"
    deliverer = Deliverer(database, backoff=Backoff(base_seconds=0.01, max_attempts=5))
    _deliver_until(deliverer, lambda: _events(database, alert)[0].delivery_status != "pending")
    (event,) = _events(database, alert)
    assert (event.delivery_status, event.attempts) == ("delivered", 3)
    assert len(handler.accepted) == 1 and len(handler.seen) == 3
    headers, body = handler.accepted[0]
    secret = _secret(database, alert)
    assert verify(secret, int(headers[TIMESTAMP_HEADER]), body, headers[SIGNATURE_HEADER])
    assert not verify("t" * 64, int(headers[TIMESTAMP_HEADER]), body, headers[SIGNATURE_HEADER])
    assert json.loads(body)["event_id"] == str(event.id)


def test_webhook_that_always_fails_ends_failed(
    database: Database, ingest: Any, rule: Any, receiver: tuple[str, type[_Receiver]]
) -> None:
    url, handler = receiver
    handler.failures = 10**6
    alert = _webhook_rule(database, rule, url)
    ingest(1)
    time.sleep(SETTLE)
    Evaluator(database).run_until_idle()
    deliverer = Deliverer(database, backoff=Backoff(base_seconds=0.01, max_attempts=4))
    _deliver_until(deliverer, lambda: _events(database, alert)[0].delivery_status != "pending")
    (event,) = _events(database, alert)
    assert (event.delivery_status, event.attempts, event.last_error) == ("failed", 4, "HTTP 503")
    assert len(handler.seen) == 4


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
