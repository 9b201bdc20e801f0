"""Pages: rows from the database to JSON by the fast path (a TypedDict mirror of the Public
model) give exactly the bytes the Public model itself gives, and a row breaking the model's
rules is left out, never a 500."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter
from sqlmodel import Session

from database.repositories import Repository, WhaleTransactionRepository
from database.schema import AlertPublic, WhaleTransactionPublic
from database.schema.alerts import (
    Alert,
    AlertEvent,
    AlertEventPublic,
    AlertEventsPublic,
    AlertsPublic,
)
from database.schema.base import Page
from database.schema.whales import WhaleTransactionsPublic
from database_tools.factories import EPOCH, AlertEventFactory, AlertFactory, WhaleTransactionFactory
from service_kit.pages import _shape, items_response, page_response, public_items, row_response


class AlertRepository(Repository[Alert]):
    model = Alert
    sort = ("created_at", "id")


class AlertEventRepository(Repository[AlertEvent]):
    model = AlertEvent
    sort = ("triggered_at", "id")


def _by_model(rows: list[Any], model: type[BaseModel]) -> bytes:
    """The slow, obvious path: one model per row, dumped by pydantic."""
    return TypeAdapter(list[model]).dump_json([model.model_validate(r) for r in rows])  # type: ignore[valid-type]


@pytest.mark.parametrize("model", [WhaleTransactionPublic, AlertPublic, AlertEventPublic])
def test_the_pages_models_take_the_fast_path(model: type[BaseModel]) -> None:
    # The fast path applies only to models whose rules are all on their field types.
    assert _shape(model).rows.core_schema["items_schema"]["type"] == "typed-dict"


amounts = st.decimals(min_value=0, max_value=Decimal("999999999999.999999999999999999"), places=18)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value_eth=amounts,
    value_usd=st.none() | st.decimals(min_value=0, max_value=Decimal("1e17"), places=2),
    score=st.decimals(min_value=0, max_value=1, places=4),
    gas_price=st.integers(min_value=0, max_value=2**63 - 1),
    seconds=st.integers(min_value=0, max_value=10**9),
)
def test_whale_rows_render_exactly_as_the_model_renders_them(
    db_session: Session,
    value_eth: Decimal,
    value_usd: Decimal | None,
    score: Decimal,
    gas_price: int,
    seconds: int,
) -> None:
    row = WhaleTransactionFactory(
        value_eth=value_eth,
        value_usd=value_usd,
        whale_score=score,
        gas_price=gas_price,
        block_timestamp=EPOCH + timedelta(seconds=seconds),
    )
    stored = WhaleTransactionRepository(db_session).get_by_hash(hash=row.hash)
    assert items_response([stored], WhaleTransactionPublic).body == _by_model(
        [stored], WhaleTransactionPublic
    )
    one = json.loads(bytes(row_response(stored, WhaleTransactionPublic, what="whale").body))
    assert one["value_eth"] == format(value_eth, "f") or Decimal(one["value_eth"]) == value_eth
    assert "E" not in one["value_eth"]  # plain digits, never an exponent


def test_a_page_renders_exactly_as_the_page_model(db_session: Session) -> None:
    WhaleTransactionFactory.create_batch(7, value_eth=Decimal("0.000000000000000001"))
    page = WhaleTransactionRepository(db_session).list(limit=5)
    assert page.next_cursor is not None
    expected = WhaleTransactionsPublic(
        data=[WhaleTransactionPublic.model_validate(r) for r in page.data],
        next_cursor=page.next_cursor,
    ).model_dump_json()
    assert page_response(page, WhaleTransactionsPublic).body == expected.encode()


ALERT_CONDITIONS = [
    ("whale_transaction", {"min_value_eth": "100", "addresses": ["0x" + "ab" * 20]}),
    ("price_level", {"symbol": "ETH/USDT", "direction": "above", "price": "4000.5"}),
    ("liquidity_zone", {"symbol": "BTC/USDT", "side": "bid", "min_strength": "0.5"}),
    (
        "smc_pattern",
        {"symbol": "SOL/USDT", "pattern_types": ["fair_value_gap"], "time_frames": ["1h"]},
    ),
]


def test_alerts_and_events_render_exactly_as_their_models(db_session: Session) -> None:
    for alert_type, conditions in ALERT_CONDITIONS:
        AlertFactory(alert_type=alert_type, conditions=conditions)
    AlertEventFactory.create_batch(3)
    rules = AlertRepository(db_session).list(limit=50)
    assert len(rules.data) == len(ALERT_CONDITIONS) + 3
    expected = AlertsPublic(
        data=[AlertPublic.model_validate(r) for r in rules.data], next_cursor=None
    ).model_dump_json()
    assert page_response(rules, AlertsPublic).body == expected.encode()
    events = AlertEventRepository(db_session).list(limit=50)
    assert page_response(events, AlertEventsPublic).body == (
        AlertEventsPublic(
            data=[AlertEventPublic.model_validate(r) for r in events.data], next_cursor=None
        )
        .model_dump_json()
        .encode()
    )


def test_a_row_breaking_the_model_is_left_out_and_the_rest_kept(db_session: Session) -> None:
    WhaleTransactionFactory.create_batch(3)
    rows = WhaleTransactionRepository(db_session).list(limit=3).data
    broken = {**rows[1]._asdict(), "whale_score": Decimal("7")}  # above the Score rule's 1
    kept = public_items([rows[0], broken, rows[2]], WhaleTransactionPublic)
    assert [item["id"] for item in kept] == [rows[0].id, rows[2].id]
    body = json.loads(bytes(page_response(Page(data=[broken]), WhaleTransactionsPublic).body))
    assert body == {"data": [], "next_cursor": None}
