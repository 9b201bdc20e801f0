"""Every row the database holds can be listed through the API without a 500.

First, rows at the edges today's CHECKs allow (written as the owner, constraints in place) are
listed whole. Then rows the Public models cannot represent — what a user could write through
the Data API before the database checked JSON documents, written here with the CHECKs dropped
— are left out of pages (the page and its cursor still work), are a 409 naming the field when
asked for alone, and can be repaired with PATCH or removed with DELETE."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import text

from alert_service.api import create_app
from database.schema.alerts import MAX_COOLDOWN_SECONDS, MAX_WATCHED_ADDRESSES
from database.sessions import Database
from service_kit.tokens import TokenVerifier

SECRET = "alert-rows-test-secret-long-enough-for-hs256"


@pytest.fixture
def client(database: Database) -> Iterator[TestClient]:
    app = create_app(database=database, verifier=TokenVerifier(jwt_secret=SecretStr(SECRET)))
    with TestClient(app) as c:
        yield c


@pytest.fixture
def user(database: Database) -> uuid.UUID:
    with database.service_session() as s:
        return s.execute(  # type: ignore[no-any-return]
            text("insert into auth.users (id) values (gen_random_uuid()) returning id")
        ).scalar_one()


def headers(user: uuid.UUID) -> dict[str, str]:
    claims = {"sub": str(user), "aud": "authenticated", "exp": int(time.time()) + 600}
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


def _everything(client: TestClient, user: uuid.UUID, path: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        response = client.get(path, params=params, headers=headers(user))
        assert response.status_code == 200, response.text
        rows += response.json()["data"]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return rows


def test_rows_at_the_edges_of_the_checks_are_listed_whole(
    client: TestClient, database: Database, user: uuid.UUID
) -> None:
    addresses = [f"0x{n:040x}" for n in range(MAX_WATCHED_ADDRESSES)]
    edges = [
        ("x" * 100, "whale_transaction", {"addresses": addresses}),
        ("y", "whale_transaction", {"min_value_eth": "0", "min_whale_score": "1"}),
        ("price", "price_level", {"symbol": "ETH/USDT", "direction": "below",
                                  "price": "0.000000000000000001"}),
        ("zone", "liquidity_zone", {"symbol": "BTC-PERP", "side": "bid", "min_strength": "0"}),
        ("smc", "smc_pattern", {"symbol": "ETH", "pattern_types": ["fair_value_gap", "order_block"],
                                "time_frames": ["1m", "1w"], "min_confidence": "1.0000"}),
    ]  # fmt: skip
    # Five channels, the most allowed, one of them the one webhook a rule may have.
    five = [{"type": "in_app"}] * 4 + [{"type": "webhook", "url": "https://h0.example/"}]
    with database.service_session() as s:
        for name, kind, conditions in edges:
            s.execute(
                text(
                    "insert into alerts (user_id, name, alert_type, conditions, channels,"
                    " cooldown_seconds) values (:u, :n, :t,"
                    " cast(:c as jsonb) || jsonb_build_object('alert_type', cast(:t as text)),"
                    " cast(:ch as jsonb), :cool)"
                ),
                {"u": user, "n": name, "t": kind, "c": _json(conditions), "ch": _json(five),
                 "cool": MAX_COOLDOWN_SECONDS},
            )  # fmt: skip
            s.execute(
                text(
                    "insert into alert_events (alert_id, user_id, source, source_id, payload,"
                    " delivery_status, attempts, last_error) select id, user_id, 'smc_patterns',"
                    ' gen_random_uuid(), \'{"deep": {"x": [1, null]}}\','
                    " 'failed', 2147483647, repeat('e', 2000) from alerts where name = :n"
                ),
                {"n": name},
            )
    listed = _everything(client, user, "/alerts")
    assert sorted(r["name"] for r in listed) == sorted(name for name, _, _ in edges)
    assert all(len(r["channels"]) == 5 and "webhook_secret" not in r for r in listed)
    events = _everything(client, user, "/alert-events")
    assert len(events) == len(edges) and all(e["attempts"] == 2147483647 for e in events)


def _json(value: Any) -> str:
    return json.dumps(value)


UNREADABLE = [
    ("conditions", {"alert_type": "whale_transaction"}, [{"type": "in_app"}]),
    ("conditions.whale_transaction.colour",
     {"alert_type": "whale_transaction", "chain": "base", "colour": "red"}, [{"type": "in_app"}]),
    ("conditions.whale_transaction.min_value_eth",
     {"alert_type": "whale_transaction", "min_value_eth": "abc"}, [{"type": "in_app"}]),
    ("conditions.price_level.symbol", {"alert_type": "price_level", "direction": "up"},
     [{"type": "in_app"}]),
    ("channels.0", {"alert_type": "whale_transaction", "chain": "base"}, [{"type": "sms"}]),
    ("channels.0.webhook.url", {"alert_type": "whale_transaction", "chain": "base"},
     [{"type": "webhook"}]),
    ("channels.0.webhook.url", {"alert_type": "whale_transaction", "chain": "base"},
     [{"type": "webhook", "url": "http://plain.example"}]),
    ("channels", {"alert_type": "whale_transaction", "chain": "base"}, {"type": "in_app"}),
]  # fmt: skip


@pytest.mark.parametrize(("field", "conditions", "channels"), UNREADABLE)
def test_rows_the_public_model_cannot_read_never_500(
    client: TestClient,
    owner_rules: Callable[..., uuid.UUID],
    user: uuid.UUID,
    field: str,
    conditions: Any,
    channels: Any,
) -> None:
    fine = owner_rules(conditions={"alert_type": "whale_transaction", "chain": "base"},
                       user=user, name="fine")  # fmt: skip
    bad = owner_rules(conditions=conditions, channels=channels, user=user,
                      alert_type=conditions["alert_type"], name="bad")  # fmt: skip
    me = headers(user)
    assert [r["id"] for r in _everything(client, user, "/alerts")] == [str(fine)]
    alone = client.get(f"/alerts/{bad}", headers=me)
    assert alone.status_code == 409, alone.text
    assert alone.json()["field"].startswith(field.split(".")[0]), alone.json()
    assert "delete it" in alone.json()["detail"]
    # Renaming keeps the broken parts: still a 409, and nothing is written.
    assert client.patch(f"/alerts/{bad}", json={"name": "x"}, headers=me).status_code == 409
    repair = {
        "conditions": {"alert_type": conditions["alert_type"], "symbol": "ETH",
                       "direction": "above", "price": "1"}
        if conditions["alert_type"] == "price_level"
        else {"alert_type": "whale_transaction", "chain": "base"},
        "channels": [{"type": "in_app"}],
    }  # fmt: skip
    repaired = client.patch(f"/alerts/{bad}", json=repair, headers=me)
    assert repaired.status_code == 200, repaired.text
    assert len(_everything(client, user, "/alerts")) == 2
    assert client.delete(f"/alerts/{bad}", headers=me).status_code == 204
