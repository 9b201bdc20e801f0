"""Repository reads: CRUD and keyset pages under RLS, OHLCV ranges/gaps/resampling, latest
quotes, rule matching, daily statistics."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Connection, event
from sqlmodel import Session

from database.errors import InvalidInputError
from database.repositories import (
    MarketDataRepository,
    OhlcvRepository,
    ProfileRepository,
    Repository,
    WatchlistRepository,
    WhaleTransactionRepository,
)
from database.schema import Alert, Ohlcv, OhlcvCreate, Timeframe
from database.schema.base import build_row
from database_tools.factories import (
    EPOCH,
    AlertFactory,
    MarketDataFactory,
    ProfileFactory,
    WatchlistEntryFactory,
    WhaleTransactionFactory,
    new_auth_user,
)
from database_tools.identities import Identity

# -- generic CRUD and pages ------------------------------------------------------------------


class AlertRepository(Repository[Alert]):
    model = Alert


def _store(session: Session, bars: list[OhlcvCreate]) -> None:
    session.add_all([build_row(Ohlcv, bar) for bar in bars])
    session.flush()


def test_crud_in_user_sessions_sees_only_own_rows(db_session: Session, identity: Identity) -> None:
    a, b = new_auth_user(), new_auth_user()
    repo = AlertRepository(db_session)
    rule = {"name": "big", "alert_type": "whale_transaction", "conditions": {"min_value_eth": 1}}
    with identity.as_user(a):
        mine = repo.create(data=rule, user_id=a)
        assert repo.update(id=mine.id, data={"enabled": False}) is not None
    with identity.as_user(b):
        assert repo.get(id=mine.id) is None
        assert repo.list().data == []
        assert repo.update(id=mine.id, data={"name": "stolen"}) is None
        assert repo.delete(id=mine.id) is False
    with identity.as_user(a):
        db_session.expire_all()
        got = repo.get(id=mine.id)
        assert got is not None and got.enabled is False and got.name == "big"
        assert repo.delete(id=mine.id) is True


def test_update_is_validated_and_partial(db_session: Session) -> None:
    alert = AlertFactory()
    repo = AlertRepository(db_session)
    with pytest.raises(InvalidInputError) as caught:
        repo.update(id=alert.id, data={"cooldown_seconds": -5})
    assert caught.value.field == "cooldown_seconds"
    updated = repo.update(id=alert.id, data={"conditions": {"alert_type": "whale_transaction",
                                                             "min_value_usd": "10"}})  # fmt: skip
    assert updated is not None and updated.name == alert.name
    assert updated.conditions["min_value_usd"] == "10"


def test_keyset_pages_have_no_duplicates_or_gaps_and_no_offset(
    db_session: Session, db_connection: Connection
) -> None:
    WhaleTransactionFactory.create_batch(25)
    statements: list[str] = []
    event.listen(db_connection, "before_cursor_execute", lambda *a: statements.append(a[2]))
    repo = WhaleTransactionRepository(db_session)
    seen, cursor, pages = [], None, 0
    while True:
        page = repo.search(limit=10, cursor=cursor)
        seen += [t.id for t in page.data]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 3 and len(seen) == 25 == len(set(seen))
    times = [t.block_timestamp for t in repo.search(limit=25).data]
    assert times == sorted(times, reverse=True)
    assert not any("OFFSET" in s.upper() for s in statements)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"cursor": "garbage!"}, "cursor"), ({"limit": 0}, "limit"), ({"limit": 5000}, "limit")],
)
def test_bad_page_requests_name_the_parameter(
    db_session: Session, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        WhaleTransactionRepository(db_session).search(**kwargs)
    assert caught.value.field == field


def test_unknown_filter_is_named(db_session: Session) -> None:
    with pytest.raises(InvalidInputError, match="colour: is not a column"):
        WhaleTransactionRepository(db_session).list(filters={"colour": "red"})


# -- whale statistics --------------------------------------------------------------------------


def test_daily_stats_are_computed_in_sql(db_session: Session) -> None:
    values = [Decimal(v) for v in ("100", "200", "300", "400", "1000")]
    for i, v in enumerate(values):
        WhaleTransactionFactory(value_eth=v, block_timestamp=EPOCH + timedelta(hours=i))
    WhaleTransactionFactory(value_eth=Decimal(7), block_timestamp=EPOCH + timedelta(days=1))
    stats = WhaleTransactionRepository(db_session).daily_stats(
        filters={"since": EPOCH, "until": EPOCH + timedelta(days=2)}
    )
    assert [(s.day, s.transactions) for s in stats] == [
        (EPOCH.date(), 5),
        (EPOCH.date() + timedelta(days=1), 1),
    ]
    first = stats[0]
    assert first.total_value_eth == sum(values)
    assert (first.median_value_eth, first.p90_value_eth, first.max_value_eth) == (
        Decimal(300),
        Decimal(1000),
        Decimal(1000),
    )


# -- OHLCV -------------------------------------------------------------------------------------


def _bars(minutes: list[int], symbol: str = "BTC/USDT") -> list[OhlcvCreate]:
    return [
        OhlcvCreate(
            source="binance", symbol=symbol, timeframe=Timeframe.M1,
            bucket_start=EPOCH + timedelta(minutes=m),
            open=Decimal(100 + m), high=Decimal(110 + m), low=Decimal(90 + m),
            close=Decimal(105 + m), volume=Decimal(1),
        )
        for m in minutes
    ]  # fmt: skip


SERIES = {"source": "binance", "symbol": "btc/usdt", "timeframe": "1m"}


def test_range_and_latest(db_session: Session) -> None:
    repo = OhlcvRepository(db_session)
    _store(db_session, _bars(list(range(600))))
    _store(db_session, _bars(list(range(10)), symbol="ETH/USDT"))
    bars = repo.get_range(
        **SERIES, start=EPOCH + timedelta(minutes=50), end=EPOCH + timedelta(minutes=550)
    )
    assert (
        len(bars) == 500
        and bars[0].open == 150
        and bars[-1].bucket_start == EPOCH + timedelta(minutes=549)
    )
    latest = repo.get_latest(**SERIES, n=100)
    assert [b.bucket_start for b in latest] == [
        EPOCH + timedelta(minutes=m) for m in range(500, 600)
    ]


def test_gaps_inside_and_at_both_edges(db_session: Session) -> None:
    repo = OhlcvRepository(db_session)
    present = [m for m in range(3, 100) if m not in {10, 11, 12, 50}]
    _store(db_session, _bars(present))
    gaps = repo.gaps(**SERIES, start=EPOCH, end=EPOCH + timedelta(minutes=105))
    found = [
        (
            int((g.start - EPOCH).total_seconds() // 60),
            int((g.end - EPOCH).total_seconds() // 60),
            g.missing,
        )
        for g in gaps
    ]
    assert found == [(0, 2, 3), (10, 12, 3), (50, 50, 1), (100, 104, 5)]
    empty = repo.gaps(
        **{**SERIES, "symbol": "NONE/USDT"}, start=EPOCH, end=EPOCH + timedelta(hours=1)
    )
    assert [(g.start, g.missing) for g in empty] == [(EPOCH, 60)]


def test_resample_one_minute_to_one_hour(db_session: Session) -> None:
    repo = OhlcvRepository(db_session)
    bars = _bars(list(range(120)))
    _store(db_session, bars)
    hours = repo.resample(**SERIES, to="1h", start=EPOCH, end=EPOCH + timedelta(hours=2))
    assert len(hours) == 2
    first = bars[:60]
    assert hours[0] == (EPOCH, first[0].open, max(b.high for b in first), min(b.low for b in first),
                        first[-1].close, sum(b.volume for b in first))  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"start": EPOCH + timedelta(seconds=30)}, "start"),
        ({"start": EPOCH.replace(tzinfo=None)}, "start"),
        ({"timeframe": "2m"}, "timeframe"),
        ({"end": EPOCH}, "end"),
    ],
)
def test_series_arguments_are_validated(
    db_session: Session, kwargs: dict[str, Any], field: str
) -> None:
    args: dict[str, Any] = {**SERIES, "start": EPOCH, "end": EPOCH + timedelta(hours=1), **kwargs}
    with pytest.raises(InvalidInputError) as caught:
        OhlcvRepository(db_session).gaps(**args)
    assert caught.value.field == field


# -- market data -------------------------------------------------------------------------------


def test_latest_quote_per_symbol(db_session: Session) -> None:
    for i in range(5):
        minute = EPOCH + timedelta(minutes=i)
        for exchange, symbol, price, at in (
            ("binance", "ETH/USDT", 3000 + i, minute),
            ("kraken", "ETH/USDT", 2900 + i, minute + timedelta(seconds=30)),
            ("binance", "BTC/USDT", 60000 + i, minute),
        ):
            MarketDataFactory(
                exchange=exchange,
                symbol=symbol,
                price=Decimal(price),
                bid=None,
                ask=None,
                observed_at=at,
            )
    repo = MarketDataRepository(db_session)
    every = {(q.symbol, q.exchange, q.price) for q in repo.latest()}
    assert every == {("BTC/USDT", "binance", Decimal(60004)), ("ETH/USDT", "kraken", Decimal(2904))}
    on_binance = repo.latest(symbols=["eth/usdt"], exchange="Binance")
    assert [(q.symbol, q.price) for q in on_binance] == [("ETH/USDT", Decimal(3004))]
    assert repo.latest(symbols=[]) == []


# -- profiles and watchlists -------------------------------------------------------------------


def test_profiles_and_watchlists_by_user(db_session: Session, identity: Identity) -> None:
    mine, theirs = ProfileFactory(), ProfileFactory()
    WatchlistEntryFactory.create_batch(3, user_id=mine.id)
    WatchlistEntryFactory(user_id=theirs.id)
    profiles, watchlist = ProfileRepository(db_session), WatchlistRepository(db_session)
    with identity.as_user(mine.id):
        assert [p.id for p in profiles.list().data] == [mine.id]  # RLS: "mine"
        assert profiles.get(id=theirs.id) is None
        assert len(watchlist.list().data) == 3
        assert watchlist.list(filters={"user_id": theirs.id}).data == []
    with identity.as_service():
        assert len(watchlist.list(filters={"user_id": theirs.id}).data) == 1
