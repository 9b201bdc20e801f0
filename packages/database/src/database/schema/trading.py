"""Trading: orders users submit, the fills the service applies to them, the trades and positions
those fills make, daily performance computed from trades, and users' backtest results.

Who writes what: a user submits orders and may ask to cancel them (user-submitted); everything
else about orders, fills, trades, positions and daily performance is the service's, and each
user reads their own (user-readable). Backtest results are the user's own (user-owned).

Amounts: quantities are in the base asset, prices, fees and PnL in the quote currency.
"""

import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Self

import sqlalchemy as sa
from pydantic import AwareDatetime, StrictInt, StrictStr, model_validator
from pydantic import Field as PydanticField
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from database.errors import describe_pattern
from database.schema.base import (
    AccessClass,
    CreatedAtMixin,
    IdMixin,
    OwnerRequest,
    Page,
    TimestampsMixin,
    access_info,
    check,
    document_check,
    unset,
)
from database.schema.documents import DocDecimal, Document
from database.schema.rules import Int, Text
from database.schema.types import (
    NAME_PATTERN,
    PNL_SQL_TYPE,
    PRICE_DIGITS,
    PRICE_SCALE,
    SYMBOL_PATTERN,
    Amount,
    Name,
    Pnl,
    Price,
    Size,
    Symbol,
    Timeframe,
    TradeSide,
)

_TEXT: Any = sa.Text
_TS: Any = sa.DateTime(timezone=True)
_NUM = sa.Numeric(PRICE_DIGITS, PRICE_SCALE)
_SIZE = sa.Numeric(30, 18)

#: Open orders one user may have at a time (new, accepted or partly filled), counted by the
#: database; closed orders do not count.
MAX_OPEN_ORDERS = 200
MAX_BACKTESTS_PER_USER = 100
MAX_BACKTEST_TRADES = 5_000
MAX_EQUITY_POINTS = 5_000
MAX_STRATEGY_PARAMETERS = 50


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"  # needs limit_price
    STOP = "stop"  # needs stop_price; becomes a market order when it triggers
    STOP_LIMIT = "stop_limit"  # needs both


class TimeInForce(StrEnum):
    GTC = "gtc"  # good till canceled
    IOC = "ioc"  # immediate or cancel: what is not filled at once is canceled
    FOK = "fok"  # fill or kill: all at once or nothing
    DAY = "day"  # expires at the end of the exchange's trading day


class OrderStatus(StrEnum):
    """An order's life: `new` (submitted, not yet at the exchange) -> `accepted` (resting at
    the exchange) -> `partially_filled` -> `filled`; or it ends `canceled`, `rejected` (by the
    exchange or our risk checks) or `expired` (its time in force ran out)."""

    NEW = "new"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"


#: States in which an order can still trade, be canceled, and counts against the quota.
OPEN_ORDER_STATUSES = (OrderStatus.NEW, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED)
_OPEN_SQL = f"status in ({', '.join(repr(s.value) for s in OPEN_ORDER_STATUSES)})"
_FINAL_SQL = f"status not in ({', '.join(repr(s.value) for s in OPEN_ORDER_STATUSES)})"


class PositionSide(StrEnum):
    LONG = "long"
    SHORT = "short"


class TradeStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


PositionStatus = TradeStatus

CLIENT_ORDER_ID_PATTERN = describe_pattern(
    "^[A-Za-z0-9_-]{1,36}$", "must be 1-36 letters, digits, _ or -"
)
ClientOrderId = Annotated[str, Text(pattern=CLIENT_ORDER_ID_PATTERN)]
ExchangeId = Annotated[str, Text(min_length=1, max_length=128)]


# -- orders ----------------------------------------------------------------------------------


