"""Trading queries against known data, expected values worked out by hand: trade statistics,
daily performance refresh, orders by status, cancel requests, fill application, positions."""

from __future__ import annotations

import math
import statistics
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import ProgrammingError
from sqlmodel import Session, select

from database.errors import ConflictError, InvalidInputError, NotFoundError
from database.repositories import (
    DailyPerformanceRepository,
    OrderFillRepository,
    OrderRepository,
    PositionRepository,
    TradeRepository,
)
from database.schema import Order, OrderStatus, Position, Trade
from database_tools.factories import (
    OrderFactory,
    PositionFactory,
    TradeFactory,
    new_auth_user,
)
from database_tools.identities import Identity

DAY = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
SINCE, UNTIL = DAY, DAY + timedelta(days=4)  # Jan 5, 6, 7, 8


def closed_trade(
    user: uuid.UUID, exit_time: datetime, pnl: str, *, fees: str = "0", symbol: str = "ETH/USDT"
) -> Trade:
    """A closed round trip of `user`'s with net PnL `pnl` (after `fees`)."""
    trade: Trade = TradeFactory(
        user_id=user,
        symbol=symbol,
        entry_time=exit_time - timedelta(hours=1),
        exit_time=exit_time,
        exit_price=Decimal("3100"),
        exit_quantity=Decimal("1"),
        fees=Decimal(fees),
        realized_pnl=Decimal(pnl),
        status="closed",
    )
    return trade


# The period's closed trades (exit time, net PnL):
#   Jan 5 10:00 +100, Jan 5 15:00 -50, Jan 6 09:00 +60, Jan 7 12:00 -80, Jan 7 13:00 0
# Daily PnL over the period's four days: 50, 60, -80, 0 (nothing closed on Jan 8).
PERIOD_TRADES = [
    (DAY + timedelta(hours=10), "100", "2"),
    (DAY + timedelta(hours=15), "-50", "1"),
    (DAY + timedelta(days=1, hours=9), "60", "1.5"),
    (DAY + timedelta(days=2, hours=12), "-80", "2"),
    (DAY + timedelta(days=2, hours=13), "0", "0.5"),
]
DAILY = [50.0, 60.0, -80.0, 0.0]


def _seed(user: uuid.UUID) -> None:
    for exit_time, pnl, fees in PERIOD_TRADES:
        closed_trade(user, exit_time, pnl, fees=fees)
    closed_trade(user, DAY - timedelta(hours=12), "20", fees="1")  # before: equity carried in
    closed_trade(user, UNTIL, "-500")  # at `until`: outside [since, until)
    TradeFactory(user_id=user)  # still open: no exit, not counted
    closed_trade(new_auth_user(), DAY + timedelta(hours=11), "1000")  # someone else's


def test_trade_statistics_computed_in_sql(db_session: Session) -> None:
    user = new_auth_user()
    _seed(user)
    stats = TradeRepository(db_session).statistics(user_id=user, since=SINCE, until=UNTIL)
    assert (stats.trades, stats.wins, stats.losses) == (5, 2, 2)  # 0 is neither
    assert stats.win_rate == pytest.approx(0.4)
    assert stats.total_pnl == Decimal("30")
    assert stats.average_pnl == Decimal("6")
    assert (stats.average_win, stats.average_loss) == (Decimal("80"), Decimal("-65"))
    assert stats.profit_factor == pytest.approx(160 / 130)
    assert (stats.best_trade, stats.worst_trade) == (Decimal("100"), Decimal("-80"))
    # Cumulative PnL 100, 50, 110, 30, 30: the fall from 110 to 30.
    assert stats.max_drawdown == Decimal("80")
    assert stats.days == 4
    mean = sum(DAILY) / 4  # 7.5
    assert stats.sharpe_ratio == pytest.approx(mean / statistics.stdev(DAILY) * math.sqrt(365))
    downside = math.sqrt(sum(min(r, 0) ** 2 for r in DAILY) / 4)  # sqrt(6400 / 4) = 40
    assert stats.sortino_ratio == pytest.approx(mean / downside * math.sqrt(365))
    assert stats.sortino_ratio == pytest.approx(7.5 / 40 * math.sqrt(365))


D0 = Decimal(0)


def test_statistics_of_a_quiet_period_and_of_a_losing_start(db_session: Session) -> None:
    user = new_auth_user()
    repo = TradeRepository(db_session)
    empty = repo.statistics(user_id=user, since=SINCE, until=UNTIL)
    assert (empty.trades, empty.total_pnl, empty.max_drawdown, empty.days) == (0, D0, D0, 4)
    assert (empty.win_rate, empty.average_pnl, empty.profit_factor) == (None, None, None)
    assert (empty.sharpe_ratio, empty.sortino_ratio) == (None, None)  # no variation
    closed_trade(user, DAY + timedelta(hours=1), "-30")
    closed_trade(user, DAY + timedelta(hours=2), "10")
    stats = repo.statistics(user_id=user, since=SINCE, until=DAY + timedelta(days=1))
    # The curve starts at 0: -30 is already a drawdown of 30. One day: no ratios.
    assert (stats.max_drawdown, stats.days, stats.sharpe_ratio) == (Decimal("30"), 1, None)
    assert stats.profit_factor == pytest.approx(10 / 30)


