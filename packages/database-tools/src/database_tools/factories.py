"""factory-boy factories for every table, bound to the current test's session.

Every row a factory makes is validated through the table's Create schema first, so factories
can only produce rows the API would accept. Rows are flushed into the test's session (the
`db_session` fixture), never committed. Fields the Create schema does not carry (user_id,
foreign keys) pass straight to the row.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

import factory
import factory.alchemy
from sqlmodel import Session, SQLModel

from database.schema import (
    Alert,
    AlertCreate,
    AlertEvent,
    AlertEventCreate,
    AlertWebhookSecret,
    AlertWebhookSecretCreate,
    Article,
    ArticleCreate,
    BacktestResult,
    BacktestResultCreate,
    CollectionRun,
    CollectionRunCreate,
    DailyPerformance,
    DailyPerformanceCreate,
    Dex,
    DexCreate,
    DexTrade,
    DexTradeCreate,
    EvaluatorCursor,
    EvaluatorCursorCreate,
    LiquidityZone,
    LiquidityZoneCreate,
    LlmAnalysisLog,
    LlmAnalysisLogCreate,
    MarketData,
    MarketDataCreate,
    MarketEvent,
    MarketEventCreate,
    Ohlcv,
    OhlcvCreate,
    Order,
    OrderCreate,
    OrderFill,
    OrderFillCreate,
    Pool,
    PoolCreate,
    Position,
    PositionCreate,
    Profile,
    ProfileCreate,
    SentimentScore,
    SentimentScoreCreate,
    SmcPattern,
    SmcPatternCreate,
    SystemEvent,
    SystemEventCreate,
    Token,
    TokenCreate,
    Trade,
    TradeCreate,
    TradingSignal,
    TradingSignalCreate,
    WatchlistEntry,
    WatchlistEntryCreate,
    WhaleTransaction,
    WhaleTransactionCreate,
)
from database.schema.base import build_row
from database_tools.identities import create_auth_user

current_session: ContextVar[Session | None] = ContextVar("current_session", default=None)

#: Bars and quotes start here, on every timeframe's grid (a Monday, 00:00 UTC).
EPOCH = datetime(2026, 1, 5, tzinfo=UTC)


def _session() -> Session:
    session = current_session.get()
    if session is None:
        raise RuntimeError("factories need the `db_session` fixture (database_tools.pytest_plugin)")
    return session


def new_auth_user() -> uuid.UUID:
    """An auth.users row in the current test's transaction."""
    return create_auth_user(_session().connection())


def random_address() -> str:
    return "0x" + os.urandom(20).hex()


def tx_hash(n: int) -> str:
    return "0x" + hashlib.sha256(f"tx-{n}".encode()).hexdigest()


class ModelFactory(factory.alchemy.SQLAlchemyModelFactory):  # type: ignore[misc]
    """Base of every table factory: validate through `create_schema`, then flush."""

    create_schema: ClassVar[type[SQLModel]]

    class Meta:
        abstract = True
        sqlalchemy_session_factory = _session
        sqlalchemy_session_persistence = "flush"

    @classmethod
    def _build(cls, model_class: type[SQLModel], *args: Any, **kwargs: Any) -> SQLModel:
        fields = cls.create_schema.model_fields
        extra = {k: kwargs.pop(k) for k in list(kwargs) if k not in fields}
        return build_row(model_class, cls.create_schema.model_validate(kwargs), **extra)

    @classmethod
    def _create(cls, model_class: type[SQLModel], *args: Any, **kwargs: Any) -> SQLModel:
        row = cls._build(model_class, *args, **kwargs)
        session = _session()
        session.add(row)
        session.flush()
        return row


class WhaleTransactionFactory(ModelFactory):
    create_schema = WhaleTransactionCreate

    class Meta:
        model = WhaleTransaction

    hash = factory.Sequence(tx_hash)
    from_address = factory.LazyFunction(random_address)
    to_address = factory.LazyFunction(random_address)
    value_eth = Decimal("1250.5")
    value_usd = Decimal("3751500.00")
    gas_price = 25_000_000_000
    gas_used = 21_000
    block_number = factory.Sequence(lambda n: 19_000_000 + n)
    block_timestamp = factory.Sequence(lambda n: EPOCH + timedelta(seconds=12 * n))
    whale_score = Decimal("0.8125")


class DexFactory(ModelFactory):
    create_schema = DexCreate

    class Meta:
        model = Dex

    id = factory.Sequence(lambda n: f"dex_{n}")
    name = factory.Sequence(lambda n: f"Dex {n}")
    network = "eth"


class TokenFactory(ModelFactory):
    create_schema = TokenCreate

    class Meta:
        model = Token

    network = "eth"
    address = factory.LazyFunction(random_address)
    symbol = factory.Sequence(lambda n: f"TK{n}")
    name = factory.Sequence(lambda n: f"Token {n}")
    decimals = 18