class OrderBase(SQLModel):
    exchange: Name = Field(sa_type=_TEXT)
    symbol: Symbol = Field(sa_type=_TEXT)
    order_type: OrderType = Field(sa_type=_TEXT)
    side: TradeSide = Field(sa_type=_TEXT)
    quantity: Size = Field(sa_type=_SIZE)
    limit_price: Price | None = Field(default=None, sa_type=_NUM)
    stop_price: Price | None = Field(default=None, sa_type=_NUM)
    time_in_force: TimeInForce = Field(
        default=TimeInForce.GTC, sa_type=_TEXT, sa_column_kwargs={"server_default": "gtc"}
    )
    # The signal the order acts on, if any.
    signal_id: uuid.UUID | None = Field(
        default=None, foreign_key="trading_signals.id", ondelete="SET NULL", index=True
    )
    # The client's own reference: submitting the same one twice is refused (idempotent submit).
    client_order_id: ClientOrderId | None = Field(default=None, sa_type=_TEXT)

    @model_validator(mode="after")
    def _prices_match_type(self) -> Self:
        needs_limit = self.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        needs_stop = self.order_type in (OrderType.STOP, OrderType.STOP_LIMIT)
        if needs_limit != (self.limit_price is not None):
            raise ValueError(f"a {self.order_type} order {'needs' if needs_limit else 'takes no'}"
                             " limit_price")  # fmt: skip
        if needs_stop != (self.stop_price is not None):
            raise ValueError(f"a {self.order_type} order {'needs' if needs_stop else 'takes no'}"
                             " stop_price")  # fmt: skip
        return self


# Submitted by its owner (the Create schema's columns only; status starts `new` by the server's
# default), worked by the service (status, fills, exchange id, closing). The owner reads own
# orders and may request cancellation of an open one (cancel_requested_at, stamped by the
# database); nobody but the service deletes.
class Order(TimestampsMixin, OrderBase, IdMixin, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        # Leads with user_id: the RLS policy column, "my orders by status", the open-order quota.
        sa.Index("ix_orders_user_id_status_created_at_id", "user_id", "status", "created_at", "id"),
        # The service's queues: orders by status, oldest first.
        sa.Index("ix_orders_status_created_at_id", "status", "created_at", "id"),
        sa.Index(
            "ix_orders_cancel_requested_at",
            "cancel_requested_at",
            postgresql_where=sa.text(f"cancel_requested_at is not null and {_OPEN_SQL}"),
        ),
        sa.UniqueConstraint("user_id", "client_order_id"),
        check(
            "(order_type in ('limit', 'stop_limit')) = (limit_price is not null)"
            " and (order_type in ('stop', 'stop_limit')) = (stop_price is not null)",
            "prices_match_type",
        ),
        check("filled_quantity <= quantity", "filled_within_quantity"),
        check("(filled_quantity > 0) = (average_fill_price is not null)", "fill_price_when_filled"),
        check(
            "(status not in ('new', 'accepted') or filled_quantity = 0)"
            " and (status <> 'partially_filled' or filled_quantity < quantity)"
            " and (status not in ('partially_filled', 'filled') or filled_quantity > 0)"
            " and (status <> 'filled' or filled_quantity = quantity)",
            "status_matches_fills",
        ),
        check(f"({_FINAL_SQL}) = (closed_at is not null)", "closed_when_final"),
        access_info(
            AccessClass.USER_SUBMITTED,
            owner="user_id",
            quota=MAX_OPEN_ORDERS,
            quota_where=_OPEN_SQL,
            noun=("open order", "open orders"),
            request=OwnerRequest(column="cancel_requested_at", when=_OPEN_SQL),
        ),
    )

    user_id: uuid.UUID = Field(foreign_key="auth.users.id", ondelete="CASCADE")
    status: OrderStatus = Field(
        default=OrderStatus.NEW, sa_type=_TEXT, sa_column_kwargs={"server_default": "new"}
    )
    exchange_order_id: ExchangeId | None = Field(default=None, sa_type=_TEXT)
    filled_quantity: Amount = Field(
        default=Decimal(0), sa_type=_SIZE, sa_column_kwargs={"server_default": "0"}
    )
    average_fill_price: Price | None = Field(default=None, sa_type=_NUM)
    cancel_requested_at: AwareDatetime | None = Field(default=None, sa_type=_TS)
    closed_at: AwareDatetime | None = Field(default=None, sa_type=_TS)


# What a user submits.
class OrderCreate(OrderBase):
    pass


# What the service changes as the exchange reports (the owner's one change is a cancel
# request: OrderRepository.request_cancel).
class OrderUpdate(SQLModel):
    status: OrderStatus = unset()
    exchange_order_id: ExchangeId | None = unset()
    filled_quantity: Amount = unset()
    average_fill_price: Price | None = unset()
    closed_at: AwareDatetime | None = unset()


class OrderPublic(OrderBase):
    id: uuid.UUID
    user_id: uuid.UUID
    status: OrderStatus
    exchange_order_id: str | None
    filled_quantity: Decimal
    average_fill_price: Decimal | None
    cancel_requested_at: datetime | None
    closed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class OrdersPublic(Page[OrderPublic]):
    pass