def test_statistics_arguments_are_checked(db_session: Session) -> None:
    repo = TradeRepository(db_session)
    with pytest.raises(InvalidInputError) as caught:
        repo.statistics(user_id=uuid.uuid4(), since=UNTIL, until=SINCE)
    assert caught.value.field == "until"
    with pytest.raises(InvalidInputError) as caught:
        repo.statistics(user_id=uuid.uuid4(), since=SINCE.replace(tzinfo=None), until=UNTIL)
    assert caught.value.field == "since"


# -- daily performance ---------------------------------------------------------------------


def _days(repo: DailyPerformanceRepository, user: uuid.UUID) -> list[tuple[Any, ...]]:
    rows = repo.days(user_id=user, first_day=date(2026, 1, 1), last_day=date(2026, 1, 31))
    return [
        (r.day.day, r.trades, r.wins, r.losses, r.gross_pnl, r.net_pnl, r.fees, r.ending_equity,
         r.max_intraday_drawdown)
        for r in rows
    ]  # fmt: skip


def test_daily_performance_is_refreshed_in_sql_and_idempotently(
    db_session: Session, db_connection: Connection
) -> None:
    user = new_auth_user()
    _seed(user)
    repo = DailyPerformanceRepository(db_session)
    first, last = date(2026, 1, 5), date(2026, 1, 8)
    assert repo.refresh(first_day=first, last_day=last, user_id=user) == 3
    # Jan 5: +100 (fees 2), -50 (fees 1): gross 53, the day's curve 100 then 50 (drawdown
    # 50); ending equity 20 (Jan 4) + 50. Jan 6: one +60. Jan 7: -80, 0: the curve drops to -80
    # from the day's start at 0. Jan 8: nothing closed, no row.
    D = Decimal  # noqa: N806
    assert _days(repo, user) == [
        (5, 2, 1, 1, D("53"), D("50"), D("3"), D("70"), D("50")),
        (6, 1, 1, 0, D("61.5"), D("60"), D("1.5"), D("130"), D("0")),
        (7, 2, 0, 1, D("-77.5"), D("-80"), D("2.5"), D("50"), D("80")),
    ]
    assert repo.refresh(first_day=first, last_day=last, user_id=user) == 0  # nothing changed
    db_connection.execute(
        text(
            "delete from trades where user_id = :u"
            " and (exit_time at time zone 'UTC')::date = '2026-01-06'"
        ),
        {"u": user},
    )
    # For everyone now: Jan 6 goes, Jan 7's ending equity follows (70 - 80), and the other
    # user's Jan 5 appears.
    assert repo.refresh(first_day=first, last_day=last) == 3
    assert [(d[0], d[7]) for d in _days(repo, user)] == [(5, D("70")), (7, D("-10"))]


def test_refresh_is_the_services_alone(
    db_session: Session, db_connection: Connection, identity: Identity
) -> None:
    repo = DailyPerformanceRepository(db_session)
    with pytest.raises(InvalidInputError):
        repo.refresh(first_day=date(2026, 1, 2), last_day=date(2026, 1, 1))
    user = new_auth_user()
    with (
        identity.as_user(user),
        pytest.raises(ProgrammingError) as caught,
        db_connection.begin_nested(),
    ):
        repo.refresh(first_day=date(2026, 1, 1), last_day=date(2026, 1, 2), user_id=user)
    assert caught.value.orig.sqlstate == "42501"  # type: ignore[union-attr]
    with identity.as_service():
        assert repo.refresh(first_day=date(2026, 1, 1), last_day=date(2026, 1, 2)) == 0


# -- orders --------------------------------------------------------------------------------


def test_orders_by_status_are_keyset_pages(db_session: Session) -> None:
    user = new_auth_user()
    for i in range(5):
        OrderFactory(user_id=user, quantity=Decimal(i + 1))
    accepted = OrderFactory(user_id=user)
    db_session.execute(
        text("update orders set status = 'accepted' where id = :i"), {"i": accepted.id}
    )
    OrderFactory()  # another user's
    repo = OrderRepository(db_session)
    first = repo.by_status(status="new", user_id=user, limit=3)
    second = repo.by_status(status="new", user_id=user, limit=3, cursor=first.next_cursor)
    assert len(first.data) == 3 and len(second.data) == 2 and second.next_cursor is None
    assert {o.quantity for o in first.data + second.data} == {Decimal(n) for n in range(1, 6)}
    both = repo.by_status(status=["new", "accepted"], user_id=user, limit=10)
    assert len(both.data) == 6
    assert len(repo.by_status(status="new", limit=10).data) == 6  # the service: everyone's
    with pytest.raises(InvalidInputError) as caught:
        repo.by_status(status="open")
    assert caught.value.field == "status"


