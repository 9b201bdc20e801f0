"""Trading: orders (submit, list by status, cancel requests), fill application, open positions,
trade statistics and daily performance — every figure computed in SQL over the indexes.

In a user session RLS shows the caller's rows only, so the same calls answer "mine"; applying
fills and refreshing daily performance are the service's (the API roles may not write those
tables).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlmodel import select

from database.errors import ConflictError, InvalidInputError, NotFoundError, invalid_input
from database.repositories.base import Repository, check_limit, refused_writes, validate
from database.repositories.periods import period
from database.schema.base import Page
from database.schema.trading import (
    OPEN_ORDER_STATUSES,
    DailyPerformance,
    Order,
    OrderFill,
    OrderFillCreate,
    OrderStatus,
    Position,
    PositionSide,
    Trade,
    TradeStatistics,
)
from database.schema.types import TradeSide

_STATUSES: TypeAdapter[list[OrderStatus]] = TypeAdapter(list[OrderStatus])
_OPEN_STATUSES = [s.value for s in OPEN_ORDER_STATUSES]


# -- orders ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppliedFill:
    """What applying one fill did. `applied` is False when that fill had been applied before
    (nothing changed); `trade_ids` are the trades it extended, closed or opened."""

    applied: bool
    order_status: OrderStatus
    filled_quantity: Decimal
    position_id: uuid.UUID | None
    trade_ids: tuple[uuid.UUID, ...] = ()


_LOCK_ORDER = sa.text(
    "select user_id, exchange, symbol, side, status, filled_quantity from orders"
    " where id = :order_id for update"
)
_FILL_SEEN = sa.text(
    "select exists (select from order_fills"
    " where order_id = :order_id and exchange_fill_id = :exchange_fill_id)"
)
# Every right-hand side reads the row as it was: the average is weighted by what was filled.
_FILL_ORDER = sa.text(
    """
    update orders set
           filled_quantity = filled_quantity + :quantity,
           average_fill_price = (coalesce(average_fill_price, 0) * filled_quantity
                                 + :price * :quantity) / (filled_quantity + :quantity),
           status = case when filled_quantity + :quantity = quantity
                         then 'filled' else 'partially_filled' end,
           closed_at = case when filled_quantity + :quantity = quantity then :filled_at end
     where id = :order_id and status = any(:open) and filled_quantity + :quantity <= quantity
    returning status, filled_quantity
    """
)
_RECORD_FILL = sa.text(
    "insert into order_fills (user_id, order_id, exchange_fill_id, quantity, price, fee,"
    " filled_at) values (:user_id, :order_id, :exchange_fill_id, :quantity, :price, :fee,"
    " :filled_at)"
)
# One position per (user, exchange, symbol) is open at a time: its changes are serialized.
_LOCK_POSITION = sa.text(
    "select pg_advisory_xact_lock(hashtextextended("
    "'positions:' || :user_id || ':' || :exchange || ':' || :symbol, 0))"
)
_FIND_POSITION = sa.text(
    "select id, side, quantity from positions where user_id = :user_id and exchange = :exchange"
    " and symbol = :symbol and status = 'open' for update"
)
_OPEN_POSITION = sa.text(
    """
    with position as (
        insert into positions (user_id, exchange, symbol, side, quantity, average_entry_price,
                               opened_at)
        values (:user_id, :exchange, :symbol, :side, :quantity, :price, :filled_at)
        returning id
    ), trade as (
        insert into trades (user_id, order_id, exchange, symbol, side, entry_time, entry_price,
                            quantity, fees, realized_pnl)
        values (:user_id, :order_id, :exchange, :symbol, :side, :filled_at, :price, :quantity,
                :fee, 0 - :fee)
        returning id
    )
    select (select id from position) as position_id, (select id from trade) as trade_id
    """
)
_ADD = sa.text(
    """
    with position as (
        update positions set
               average_entry_price = (average_entry_price * quantity + :price * :quantity)
                                     / (quantity + :quantity),
               quantity = quantity + :quantity
         where id = :position_id
        returning id
    )
    update trades set
           entry_price = (entry_price * quantity + :price * :quantity) / (quantity + :quantity),
           quantity = quantity + :quantity,
           fees = fees + :fee,
           realized_pnl = realized_pnl - :fee
     where user_id = :user_id and exchange = :exchange and symbol = :symbol and status = 'open'
       and exists (select from position)
    returning id
    """
)
# Average-cost accounting: an exit realizes (exit price - the position's average entry) times
# the quantity, signed by the side, minus its fee. Trade and position close together: what a
# trade has left to exit is what its position holds.
_REDUCE = sa.text(
    """
    with position as (
        update positions set
               quantity = quantity - :quantity,
               status = case when quantity = :quantity then 'closed' else 'open' end,
               closed_at = case when quantity = :quantity then :filled_at end
         where id = :position_id
        returning average_entry_price as entry, side
    )
    update trades t set
           exit_price = (coalesce(t.exit_price, 0) * t.exit_quantity + :price * :quantity)
                        / (t.exit_quantity + :quantity),
           exit_quantity = t.exit_quantity + :quantity,
           fees = t.fees + :fee,
           realized_pnl = t.realized_pnl - :fee
                          + case p.side when 'long' then 1 else -1 end
                            * (:price - p.entry) * :quantity,
           status = case when t.exit_quantity + :quantity = t.quantity
                         then 'closed' else 'open' end,
           exit_time = case when t.exit_quantity + :quantity = t.quantity then :filled_at end
      from position p
     where t.user_id = :user_id and t.exchange = :exchange and t.symbol = :symbol
       and t.status = 'open'
    returning t.id
    """
)
# A fill larger than the position closes it and opens the other side with the rest; the fee
# is shared in proportion. Computed in SQL: NUMERIC keeps every digit, Python's Decimal 28.
_SPLIT = sa.text(
    "select cast(:quantity as numeric) - :held as rest, closing_fee,"
    " cast(:fee as numeric) - closing_fee as opening_fee"
    " from (select round(cast(:fee as numeric) * :held / :quantity, 18) as closing_fee) f"
)


class OrderRepository(Repository[Order]):
    model = Order
    sort = ("created_at", "id")

    def submit(self, *, data: BaseModel | Mapping[str, Any], user_id: uuid.UUID) -> Order:
        """A new order of `user_id`'s (in a user session: the caller's own), status `new`."""
        return self.create(data=data, user_id=user_id)

    def by_status(
        self,
        *,
        status: OrderStatus | str | Sequence[OrderStatus | str],
        user_id: uuid.UUID | None = None,
        limit: int = 50,
        cursor: str | None = None,
        newest_first: bool = True,
    ) -> Page[Order]:
        """Orders in `status` (one or several), keyset-paginated; of `user_id` when given."""
        wanted = [status] if isinstance(status, str) else list(status)
        try:
            statuses = [s.value for s in _STATUSES.validate_python(wanted)]
        except ValidationError as exc:
            error = invalid_input(exc)
            error.field = "status"
            raise error from None
        where: list[sa.ColumnElement[bool]] = [self.column("status").in_(statuses)]
        if user_id is not None:
            where.append(self.column("user_id") == user_id)
        return self.list(where=where, limit=limit, cursor=cursor, newest_first=newest_first)

    def request_cancel(self, *, id: uuid.UUID) -> Order:
        """Ask for the order to be canceled (the owner, in a user session; or the service).
        The database stamps `cancel_requested_at`; asking again changes nothing. A closed order
        is a ConflictError, one that is not there (or not the caller's) a NotFoundError."""
        table = Order.__table__  # type: ignore[attr-defined]
        statement = (
            sa.update(table)
            .where(
                table.c.id == id,
                table.c.cancel_requested_at.is_(None),
                table.c.status.in_(_OPEN_STATUSES),
            )
            .values(cancel_requested_at=sa.func.now())
            .returning(table.c.id)
        )
        with refused_writes():
            self.session.execute(statement)
        order = self.get(id=id)
        if order is None:
            raise NotFoundError(what="order", key=id)
        if order.cancel_requested_at is None:
            raise ConflictError(field="status", rule=f"is {order.status}: only open orders"
                                " can be canceled")  # fmt: skip
        return order

    def cancel_requests(self, *, limit: int = 100) -> list[Order]:
        """Open orders whose owners asked to cancel them, oldest request first (the service's
        queue)."""
        check_limit(limit)
        statement = (
            select(Order)
            .where(
                Order.cancel_requested_at.is_not(None),  # type: ignore[union-attr]
                self.column("status").in_(_OPEN_STATUSES),
            )
            .order_by(self.column("cancel_requested_at"))
            .limit(limit)
        )
        return list(self.session.exec(statement).all())

    def apply_fill(self, *, fill: OrderFillCreate | Mapping[str, Any]) -> AppliedFill:
        """Apply one execution the exchange reported, in one savepoint: the order (filled
        quantity, average price, status), the fill's record, the position and its trade.
        Idempotent per (order, exchange_fill_id): a fill applied before changes nothing.

        A buy adds to a long position (or reduces a short one), a sell the other way round; a
        fill larger than the position it reduces closes it and opens the other side with the
        rest. Refused (ConflictError, nothing written): a fill for a closed order or one that
        would overfill it. Service only."""
        f: Any = validate(OrderFillCreate, fill)
        params = f.model_dump()
        order = self.session.execute(_LOCK_ORDER, params).one_or_none()
        if order is None:
            raise NotFoundError(what="order", key=f.order_id)
        if self.session.execute(_FILL_SEEN, params).scalar_one():
            position = self.session.execute(_FIND_POSITION, dict(order._mapping)).one_or_none()
            return AppliedFill(
                False,
                OrderStatus(order.status),
                order.filled_quantity,
                position.id if position else None,
            )
        with self.session.begin_nested(), refused_writes():
            filled = self.session.execute(
                _FILL_ORDER, {**params, "open": _OPEN_STATUSES}
            ).one_or_none()
            if filled is None:
                rule = (
                    f"would exceed the order's quantity (filled: {order.filled_quantity})"
                    if order.status in _OPEN_STATUSES
                    else f"cannot be applied: the order is {order.status}"
                )
                raise ConflictError(field="quantity", rule=rule, constraint="orders")
            self.session.execute(_RECORD_FILL, {**params, "user_id": order.user_id})
            position_id, trades = self._move_position(order, f)
        return AppliedFill(
            True, OrderStatus(filled.status), filled.filled_quantity, position_id, trades
        )

    def _move_position(
        self, order: sa.Row[Any], fill: OrderFillCreate
    ) -> tuple[uuid.UUID | None, tuple[uuid.UUID, ...]]:
        where = {"user_id": str(order.user_id), "exchange": order.exchange, "symbol": order.symbol}
        self.session.execute(_LOCK_POSITION, where)
        position = self.session.execute(_FIND_POSITION, where).one_or_none()
        side = PositionSide.LONG if order.side == TradeSide.BUY else PositionSide.SHORT
        base = {
            **where,
            "user_id": order.user_id,
            "order_id": fill.order_id,
            "price": fill.price,
            "filled_at": fill.filled_at,
        }
        if position is None:
            return self._open(base, side, fill.quantity, fill.fee)
        moved = {**base, "position_id": position.id}
        if position.side == side:
            trades = self.session.execute(
                _ADD, {**moved, "quantity": fill.quantity, "fee": fill.fee}
            ).scalars()
            return position.id, tuple(trades)
        if fill.quantity <= position.quantity:  # exact: both Decimals as stored
            trades = self.session.execute(
                _REDUCE, {**moved, "quantity": fill.quantity, "fee": fill.fee}
            ).scalars()
            closed = fill.quantity == position.quantity
            return (None if closed else position.id), tuple(trades)
        rest, closing_fee, opening_fee = self.session.execute(
            _SPLIT, {"quantity": fill.quantity, "held": position.quantity, "fee": fill.fee}
        ).one()
        closed_trades = tuple(
            self.session.execute(
                _REDUCE, {**moved, "quantity": position.quantity, "fee": closing_fee}
            ).scalars()
        )
        opened, new_trades = self._open(base, side, rest, opening_fee)
        return opened, closed_trades + new_trades

    def _open(
        self, base: dict[str, Any], side: PositionSide, quantity: Decimal, fee: Decimal
    ) -> tuple[uuid.UUID, tuple[uuid.UUID, ...]]:
        row = self.session.execute(
            _OPEN_POSITION, {**base, "side": side.value, "quantity": quantity, "fee": fee}
        ).one()
        return row.position_id, (row.trade_id,)


class OrderFillRepository(Repository[OrderFill]):
    model = OrderFill
    sort = ("filled_at", "id")


# -- positions and trades --------------------------------------------------------------------


class PositionRepository(Repository[Position]):
    model = Position
    sort = ("opened_at", "id")

    def open_positions(self, *, user_id: uuid.UUID | None = None) -> list[Position]:
        """Open positions (of `user_id` when given; in a user session the caller's), by
        exchange and symbol: one probe of the open-position index per user."""
        statement = select(Position).where(self.column("status") == "open")
        if user_id is not None:
            statement = statement.where(Position.user_id == user_id)
        statement = statement.order_by(*(self.column(c) for c in ("user_id", "exchange", "symbol")))
        return list(self.session.exec(statement).all())


# Everything from one ordered pass over (user_id, exit_time, id), which holds realized_pnl too:
# exit_time is set exactly when a trade is closed, so the range selects closed trades.
_STATISTICS = sa.text(
    """
    with ordered as (
        select pnl, exit_time, equity,
               max(equity) over (order by exit_time, id rows unbounded preceding) as peak
          from (select realized_pnl as pnl, exit_time, id,
                       sum(realized_pnl) over (order by exit_time, id rows unbounded preceding)
                         as equity
                  from trades
                 where user_id = :user_id and exit_time >= :since and exit_time < :until) t
    ), totals as (
        select count(*) as trades,
               count(*) filter (where pnl > 0) as wins,
               count(*) filter (where pnl < 0) as losses,
               coalesce(sum(pnl), 0) as total_pnl,
               round(avg(pnl), 18) as average_pnl,
               round(avg(pnl) filter (where pnl > 0), 18) as average_win,
               round(avg(pnl) filter (where pnl < 0), 18) as average_loss,
               coalesce(sum(pnl) filter (where pnl > 0), 0) as gross_win,
               -sum(pnl) filter (where pnl < 0) as gross_loss,
               max(pnl) as best_trade,
               min(pnl) as worst_trade,
               coalesce(max(greatest(peak, 0) - equity), 0) as max_drawdown
          from ordered
    ), per_day as (
        select date_bin('1 day', exit_time, :origin) as day, sum(pnl) as pnl
          from ordered group by 1
    ), daily as (
        select coalesce(p.pnl, 0) as r
          from generate_series(date_bin('1 day', cast(:since as timestamptz), :origin),
                               date_bin('1 day', cast(:until as timestamptz)
                                                 - interval '1 microsecond', :origin),
                               interval '1 day') as d(day)
          left join per_day p on p.day = d.day
    ), ratios as (
        select count(*) as days, avg(r) as mean, stddev_samp(r) as deviation,
               sqrt(avg(least(r, 0) ^ 2)) as downside
          from daily
    )
    select t.trades, t.wins, t.losses,
           case when t.trades > 0 then t.wins::float8 / t.trades end as win_rate,
           t.total_pnl, t.average_pnl, t.average_win, t.average_loss,
           case when t.gross_loss > 0 then (t.gross_win / t.gross_loss)::float8 end
             as profit_factor,
           t.best_trade, t.worst_trade, t.max_drawdown,
           r.days,
           case when r.days > 1 and r.deviation > 0
                then (r.mean / r.deviation * sqrt(365::numeric))::float8 end as sharpe_ratio,
           case when r.days > 1 and r.downside > 0
                then (r.mean / r.downside * sqrt(365::numeric))::float8 end as sortino_ratio
      from totals t cross join ratios r
    """
)
#: UTC midnight: days are UTC calendar days.
_DAY_ORIGIN = datetime.fromisoformat("2000-01-01T00:00:00+00:00")


class TradeRepository(Repository[Trade]):
    model = Trade
    sort = ("entry_time", "id")

    def statistics(
        self, *, user_id: uuid.UUID, since: datetime, until: datetime
    ) -> TradeStatistics:
        """Statistics of `user_id`'s trades closed in [since, until), in one SQL statement
        (see TradeStatistics for every definition, daily returns included). In a user session
        another user's id finds nothing."""
        params = {**period(since, until), "user_id": user_id, "origin": _DAY_ORIGIN}
        row = self.session.execute(_STATISTICS, params).mappings().one()
        return TradeStatistics.model_validate(dict(row))


# -- daily performance -----------------------------------------------------------------------

_REFRESH = sa.text("select private.refresh_daily_performance(:first_day, :last_day, :user_id)")


class DailyPerformanceRepository(Repository[DailyPerformance]):
    model = DailyPerformance
    sort = ("day", "id")

    def refresh(self, *, first_day: date, last_day: date, user_id: uuid.UUID | None = None) -> int:
        """Recompute the days from `first_day` to `last_day` (inclusive, UTC) from closed
        trades, for one user or all: rows written or removed (0 when nothing changed). In SQL,
        idempotent; service only. Ending equity is cumulative: after changing trades of day d,
        refresh from d onward."""
        if last_day < first_day:
            raise InvalidInputError(field="last_day", rule="must not be before first_day")
        params = {"first_day": first_day, "last_day": last_day, "user_id": user_id}
        with refused_writes():
            return int(self.session.execute(_REFRESH, params).scalar_one())

    def days(
        self, *, user_id: uuid.UUID, first_day: date, last_day: date
    ) -> list[DailyPerformance]:
        """`user_id`'s days from `first_day` to `last_day` (inclusive), oldest first."""
        statement = (
            select(DailyPerformance)
            .where(
                DailyPerformance.user_id == user_id,
                DailyPerformance.day >= first_day,
                DailyPerformance.day <= last_day,
            )
            .order_by(DailyPerformance.day)  # type: ignore[arg-type]
        )
        return list(self.session.exec(statement).all())