# -- order_fills -----------------------------------------------------------------------------


class OrderFillBase(SQLModel):
    order_id: uuid.UUID = Field(foreign_key="orders.id", ondelete="CASCADE")
    # The exchange's id of the execution: a fill reported twice is applied once.
    exchange_fill_id: ExchangeId = Field(sa_type=_TEXT)
    quantity: Size = Field(sa_type=_SIZE)
    price: Price = Field(sa_type=_NUM)
    fee: Amount = Field(default=Decimal(0), sa_type=_NUM, sa_column_kwargs={"server_default": "0"})
    filled_at: AwareDatetime = Field(sa_type=_TS)


# One row per execution the exchange reported, written by the service when it applies it
# (OrderRepository.apply_fill); the unique key makes applying a fill idempotent, and the rows
# are the order's audit trail. The owner (copied from the order) reads own fills.
class OrderFill(CreatedAtMixin, OrderFillBase, IdMixin, table=True):
    __tablename__ = "order_fills"
    __table_args__ = (
        sa.UniqueConstraint("order_id", "exchange_fill_id"),
        sa.Index("ix_order_fills_user_id_filled_at", "user_id", "filled_at"),
        access_info(AccessClass.USER_READABLE, owner="user_id"),
    )

    user_id: uuid.UUID = Field(foreign_key="auth.users.id", ondelete="CASCADE")


# What the exchange reports (the service applies it; the owner comes from the order).
class OrderFillCreate(OrderFillBase):
    pass


class OrderFillPublic(OrderFillBase):
    id: uuid.UUID
    user_id: uuid.UUID
    created_at: datetime


# -- trades ----------------------------------------------------------------------------------


class TradeBase(SQLModel):
    # The order that opened the trade.
    order_id: uuid.UUID | None = Field(
        default=None, foreign_key="orders.id", ondelete="SET NULL", index=True
    )
    exchange: Name = Field(sa_type=_TEXT)
    symbol: Symbol = Field(sa_type=_TEXT)
    side: PositionSide = Field(sa_type=_TEXT)
    entry_time: AwareDatetime = Field(sa_type=_TS)
    # Average over the entries; quantity is everything entered.
    entry_price: Price = Field(sa_type=_NUM)
    quantity: Size = Field(sa_type=_SIZE)
    # Average over the exits so far, and how much has been exited.
    exit_quantity: Amount = Field(
        default=Decimal(0), sa_type=_SIZE, sa_column_kwargs={"server_default": "0"}
    )
    exit_price: Price | None = Field(default=None, sa_type=_NUM)
    exit_time: AwareDatetime | None = Field(default=None, sa_type=_TS)
    fees: Amount = Field(default=Decimal(0), sa_type=_NUM, sa_column_kwargs={"server_default": "0"})
    # Net: what the exits earned against the average entry, minus every fee paid so far.
    realized_pnl: Pnl = Field(
        default=Decimal(0), sa_type=PNL_SQL_TYPE, sa_column_kwargs={"server_default": "0"}
    )
    status: TradeStatus = Field(
        default=TradeStatus.OPEN, sa_type=_TEXT, sa_column_kwargs={"server_default": "open"}
    )
    strategy: Name | None = Field(default=None, sa_type=_TEXT)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.exit_quantity > self.quantity:
            raise ValueError("exit_quantity must not exceed quantity")
        if (self.exit_quantity > 0) != (self.exit_price is not None):
            raise ValueError("exit_price is set exactly when something was exited")
        closed = self.status is TradeStatus.CLOSED
        if closed != (self.exit_quantity == self.quantity) or closed != (
            self.exit_time is not None
        ):
            raise ValueError("a closed trade is fully exited and has exit_time; an open one not")
        if self.exit_time is not None and self.exit_time < self.entry_time:
            raise ValueError("exit_time must not be before entry_time")
        return self