def test_an_owner_asks_to_cancel_in_a_user_session(
    db_session: Session, db_connection: Connection, identity: Identity
) -> None:
    owner = new_auth_user()
    mine, done = OrderFactory(user_id=owner), OrderFactory(user_id=owner)
    db_connection.execute(
        text(
            "update orders set status = 'filled', filled_quantity = quantity,"
            " average_fill_price = 3000, closed_at = now() where id = :i"
        ),
        {"i": done.id},
    )
    repo = OrderRepository(db_session)
    with identity.as_user(owner):
        asked = repo.request_cancel(id=mine.id)
        stamp = asked.cancel_requested_at
        assert stamp is not None and asked.status == "new"
        again = repo.request_cancel(id=mine.id)  # asking twice is harmless
        assert again.cancel_requested_at == stamp
        with pytest.raises(ConflictError) as caught, db_session.begin_nested():
            repo.request_cancel(id=done.id)
        assert "filled" in caught.value.rule
    with identity.as_user(new_auth_user()), pytest.raises(NotFoundError):
        repo.request_cancel(id=mine.id)  # someone else's order is not there
    with identity.as_service():
        assert [o.id for o in repo.cancel_requests()] == [mine.id]


def test_submitting_in_a_user_session_takes_the_server_defaults(
    db_session: Session, identity: Identity
) -> None:
    owner = new_auth_user()
    order = {"exchange": "binance", "symbol": "eth/usdt", "order_type": "market",
             "side": "sell", "quantity": "0.5", "client_order_id": "bot-1"}  # fmt: skip
    repo = OrderRepository(db_session)
    with identity.as_user(owner):
        placed = repo.submit(data=order, user_id=owner)
        assert (placed.status, placed.filled_quantity, placed.symbol) == (
            OrderStatus.NEW,
            D0,
            "ETH/USDT",
        )
        with pytest.raises(ConflictError) as caught, db_session.begin_nested():
            repo.submit(data=order, user_id=owner)  # the same client order id
        assert caught.value.constraint == "uq_orders_user_id_client_order_id"
        with pytest.raises(InvalidInputError) as invalid:
            repo.submit(data={**order, "order_type": "limit"}, user_id=owner)
        assert "limit_price" in invalid.value.rule


# -- fills ---------------------------------------------------------------------------------


def _fill(order: Order, fill_id: str, quantity: str, price: str, fee: str, second: int) -> Any:
    return {
        "order_id": order.id,
        "exchange_fill_id": fill_id,
        "quantity": quantity,
        "price": price,
        "fee": fee,
        "filled_at": DAY + timedelta(seconds=second),
    }


def _position(session: Session, user: uuid.UUID) -> list[tuple[Any, ...]]:
    session.expire_all()
    rows = session.exec(select(Position).where(Position.user_id == user)).all()
    return [
        (p.side, p.quantity, p.average_entry_price, p.status)
        for p in sorted(rows, key=lambda p: p.opened_at)
    ]


def _trades(session: Session, user: uuid.UUID) -> list[tuple[Any, ...]]:
    session.expire_all()
    rows = session.exec(select(Trade).where(Trade.user_id == user)).all()
    return [
        (t.side, t.quantity, t.entry_price, t.exit_quantity, t.exit_price, t.fees,
         t.realized_pnl, t.status)
        for t in sorted(rows, key=lambda t: t.entry_time)
    ]  # fmt: skip