class PoolFactory(ModelFactory):
    create_schema = PoolCreate

    class Meta:
        model = Pool
        exclude = ("dex", "base_token", "quote_token")

    dex = factory.SubFactory(DexFactory)
    base_token = factory.SubFactory(TokenFactory)
    quote_token = factory.SubFactory(TokenFactory)
    network = "eth"
    address = factory.LazyFunction(random_address)
    dex_id = factory.SelfAttribute("dex.id")
    base_token_id = factory.SelfAttribute("base_token.id")
    quote_token_id = factory.SelfAttribute("quote_token.id")
    reserve_usd = Decimal("1000000.00")


class MarketDataFactory(ModelFactory):
    create_schema = MarketDataCreate

    class Meta:
        model = MarketData

    exchange = "binance"
    symbol = "ETH/USDT"
    price = Decimal("3000.5")
    bid = Decimal("3000.4")
    ask = Decimal("3000.6")
    volume_24h = Decimal("123456.789")
    change_24h_pct = Decimal("-1.25")
    observed_at = factory.Sequence(lambda n: EPOCH + timedelta(seconds=n))


class OhlcvFactory(ModelFactory):
    create_schema = OhlcvCreate

    class Meta:
        model = Ohlcv

    source = "binance"
    symbol = "ETH/USDT"
    timeframe = "1m"
    bucket_start = factory.Sequence(lambda n: EPOCH + timedelta(minutes=n))
    open = Decimal("3000")
    high = Decimal("3010")
    low = Decimal("2990")
    close = Decimal("3005")
    volume = Decimal("12.5")


class LiquidityZoneFactory(ModelFactory):
    create_schema = LiquidityZoneCreate

    class Meta:
        model = LiquidityZone

    exchange = "binance"
    symbol = "ETH/USDT"
    price_level = factory.Sequence(lambda n: Decimal(2900 + n))
    side = "bid"
    size = Decimal("150.25")
    strength = Decimal("0.7")


class SmcPatternFactory(ModelFactory):
    create_schema = SmcPatternCreate

    class Meta:
        model = SmcPattern

    exchange = "binance"
    symbol = "ETH/USDT"
    pattern_type = "order_block"
    time_frame = "1h"
    price_level = Decimal("2950")
    confidence_score = Decimal("0.66")
    pattern_metadata = factory.LazyFunction(lambda: {"origin": "factory"})


class ProfileFactory(ModelFactory):
    create_schema = ProfileCreate

    class Meta:
        model = Profile

    id = factory.LazyFunction(new_auth_user)
    username = factory.Sequence(lambda n: f"user_{n}")
    display_name = factory.Sequence(lambda n: f"User {n}")


class WatchlistEntryFactory(ModelFactory):
    create_schema = WatchlistEntryCreate

    class Meta:
        model = WatchlistEntry

    user_id = factory.LazyFunction(new_auth_user)
    kind = "address"
    reference = factory.LazyFunction(random_address)
    label = "cold wallet"


class AlertFactory(ModelFactory):
    create_schema = AlertCreate

    class Meta:
        model = Alert

    user_id = factory.LazyFunction(new_auth_user)
    name = factory.Sequence(lambda n: f"whales {n}")
    alert_type = "whale_transaction"
    conditions = factory.LazyFunction(lambda: {"min_value_eth": "100"})


class AlertWebhookSecretFactory(ModelFactory):
    create_schema = AlertWebhookSecretCreate

    class Meta:
        model = AlertWebhookSecret
        exclude = ("alert",)

    alert = factory.SubFactory(AlertFactory)
    alert_id = factory.SelfAttribute("alert.id")
    secret = factory.LazyFunction(lambda: os.urandom(32).hex())


class AlertEventFactory(ModelFactory):
    create_schema = AlertEventCreate

    class Meta:
        model = AlertEvent
        exclude = ("alert", "whale_transaction")

    alert = factory.SubFactory(AlertFactory)
    whale_transaction = factory.SubFactory(WhaleTransactionFactory)
    alert_id = factory.SelfAttribute("alert.id")
    user_id = factory.SelfAttribute("alert.user_id")
    source = "whale_transactions"
    source_id = factory.SelfAttribute("whale_transaction.id")
    payload = factory.LazyFunction(lambda: {"value_eth": "1250.5"})


class SystemEventFactory(ModelFactory):
    create_schema = SystemEventCreate

    class Meta:
        model = SystemEvent

    event_type = "ingest.failed"
    severity = "error"
    message = "upstream returned 429"
    context = factory.LazyFunction(lambda: {"attempt": 3})