# A round trip on one (exchange, symbol): opened by the fill that opens a position, closed by
# the fill that closes it. Written by the service, read by its owner.
class Trade(TimestampsMixin, TradeBase, IdMixin, table=True):
    __tablename__ = "trades"
    __table_args__ = (
        # Leads with user_id (the RLS column). Closed trades by exit time, PnL in the index:
        # the statistics read the index alone. exit_time is set exactly when the trade is
        # closed (ck_trades_closed_when_exited), so `exit_time >= t` means closed.
        sa.Index(
            "ix_trades_user_id_exit_time_id",
            "user_id",
            "exit_time",
            "id",
            postgresql_include=["realized_pnl"],
        ),
        # At most one open trade per position (what a fill extends or closes).
        sa.Index(
            "ix_trades_open_user_id_exchange_symbol",
            "user_id",
            "exchange",
            "symbol",
            unique=True,
            postgresql_where=sa.text("status = 'open'"),
        ),
        check("exit_quantity <= quantity", "exit_within_quantity"),
        check("(exit_quantity > 0) = (exit_price is not null)", "exit_price_when_exited"),
        check(
            "(status = 'closed') = (exit_quantity = quantity)"
            " and (status = 'closed') = (exit_time is not null)",
            "closed_when_exited",
        ),
        check("exit_time >= entry_time", "exit_after_entry"),
        access_info(AccessClass.USER_READABLE, owner="user_id"),
    )

    user_id: uuid.UUID = Field(foreign_key="auth.users.id", ondelete="CASCADE")


class TradeCreate(TradeBase):
    pass


class TradeUpdate(SQLModel):
    strategy: Name | None = unset()


class TradePublic(TradeBase):
    id: uuid.UUID
    user_id: uuid.UUID
    created_at: datetime
    updated_at: datetime


class TradesPublic(Page[TradePublic]):
    pass


class TradeStatistics(SQLModel):
    """A user's closed trades (exit time in the period), computed in one SQL statement.

    PnL figures are net of fees, in the quote currency. A win is a trade with PnL > 0, a loss
    one with PnL < 0. `profit_factor` = gross wins / gross losses (null without losses).
    `max_drawdown` is the largest fall of the cumulative PnL curve (trades in exit order,
    starting at 0) from its running peak, in currency (>= 0).

    Daily returns: r_d = (net PnL of the trades closed on UTC day d) / C, for every calendar
    day d the period touches, 0 on days without closed trades, C a constant capital base.
    Sharpe = mean(r) / stddev_samp(r) * sqrt(365); Sortino = mean(r) / sqrt(mean(min(r, 0)^2))
    * sqrt(365) (risk-free rate and target 0; crypto trades every day). C cancels out of both,
    so they are computed from daily PnL and need no account size. Null when undefined (fewer
    than two days, no variation, no down days)."""

    trades: int
    wins: int
    losses: int
    win_rate: float | None
    total_pnl: Decimal
    average_pnl: Decimal | None
    average_win: Decimal | None
    average_loss: Decimal | None
    profit_factor: float | None
    best_trade: Decimal | None
    worst_trade: Decimal | None
    max_drawdown: Decimal
    days: int
    sharpe_ratio: float | None
    sortino_ratio: float | None


# -- positions -------------------------------------------------------------------------------