def test_fills_move_the_order_the_position_and_its_trade(db_session: Session) -> None:
    user = new_auth_user()
    D = Decimal  # noqa: N806
    buy = OrderFactory(user_id=user, quantity=D("2"), limit_price=D("3100"))
    repo = OrderRepository(db_session)

    first = repo.apply_fill(fill=_fill(buy, "b1", "1", "3000", "1.5", 0))
    assert (first.applied, first.order_status, first.filled_quantity) == (
        True,
        OrderStatus.PARTIALLY_FILLED,
        D("1"),
    )
    assert _position(db_session, user) == [("long", D("1"), D("3000"), "open")]
    # The same fill reported again changes nothing.
    again = repo.apply_fill(fill=_fill(buy, "b1", "1", "3000", "1.5", 0))
    assert (again.applied, again.filled_quantity, again.position_id) == (
        False, D("1"), first.position_id
    )  # fmt: skip

    repo.apply_fill(fill=_fill(buy, "b2", "1", "3100", "1.5", 10))
    db_session.refresh(buy)
    assert (buy.status, buy.filled_quantity, buy.average_fill_price) == ("filled", 2, D("3050"))
    assert buy.closed_at == DAY + timedelta(seconds=10)
    assert _position(db_session, user) == [("long", D("2"), D("3050"), "open")]
    assert _trades(db_session, user) == [
        ("long", D("2"), D("3050"), D("0"), None, D("3"), D("-3"), "open")
    ]

    sell = OrderFactory(user_id=user, side="sell", order_type="market", limit_price=None,
                        quantity=D("3"))  # fmt: skip
    repo.apply_fill(fill=_fill(sell, "s1", "0.5", "3200", "0.8", 20))
    # (3200 - 3050) * 0.5 = 75 realized, less the fee: -3 + 74.2.
    assert _trades(db_session, user)[0][3:] == (D("0.5"), D("3200"), D("3.8"), D("71.2"), "open")
    flip = repo.apply_fill(fill=_fill(sell, "s2", "2.5", "3000", "2.5", 30))
    # 1.5 closes the long at (3000 - 3050) * 1.5 = -75 with 1.5 of the fee; 1 opens a short
    # with the other 1.0.
    assert _trades(db_session, user) == [
        ("long", D("2"), D("3050"), D("2"), D("3050"), D("5.3"), D("-5.3"), "closed"),
        ("short", D("1"), D("3000"), D("0"), None, D("1"), D("-1"), "open"),
    ]
    assert _position(db_session, user) == [
        ("long", D("0"), D("3050"), "closed"),
        ("short", D("1"), D("3000"), "open"),
    ]
    assert len(flip.trade_ids) == 2 and flip.position_id is not None
    db_session.refresh(sell)
    assert (sell.status, sell.filled_quantity) == ("filled", 3)
    assert sell.average_fill_price == D("3033.333333333333333333")  # (1600 + 7500) / 3

    # Refused, with nothing written: more than the order has left, an unknown order.
    fills = len(OrderFillRepository(db_session).list(limit=100).data)
    with pytest.raises(ConflictError) as caught:
        repo.apply_fill(fill=_fill(sell, "s3", "0.1", "3000", "0", 40))
    assert "filled" in caught.value.rule
    assert len(OrderFillRepository(db_session).list(limit=100).data) == fills == 4
    with pytest.raises(NotFoundError):
        repo.apply_fill(fill={**_fill(sell, "x", "1", "1", "0", 0), "order_id": uuid.uuid4()})


def test_a_fill_that_would_overfill_is_refused(db_session: Session) -> None:
    order = OrderFactory(quantity=Decimal("1"))
    repo = OrderRepository(db_session)
    with pytest.raises(ConflictError) as caught:
        repo.apply_fill(fill=_fill(order, "f1", "1.5", "3000", "0", 0))
    assert "exceed" in caught.value.rule
    assert OrderFillRepository(db_session).list().data == []
    assert repo.apply_fill(fill=_fill(order, "f2", "1", "3000", "0", 0)).order_status == "filled"


def test_fills_are_the_owners_to_read_not_to_write(
    db_session: Session, db_connection: Connection, identity: Identity
) -> None:
    owner = new_auth_user()
    order = OrderFactory(user_id=owner)
    repo = OrderRepository(db_session)
    with (
        identity.as_user(owner),
        pytest.raises(ProgrammingError) as caught,
        db_connection.begin_nested(),
    ):
        repo.apply_fill(fill=_fill(order, "f1", "1", "3000", "0", 0))
    assert caught.value.orig.sqlstate == "42501"  # type: ignore[union-attr]
    repo.apply_fill(fill=_fill(order, "f1", "1", "3000", "0", 0))
    with identity.as_user(owner):
        assert [f.exchange_fill_id for f in OrderFillRepository(db_session).list().data] == ["f1"]
    with identity.as_user(new_auth_user()):
        assert OrderFillRepository(db_session).list().data == []


# -- positions -----------------------------------------------------------------------------


def test_open_positions(db_session: Session, identity: Identity) -> None:
    user, other = new_auth_user(), new_auth_user()
    a = PositionFactory(user_id=user, exchange="kraken", symbol="BTC/USD")
    b = PositionFactory(user_id=user, exchange="binance", symbol="ETH/USDT")
    PositionFactory(user_id=user, symbol="SOL/USDT", status="closed", quantity=Decimal(0),
                    closed_at=DAY)  # fmt: skip
    c = PositionFactory(user_id=other)
    repo = PositionRepository(db_session)
    assert [p.id for p in repo.open_positions(user_id=user)] == [b.id, a.id]  # by exchange
    assert {p.id for p in repo.open_positions()} == {a.id, b.id, c.id}
    with identity.as_user(user):
        assert [p.id for p in repo.open_positions()] == [b.id, a.id]  # RLS: mine
