"""Price-level, liquidity-zone and SMC-pattern rules against their streams (market_data,
liquidity_zones, smc_patterns), written the way collectors write them (BulkWriter): what fires
and what does not, cooldowns, quarantine, late commits, two workers, and the API end to end."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import text

from alert_service.api import create_app
from alert_service.evaluator import Evaluator
from alert_service.rules import AlertRepository
from database.repositories import BulkWriter
from database.schema import (
    LiquidityZone,
    LiquidityZoneCreate,
    MarketData,
    MarketDataCreate,
    SmcPattern,
    SmcPatternCreate,
)
from database.schema.base import build_row
from database.sessions import Database
from service_kit.egress import TargetPolicy
from service_kit.tokens import TokenVerifier

Writer = Callable[..., uuid.UUID]
T0 = datetime(2026, 6, 1, tzinfo=UTC)
SECRET = "alert-types-test-secret-long-enough-for-hs256"


@pytest.fixture(autouse=True)
def _system_events(truncate_after: Callable[..., None]) -> None:
    truncate_after("system_events")


@pytest.fixture
def rule(database: Database) -> Callable[..., uuid.UUID]:
    """`rule(alert_type, conditions, cooldown=0, user=None)`: a rule saved as the API saves it."""

    def make(
        alert_type: str, conditions: dict[str, Any], *, cooldown: int = 0, user: Any = None
    ) -> uuid.UUID:
        with database.service_session() as s:
            if user is None:
                user = s.execute(
                    text("insert into auth.users (id) values (gen_random_uuid()) returning id")
                ).scalar_one()
            data = {
                "name": alert_type.replace("_", " "),
                "alert_type": alert_type,
                "conditions": conditions,
                "cooldown_seconds": cooldown,
            }
            return AlertRepository(s).create(data=data, user_id=user).id

    return make


def quotes(
    database: Database,
    *prices: str,
    exchange: str = "binance",
    symbol: str = "BTC/USDT",
    start: int = 0,
) -> list[uuid.UUID]:
    """One quote per price, a minute apart from minute `start`; their ids in that order."""
    rows = [
        MarketDataCreate(
            exchange=exchange,
            symbol=symbol,
            price=Decimal(p),
            observed_at=T0 + timedelta(minutes=start + i),
        )
        for i, p in enumerate(prices)
    ]
    BulkWriter(database).upsert(MarketData, rows=rows)
    with database.service_session() as s:
        found = s.execute(
            text(
                "select observed_at, id from market_data where exchange = :e and symbol = :s"
                " and observed_at = any(:t)"
            ),
            {"e": exchange, "s": symbol, "t": [r.observed_at for r in rows]},
        )
        by_time = dict(found.all())
    return [by_time[r.observed_at] for r in rows]


def zone(
    database: Database,
    *,
    strength: str | None,
    side: str = "bid",
    size: str = "10",
    exchange: str = "binance",
    symbol: str = "BTC/USDT",
) -> uuid.UUID:
    row = LiquidityZoneCreate.model_validate(
        {
            "exchange": exchange,
            "symbol": symbol,
            "price_level": "60000",
            "side": side,
            "size": size,
            "strength": strength,
        }
    )
    BulkWriter(database).upsert(LiquidityZone, rows=[row])
    with database.service_session() as s:
        return s.execute(  # type: ignore[no-any-return]
            text(
                "select id from liquidity_zones where exchange = :e and symbol = :s and side = :d"
            ),
            {"e": exchange, "s": symbol, "d": side},
        ).scalar_one()


def pattern(**overrides: Any) -> SmcPatternCreate:
    values: dict[str, Any] = {
        "exchange": "binance",
        "symbol": "BTC/USDT",
        "pattern_type": "order_block",
        "time_frame": "1h",
        "price_level": Decimal("61000"),
        "confidence_score": Decimal("0.9"),
    }
    return SmcPatternCreate(**{**values, **overrides})


def patterns(database: Database, *rows: SmcPatternCreate) -> list[uuid.UUID]:
    with database.service_session() as s:
        made = [build_row(SmcPattern, r) for r in rows]
        s.add_all(made)
        s.flush()
        return [m.id for m in made]


def events(database: Database, alert: uuid.UUID | None = None) -> list[Any]:
    with database.service_session() as s:
        return list(
            s.execute(
                text(
                    "select * from alert_events where (cast(:a as uuid) is null or alert_id = :a)"
                    " order by triggered_at, id"
                ),
                {"a": alert},
            ).all()
        )


def sources_of(database: Database, alert: uuid.UUID) -> list[uuid.UUID]:
    return sorted(e.source_id for e in events(database, alert))


def test_a_price_level_fires_once_per_crossing(database: Database, rule: Any) -> None:
    above = rule("price_level", {"symbol": "BTC/USDT", "direction": "above", "price": "100"})
    below = rule("price_level", {"symbol": "BTC/USDT", "direction": "below", "price": "100"})
    on_kraken = rule(
        "price_level",
        {"symbol": "BTC/USDT", "exchange": "kraken", "direction": "above", "price": "100"},
    )
    other = rule("price_level", {"symbol": "ETH/USDT", "direction": "above", "price": "1"})
    evaluator = Evaluator(database)
    # first quote: no previous one; 101 crosses up; 105 stays above; 98 crosses down; 100
    # reaches the level from below (a crossing); 100 again is no news.
    q = quotes(database, "95", "99", "101", "105", "98", "100", "100")
    assert evaluator.run_until_idle() == 7
    assert sources_of(database, above) == sorted([q[2], q[5]])
    assert sources_of(database, below) == [q[4]]
    assert events(database, on_kraken) == events(database, other) == []
    # The previous quote is the same exchange's: kraken's first quote (110) crosses nothing,
    # though binance's last was 100; its next one, from 99, does.
    k = quotes(database, "110", "99", "120", exchange="kraken", start=100)
    assert evaluator.run_until_idle() == 3
    assert sources_of(database, on_kraken) == [k[2]]
    assert sources_of(database, above) == sorted([q[2], q[5], k[2]])  # any exchange
    assert sources_of(database, below) == sorted([q[4], k[1]])
    (first,) = [e for e in events(database, above) if e.source_id == q[2]]
    assert first.source == "market_data"
    assert first.payload | {"observed_at": None, "previous_observed_at": None} == {
        "alert": "price level",
        "source": "market_data",
        "exchange": "binance",
        "symbol": "BTC/USDT",
        "direction": "above",
        "level": "100",
        "price": "101.000000000000000000",
        "previous_price": "99.000000000000000000",
        "observed_at": None,
        "previous_observed_at": None,
    }


def test_a_price_level_crossing_honours_the_cooldown(database: Database, rule: Any) -> None:
    cooling = rule(
        "price_level", {"symbol": "BTC/USDT", "direction": "above", "price": "100"}, cooldown=3600
    )
    eager = rule("price_level", {"symbol": "BTC/USDT", "direction": "above", "price": "100"})
    evaluator = Evaluator(database)
    quotes(database, "99", "101", "99", "101")
    evaluator.run_until_idle()
    quotes(database, "99", "101", start=10)
    evaluator.run_until_idle()
    assert len(events(database, cooling)) == 1
    assert len(events(database, eager)) == 3


def test_liquidity_zones_fire_when_new_or_strengthened_into_a_rule(
    database: Database, rule: Any
) -> None:
    strong = rule("liquidity_zone", {"symbol": "BTC/USDT", "min_strength": "0.7"})
    bids = rule("liquidity_zone", {"symbol": "BTC/USDT", "side": "bid"})
    on_kraken = rule("liquidity_zone", {"symbol": "BTC/USDT", "exchange": "kraken"})
    other = rule("liquidity_zone", {"symbol": "ETH/USDT"})
    evaluator = Evaluator(database)
    bid = zone(database, strength="0.5")
    assert evaluator.run_until_idle() == 1
    assert (sources_of(database, strong), sources_of(database, bids)) == ([], [bid])
    zone(database, strength="0.8")  # strengthened past 0.7: the zone is news again
    assert evaluator.run_until_idle() == 1
    assert (sources_of(database, strong), sources_of(database, bids)) == ([bid], [bid])
    zone(database, strength="0.6", size="99")  # weakened: not news
    zone(database, strength="0.6", size="5")  # neither is a new size
    assert evaluator.run_until_idle() == 0
    zone(database, strength="0.95")  # stronger again: read again, but once per (rule, zone)
    assert evaluator.run_until_idle() == 1
    ask = zone(database, strength=None, side="ask")
    unknown_then_strong = zone(database, strength="0.75", side="ask")
    assert ask == unknown_then_strong
    evaluator.run_until_idle()
    assert sources_of(database, strong) == sorted([bid, ask])
    assert sources_of(database, bids) == [bid]
    assert events(database, on_kraken) == events(database, other) == []
    assert len(events(database)) == 3
    (event,) = [e for e in events(database, strong) if e.source_id == ask]
    assert (event.source, event.payload["side"], event.payload["strength"]) == (
        "liquidity_zones",
        "ask",
        "0.7500",
    )


def test_smc_patterns_fire_on_new_matching_patterns(database: Database, rule: Any) -> None:
    blocks = rule("smc_pattern", {"symbol": "BTC/USDT", "pattern_types": ["order_block"]})
    hourly = rule(
        "smc_pattern",
        {
            "symbol": "BTC/USDT",
            "exchange": "binance",
            "pattern_types": ["fair_value_gap", "order_block"],
            "time_frames": ["1h"],
            "min_confidence": "0.8",
        },
    )
    on_kraken = rule(
        "smc_pattern",
        {"symbol": "BTC/USDT", "exchange": "kraken", "pattern_types": ["order_block"]},
    )
    p = patterns(
        database,
        pattern(time_frame="4h"),  # blocks
        pattern(confidence_score=Decimal("0.7")),  # blocks (hourly needs 0.8)
        pattern(pattern_type="fair_value_gap", confidence_score=Decimal("0.85")),  # hourly
        pattern(confidence_score=Decimal("0.8")),  # both
        pattern(status="mitigated"),  # not a live pattern: nobody
        pattern(symbol="ETH/USDT"),  # nobody
        pattern(pattern_type="liquidity_sweep"),  # nobody
    )
    assert Evaluator(database).run_until_idle() == 7
    assert sources_of(database, blocks) == sorted([p[0], p[1], p[3]])
    assert sources_of(database, hourly) == sorted([p[2], p[3]])
    assert events(database, on_kraken) == []
    (event,) = [e for e in events(database, hourly) if e.source_id == p[2]]
    assert (event.source, event.payload["pattern_type"], event.payload["confidence_score"]) == (
        "smc_patterns",
        "fair_value_gap",
        "0.8500",
    )


def test_poisoned_rules_of_every_type_are_quarantined_alone(
    database: Database, owner_rules: Writer, rule: Any
) -> None:
    good_price = rule("price_level", {"symbol": "BTC/USDT", "direction": "above", "price": "100"})
    good_zone = rule("liquidity_zone", {"symbol": "BTC/USDT"})
    good_pattern = rule("smc_pattern", {"symbol": "BTC/USDT", "pattern_types": ["order_block"]})
    poisoned = [
        owner_rules(
            alert_type="price_level",
            conditions={
                "alert_type": "price_level",
                "symbol": "BTC/USDT",
                "direction": "above",
                "price": "high",
            },
        ),
        owner_rules(
            alert_type="liquidity_zone",
            conditions={
                "alert_type": "liquidity_zone",
                "symbol": "BTC/USDT",
                "min_strength": {"x": 1},
            },
        ),
        owner_rules(
            alert_type="smc_pattern",
            conditions={
                "alert_type": "smc_pattern",
                "symbol": "BTC/USDT",
                "pattern_types": ["order_block"],
                "time_frames": "1h",
            },
        ),
    ]
    quotes(database, "99", "101")
    zone(database, strength="0.5")
    patterns(database, pattern())
    evaluator = Evaluator(database)
    assert evaluator.run_until_idle() == 4
    assert evaluator.stats.quarantined == 3
    assert [len(events(database, r)) for r in (good_price, good_zone, good_pattern)] == [1, 1, 1]
    with database.service_session() as s:
        enabled = s.execute(
            text("select count(*) from alerts where id = any(:ids) and enabled"), {"ids": poisoned}
        ).scalar_one()
        reasons = s.execute(
            text("select count(*) from system_events where event_type = 'alert_rule_quarantined'")
        ).scalar_one()
    assert (enabled, reasons) == (0, 3)
    assert not evaluator.pending()


def test_a_late_pattern_commit_is_evaluated_once(database: Database, rule: Any) -> None:
    alert = rule("smc_pattern", {"symbol": "BTC/USDT", "pattern_types": ["order_block"]})
    evaluator = Evaluator(database)
    with database.service_session() as long_ingest:
        long_ingest.add(build_row(SmcPattern, pattern(time_frame="1d")))
        long_ingest.flush()
        patterns(database, pattern(), pattern())
        assert evaluator.run_until_idle() == 2  # no waiting on the open transaction
        assert not evaluator.pending()
    assert evaluator.pending()
    assert evaluator.run_until_idle() == 1
    assert evaluator.run_until_idle() == 0
    assert len(events(database, alert)) == 3 == len(set(sources_of(database, alert)))


@pytest.fixture
def two_workers(database: Database) -> Iterator[tuple[Evaluator, Evaluator]]:
    workers = Evaluator(database, batch_size=7), Evaluator(database, batch_size=7)
    stop = threading.Event()
    threads = [
        threading.Thread(target=w.run, args=(stop,), kwargs={"catch_up_every": 0.5})
        for w in workers
    ]
    for thread in threads:
        thread.start()
    try:
        yield workers
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
            assert not thread.is_alive()


def test_two_workers_record_every_type_exactly_once(
    database: Database, rule: Any, two_workers: tuple[Evaluator, Evaluator]
) -> None:
    above = rule("price_level", {"symbol": "BTC/USDT", "direction": "above", "price": "100"})
    below = rule("price_level", {"symbol": "BTC/USDT", "direction": "below", "price": "100"})
    zones = rule("liquidity_zone", {"symbol": "BTC/USDT"})
    blocks = rule("smc_pattern", {"symbol": "BTC/USDT", "pattern_types": ["order_block"]})
    for batch in range(5):
        quotes(database, *(["99", "101"] * 10), start=batch * 20)  # 20 crossings a batch
        patterns(database, *(pattern() for _ in range(9)))
        zone(database, strength="0.5", exchange=f"x{batch}")
    expected = {above: 50, below: 49, zones: 5, blocks: 45}  # the first quote has no previous
    deadline = time.monotonic() + 30
    while {a: len(events(database, a)) for a in expected} != expected:
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    time.sleep(1.0)  # time for a duplicate to show up, were there one
    recorded = events(database)
    assert len(recorded) == sum(expected.values())
    assert len({(e.alert_id, e.source, e.source_id) for e in recorded}) == len(recorded)
    assert sum(w.stats.rows for w in two_workers) == 100 + 45 + 5


def _token(user: uuid.UUID) -> dict[str, str]:
    claims = {
        "sub": str(user),
        "aud": "authenticated",
        "role": "authenticated",
        "exp": int(time.time()) + 600,
    }
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


def test_an_smc_rule_made_over_http_sees_its_events_and_nobody_else_does(
    database: Database,
) -> None:
    with database.service_session() as s:
        owner, other = (
            s.execute(
                text("insert into auth.users (id) values (gen_random_uuid()) returning id")
            ).scalar_one()
            for _ in range(2)
        )
    verifier = TokenVerifier(jwt_secret=SecretStr(SECRET))
    app = create_app(database=database, verifier=verifier, targets=TargetPolicy())
    rule = {
        "name": "btc blocks",
        "alert_type": "smc_pattern",
        "conditions": {"symbol": "BTC/USDT", "pattern_types": ["order_block"]},
    }
    with TestClient(app) as client:
        made = client.post("/alerts", json=rule, headers=_token(owner))
        assert made.status_code == 201, made.text
        theirs = client.post("/alerts", json={**rule, "name": "theirs"}, headers=_token(other))
        assert theirs.status_code == 201, theirs.text
        (found,) = patterns(database, pattern())
        Evaluator(database).run_until_idle()
        mine = client.get("/alert-events", headers=_token(owner))
        assert mine.status_code == 200, mine.text
        (event,) = mine.json()["data"]
        assert (event["alert_id"], event["source"], event["source_id"]) == (
            made.json()["id"],
            "smc_patterns",
            str(found),
        )
        assert event["payload"]["pattern_type"] == "order_block"
        assert event["payload"]["alert"] == "btc blocks"
        # The other user's rule matched too: each reads their own event only (RLS).
        (their_event,) = client.get("/alert-events", headers=_token(other)).json()["data"]
        assert their_event["alert_id"] == theirs.json()["id"] != event["alert_id"]
        assert their_event["id"] != event["id"]