class PositionBase(SQLModel):
    exchange: Name = Field(sa_type=_TEXT)
    symbol: Symbol = Field(sa_type=_TEXT)
    side: PositionSide = Field(sa_type=_TEXT)
    # What is held now (0 once closed), at the average price it was entered at.
    quantity: Amount = Field(sa_type=_SIZE)
    average_entry_price: Price = Field(sa_type=_NUM)
    opened_at: AwareDatetime = Field(sa_type=_TS)
    closed_at: AwareDatetime | None = Field(default=None, sa_type=_TS)
    status: PositionStatus = Field(
        default=TradeStatus.OPEN, sa_type=_TEXT, sa_column_kwargs={"server_default": "open"}
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        is_open = self.status is TradeStatus.OPEN
        if is_open != (self.quantity > 0) or is_open != (self.closed_at is None):
            raise ValueError("an open position has quantity > 0 and no closed_at; a closed one"
                             " quantity 0 and closed_at")  # fmt: skip
        if self.closed_at is not None and self.closed_at < self.opened_at:
            raise ValueError("closed_at must not be before opened_at")
        return self


# What a user holds on an exchange; written by the service as fills arrive, read by its owner.
class Position(TimestampsMixin, PositionBase, IdMixin, table=True):
    __tablename__ = "positions"
    __table_args__ = (
        # Leads with user_id: the RLS policy column and "my positions, newest first".
        sa.Index("ix_positions_user_id_opened_at", "user_id", "opened_at"),
        # One open position per (user, exchange, symbol); also "my open positions".
        sa.Index(
            "ix_positions_open_user_id_exchange_symbol",
            "user_id",
            "exchange",
            "symbol",
            unique=True,
            postgresql_where=sa.text("status = 'open'"),
        ),
        check(
            "(status = 'open') = (quantity > 0) and (status = 'open') = (closed_at is null)",
            "open_when_held",
        ),
        check("closed_at >= opened_at", "closed_after_opened"),
        access_info(AccessClass.USER_READABLE, owner="user_id"),
    )

    user_id: uuid.UUID = Field(foreign_key="auth.users.id", ondelete="CASCADE")


class PositionCreate(PositionBase):
    pass


class PositionUpdate(SQLModel):
    quantity: Amount = unset()
    average_entry_price: Price = unset()
    closed_at: AwareDatetime | None = unset()
    status: PositionStatus = unset()


class PositionPublic(PositionBase):
    id: uuid.UUID
    user_id: uuid.UUID
    created_at: datetime
    updated_at: datetime


# -- daily_performance -----------------------------------------------------------------------

Count = Annotated[int, Int(ge=0)]


class DailyPerformanceBase(SQLModel):
    day: date  # UTC
    trades: Count
    wins: Count
    losses: Count
    # gross = net + fees; net is what the day's closed trades earned after fees.
    gross_pnl: Pnl = Field(sa_type=PNL_SQL_TYPE)
    net_pnl: Pnl = Field(sa_type=PNL_SQL_TYPE)
    fees: Amount = Field(sa_type=_NUM)
    # Cumulative net PnL of every trade closed up to the end of the day (equity over a
    # zero start: add the account's deposits for its balance).
    ending_equity: Pnl = Field(sa_type=PNL_SQL_TYPE)
    # Largest fall of the day's cumulative PnL (from the day's start) from its running peak.
    max_intraday_drawdown: Amount = Field(sa_type=_NUM)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.wins + self.losses > self.trades:
            raise ValueError("wins + losses must not exceed trades")
        if self.net_pnl != self.gross_pnl - self.fees:
            raise ValueError("net_pnl must equal gross_pnl - fees")
        return self


# Per user and UTC day, computed in SQL from closed trades by
# private.refresh_daily_performance(first_day, last_day[, user]) (service only; idempotent).
class DailyPerformance(TimestampsMixin, DailyPerformanceBase, IdMixin, table=True):
    __tablename__ = "daily_performance"
    __table_args__ = (
        # The natural key; leads with user_id (the RLS policy column).
        sa.UniqueConstraint("user_id", "day"),
        check("wins + losses <= trades", "outcomes_within_trades"),
        check("net_pnl = gross_pnl - fees", "net_is_gross_minus_fees"),
        access_info(AccessClass.USER_READABLE, owner="user_id"),
    )

    user_id: uuid.UUID = Field(foreign_key="auth.users.id", ondelete="CASCADE")


class DailyPerformanceCreate(DailyPerformanceBase):
    pass


class DailyPerformancePublic(DailyPerformanceBase):
    id: uuid.UUID
    user_id: uuid.UUID
    created_at: datetime
    updated_at: datetime


# -- backtest_results: documents a user writes (see database.schema.documents) ---------------

ISO_UTC_PATTERN = describe_pattern(
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]"
    r":[0-5][0-9](\.[0-9]{1,6})?Z$",
    "must be a UTC time such as 2026-01-05T00:00:00Z",
)
PARAMETER_PATTERN = describe_pattern(
    "^[a-z][a-z0-9_]{0,63}$", "must be a lower-case name: letters, digits, _"
)
DocTime = Annotated[StrictStr, Text(pattern=ISO_UTC_PATTERN)]
DocName = Annotated[StrictStr, Text(min_length=1, max_length=64, pattern=NAME_PATTERN)]
DocSymbol = Annotated[StrictStr, Text(min_length=1, max_length=32, pattern=SYMBOL_PATTERN)]
DocParameterName = Annotated[StrictStr, Text(pattern=PARAMETER_PATTERN)]
#: Prices and sizes: positive, to 18 places. Money and figures: either sign, to 8 places.
DocPositive = Annotated[Decimal, DocDecimal, PydanticField(gt=0, le=10**20, decimal_places=18)]
DocMoney = Annotated[Decimal, DocDecimal, PydanticField(ge=-(10**18), le=10**18, decimal_places=8)]
DocFee = Annotated[Decimal, DocDecimal, PydanticField(ge=0, le=10**18, decimal_places=8)]
DocFigure = Annotated[Decimal, DocDecimal, PydanticField(ge=-(10**9), le=10**9, decimal_places=8)]
DocFraction = Annotated[Decimal, DocDecimal, PydanticField(ge=0, le=1, decimal_places=8)]
DocPercent = Annotated[Decimal, DocDecimal, PydanticField(ge=0, le=100, decimal_places=8)]