class CollectionRunFactory(ModelFactory):
    create_schema = CollectionRunCreate

    class Meta:
        model = CollectionRun

    collector = "etherscan"
    status = "running"


class EvaluatorCursorFactory(ModelFactory):
    create_schema = EvaluatorCursorCreate

    class Meta:
        model = EvaluatorCursor

    name = factory.Sequence(lambda n: f"stream.{n}")
    # Halfway through a window: rows of transactions 100-104 done, 105-109 being read.
    done_snapshot = "100:105:"
    window_snapshot = "100:110:"
    after_xact_id = 106
    after_id = factory.LazyFunction(uuid.uuid4)


class DexTradeFactory(ModelFactory):
    create_schema = DexTradeCreate

    class Meta:
        model = DexTrade
        exclude = ("pool",)

    pool = factory.SubFactory(PoolFactory)
    network = "eth"
    pool_id = factory.SelfAttribute("pool.id")
    tx_hash = factory.Sequence(tx_hash)
    log_index = 0
    block_number = factory.Sequence(lambda n: 19_000_000 + n)
    block_timestamp = factory.Sequence(lambda n: EPOCH + timedelta(seconds=12 * n))
    side = "buy"
    base_amount = Decimal("1.5")
    quote_amount = Decimal("4500")
    price_usd = Decimal("3000")
    volume_usd = Decimal("4500.00")
    trader_address = factory.LazyFunction(random_address)


class ArticleFactory(ModelFactory):
    create_schema = ArticleCreate

    class Meta:
        model = Article

    source = "coindesk"
    url = factory.Sequence(lambda n: f"https://news.example.com/articles/{n}")
    title = "Ether rallies as staking inflows grow"
    content = "Staking deposits rose for a third week while exchange balances fell."
    published_at = factory.Sequence(lambda n: EPOCH + timedelta(minutes=n))
    symbols = factory.LazyFunction(lambda: ["ETH"])
    language = "en"


class SentimentScoreFactory(ModelFactory):
    create_schema = SentimentScoreCreate

    class Meta:
        model = SentimentScore
        exclude = ("article",)

    article = factory.SubFactory(ArticleFactory)
    article_id = factory.SelfAttribute("article.id")
    score = Decimal("0.6")
    confidence = Decimal("0.8")
    positive_keywords = factory.LazyFunction(lambda: ["rally", "inflows"])
    negative_keywords = factory.LazyFunction(list)
    model = factory.Sequence(lambda n: f"finbert-{n}")
    scored_at = factory.Sequence(lambda n: EPOCH + timedelta(minutes=n, seconds=30))


class MarketEventFactory(ModelFactory):
    create_schema = MarketEventCreate

    class Meta:
        model = MarketEvent
        exclude = ("article",)

    article = factory.SubFactory(ArticleFactory)
    article_id = factory.SelfAttribute("article.id")
    event_type = "listing"
    severity = "medium"
    summary = "Listed on a major exchange"
    keywords = factory.LazyFunction(lambda: ["listing"])
    symbols = factory.LazyFunction(lambda: ["ETH"])
    occurred_at = factory.Sequence(lambda n: EPOCH + timedelta(minutes=n))


class TradingSignalFactory(ModelFactory):
    create_schema = TradingSignalCreate

    class Meta:
        model = TradingSignal

    exchange = "binance"
    symbol = "ETH/USDT"
    timeframe = "1h"
    signal = "buy"
    composite_score = Decimal("0.42")
    sentiment_component = Decimal("0.5")
    technical_component = Decimal("0.3")
    regime_component = Decimal("0.1")
    explanation = "sentiment and momentum agree"
    generated_at = factory.Sequence(lambda n: EPOCH + timedelta(hours=n))


class OrderFactory(ModelFactory):
    create_schema = OrderCreate

    class Meta:
        model = Order

    user_id = factory.LazyFunction(new_auth_user)
    exchange = "binance"
    symbol = "ETH/USDT"
    order_type = "limit"
    side = "buy"
    quantity = Decimal("2")
    limit_price = Decimal("3000")
    time_in_force = "gtc"


class OrderFillFactory(ModelFactory):
    create_schema = OrderFillCreate

    class Meta:
        model = OrderFill
        exclude = ("order",)

    order = factory.SubFactory(OrderFactory)
    order_id = factory.SelfAttribute("order.id")
    user_id = factory.SelfAttribute("order.user_id")
    exchange_fill_id = factory.Sequence(lambda n: f"fill-{n}")
    quantity = Decimal("1")
    price = Decimal("3000")
    fee = Decimal("1.5")
    filled_at = factory.Sequence(lambda n: EPOCH + timedelta(seconds=n))