class StrategyParameter(Document):
    name: DocParameterName
    value: DocFigure


class StrategyConfig(Document):
    """How the backtest was run."""

    strategy: DocName
    exchange: DocName
    symbol: DocSymbol
    timeframe: Timeframe
    start: DocTime
    end: DocTime
    initial_capital: DocPositive
    fee_rate: Annotated[
        Decimal, DocDecimal, PydanticField(ge=0, le=Decimal("0.1"), decimal_places=6)
    ] = Decimal(0)
    parameters: list[StrategyParameter] = PydanticField(
        default_factory=list, max_length=MAX_STRATEGY_PARAMETERS
    )


class BacktestMetrics(Document):
    """What the backtest measured."""

    trade_count: Annotated[StrictInt, Int(ge=0)]
    total_return_pct: DocFigure
    max_drawdown_pct: DocPercent
    final_equity: DocMoney
    annualized_return_pct: DocFigure | None = None
    sharpe_ratio: DocFigure | None = None
    sortino_ratio: DocFigure | None = None
    win_rate: DocFraction | None = None
    profit_factor: DocFigure | None = None


class BacktestTrade(Document):
    side: PositionSide
    entry_time: DocTime
    exit_time: DocTime
    entry_price: DocPositive
    exit_price: DocPositive
    quantity: DocPositive
    pnl: DocMoney
    fees: DocFee = Decimal(0)


class EquityPoint(Document):
    time: DocTime
    equity: DocMoney


BacktestTrades = Annotated[list[BacktestTrade], PydanticField(max_length=MAX_BACKTEST_TRADES)]
EquityCurve = Annotated[list[EquityPoint], PydanticField(max_length=MAX_EQUITY_POINTS)]
BacktestName = Annotated[str, Text(min_length=1, max_length=200)]


class BacktestResultBase(SQLModel):
    name: BacktestName = Field(sa_type=_TEXT)


# A user's own backtest runs (at most MAX_BACKTESTS_PER_USER, counted by the database). Every
# document is validated by the database too: a signed-in user can write them directly.
class BacktestResult(TimestampsMixin, BacktestResultBase, IdMixin, table=True):
    __tablename__ = "backtest_results"
    __table_args__ = (
        # Leads with user_id: the RLS policy column and "my backtests, newest first".
        sa.Index("ix_backtest_results_user_id_created_at", "user_id", "created_at"),
        document_check("strategy_config", StrategyConfig, name="backtest_config"),
        document_check("metrics", BacktestMetrics, name="backtest_metrics"),
        document_check("trades", BacktestTrades, name="backtest_trades"),
        document_check("equity_curve", EquityCurve, name="backtest_equity_curve"),
        access_info(
            AccessClass.USER_OWNED,
            owner="user_id",
            quota=MAX_BACKTESTS_PER_USER,
            noun=("backtest", "backtest results"),
        ),
    )

    user_id: uuid.UUID = Field(foreign_key="auth.users.id", ondelete="CASCADE")
    strategy_config: dict[str, Any] = Field(sa_type=JSONB)
    metrics: dict[str, Any] = Field(sa_type=JSONB)
    trades: list[dict[str, Any]] = Field(
        default_factory=list,
        sa_type=JSONB,
        sa_column_kwargs={"server_default": sa.text("'[]'::jsonb")},
    )
    equity_curve: list[dict[str, Any]] = Field(
        default_factory=list,
        sa_type=JSONB,
        sa_column_kwargs={"server_default": sa.text("'[]'::jsonb")},
    )


class BacktestResultCreate(BacktestResultBase):
    strategy_config: StrategyConfig
    metrics: BacktestMetrics
    trades: BacktestTrades = PydanticField(default_factory=list)
    equity_curve: EquityCurve = PydanticField(default_factory=list)


# A result is what the run produced: only its name changes afterwards.
class BacktestResultUpdate(SQLModel):
    name: BacktestName = unset()


class BacktestResultPublic(BacktestResultBase):
    id: uuid.UUID
    user_id: uuid.UUID
    strategy_config: StrategyConfig
    metrics: BacktestMetrics
    trades: BacktestTrades
    equity_curve: EquityCurve
    created_at: datetime
    updated_at: datetime


class BacktestResultsPublic(Page[BacktestResultPublic]):
    pass