class TradeFactory(ModelFactory):
    create_schema = TradeCreate

    class Meta:
        model = Trade

    user_id = factory.LazyFunction(new_auth_user)
    exchange = "binance"
    symbol = factory.Sequence(lambda n: f"T{n}/USDT")  # one open trade per symbol
    side = "long"
    entry_time = EPOCH
    entry_price = Decimal("3000")
    quantity = Decimal("1")
    fees = Decimal("3")
    realized_pnl = Decimal("-3")
    status = "open"
    strategy = "momentum"


class PositionFactory(ModelFactory):
    create_schema = PositionCreate

    class Meta:
        model = Position

    user_id = factory.LazyFunction(new_auth_user)
    exchange = "binance"
    symbol = factory.Sequence(lambda n: f"P{n}/USDT")  # one open position per symbol
    side = "long"
    quantity = Decimal("1")
    average_entry_price = Decimal("3000")
    opened_at = EPOCH
    status = "open"


class DailyPerformanceFactory(ModelFactory):
    create_schema = DailyPerformanceCreate

    class Meta:
        model = DailyPerformance

    user_id = factory.LazyFunction(new_auth_user)
    day = factory.Sequence(lambda n: EPOCH.date() + timedelta(days=n))
    trades = 4
    wins = 3
    losses = 1
    gross_pnl = Decimal("120")
    net_pnl = Decimal("110")
    fees = Decimal("10")
    ending_equity = Decimal("1110")
    max_intraday_drawdown = Decimal("25")


def backtest_config() -> dict[str, Any]:
    return {
        "strategy": "sma_cross",
        "exchange": "binance",
        "symbol": "ETH/USDT",
        "timeframe": "1h",
        "start": "2026-01-01T00:00:00Z",
        "end": "2026-02-01T00:00:00Z",
        "initial_capital": "10000",
        "fee_rate": "0.001",
        "parameters": [{"name": "fast", "value": 10}, {"name": "slow", "value": 50}],
    }


class BacktestResultFactory(ModelFactory):
    create_schema = BacktestResultCreate

    class Meta:
        model = BacktestResult

    user_id = factory.LazyFunction(new_auth_user)
    name = factory.Sequence(lambda n: f"backtest {n}")
    strategy_config = factory.LazyFunction(backtest_config)
    metrics = factory.LazyFunction(
        lambda: {
            "trade_count": 1,
            "total_return_pct": "1.25",
            "max_drawdown_pct": "0.8",
            "final_equity": "10125",
            "sharpe_ratio": "1.4",
            "win_rate": "1",
        }
    )
    trades = factory.LazyFunction(
        lambda: [
            {
                "side": "long",
                "entry_time": "2026-01-02T00:00:00Z",
                "exit_time": "2026-01-03T00:00:00Z",
                "entry_price": "3000",
                "exit_price": "3040",
                "quantity": "3.2",
                "pnl": "125",
                "fees": "3",
            }
        ]
    )
    equity_curve = factory.LazyFunction(
        lambda: [
            {"time": "2026-01-01T00:00:00Z", "equity": "10000"},
            {"time": "2026-01-03T00:00:00Z", "equity": "10125"},
        ]
    )


class LlmAnalysisLogFactory(ModelFactory):
    create_schema = LlmAnalysisLogCreate

    class Meta:
        model = LlmAnalysisLog

    model = "gpt-4o-mini"
    purpose = "trade_decision"
    symbol = "BTC/USDT"
    prompt_tokens = 1200
    completion_tokens = 150
    latency_ms = 850
    cost_usd = Decimal("0.00042")
    decision = "hold"
    requested_at = factory.Sequence(lambda n: EPOCH + timedelta(minutes=n))
    request = factory.LazyFunction(lambda: {"messages": [{"role": "user", "content": "BTC?"}]})
    response = factory.LazyFunction(lambda: {"choices": [{"text": "hold"}]})


#: Table name -> factory: the RLS matrix and contract tests walk every table through this.
FACTORIES: dict[str, type[ModelFactory]] = {
    f._meta.model.__tablename__: f
    for f in (
        WhaleTransactionFactory,
        DexFactory,
        TokenFactory,
        PoolFactory,
        MarketDataFactory,
        OhlcvFactory,
        LiquidityZoneFactory,
        SmcPatternFactory,
        ProfileFactory,
        WatchlistEntryFactory,
        AlertFactory,
        AlertWebhookSecretFactory,
        AlertEventFactory,
        SystemEventFactory,
        CollectionRunFactory,
        EvaluatorCursorFactory,
        DexTradeFactory,
        ArticleFactory,
        SentimentScoreFactory,
        MarketEventFactory,
        TradingSignalFactory,
        OrderFactory,
        OrderFillFactory,
        TradeFactory,
        PositionFactory,
        DailyPerformanceFactory,
        BacktestResultFactory,
        LlmAnalysisLogFactory,
    )
}
