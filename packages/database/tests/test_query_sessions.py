"""Every new query as callers make it: in a user session (RLS decides what the caller sees), and
the same through the async twin (`AsyncRepository`), on data committed for real."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import SQLModel

from database.repositories import (
    ArticleRepository,
    AsyncRepository,
    DailyPerformanceRepository,
    DexTradeRepository,
    MarketEventRepository,
    OrderFillRepository,
    OrderRepository,
    PositionRepository,
    Repository,
    SentimentScoreRepository,
    TradeRepository,
    TradingSignalRepository,
)
from database.schema import Dex, Pool, Token
from database.schema.base import Page
from database.sessions import Database, user_claims
from database_tools.identities import create_auth_user

T0 = datetime(2026, 1, 5, tzinfo=UTC)
TABLES = (
    "auth.users, articles, trading_signals, dex_trades, pools, tokens, dexes, ohlcv,"
    " llm_analysis_logs"
)


class Dexes(Repository[Dex]):
    model = Dex


class Tokens(Repository[Token]):
    model = Token


class Pools(Repository[Pool]):
    model = Pool


@dataclass(frozen=True)
class Seed:
    owner: uuid.UUID
    other: uuid.UUID
    pool: uuid.UUID


def _order(user: uuid.UUID, side: str, quantity: str) -> dict[str, Any]:
    return {"exchange": "binance", "symbol": "ETH/USDT", "order_type": "market", "side": side,
            "quantity": quantity}  # fmt: skip


def _fill(order: uuid.UUID, name: str, quantity: str, price: str, at: datetime) -> dict[str, Any]:
    return {"order_id": order, "exchange_fill_id": name, "quantity": quantity, "price": price,
            "fee": "1", "filled_at": at}  # fmt: skip


@pytest.fixture(scope="module")
def seed(database: Database) -> Iterator[Seed]:
    with database.service_session() as s:
        owner, other = create_auth_user(s.connection()), create_auth_user(s.connection())
        orders = OrderRepository(s)
        for user, exit_price in ((owner, "3100"), (other, "2900")):
            # Each user: a round trip closed the next day (owner wins, other loses), and an
            # open position left over.
            buy = orders.submit(data=_order(user, "buy", "2"), user_id=user)
            orders.apply_fill(fill=_fill(buy.id, "b", "2", "3000", T0))
            sell = orders.submit(data=_order(user, "sell", "2"), user_id=user)
            orders.apply_fill(fill=_fill(sell.id, "s", "2", exit_price, T0 + timedelta(days=1)))
            again = orders.submit(data=_order(user, "buy", "1"), user_id=user)
            orders.apply_fill(fill=_fill(again.id, "a", "1", "3050", T0 + timedelta(days=2)))
            orders.submit(data=_order(user, "sell", "5"), user_id=user)  # still new
        DailyPerformanceRepository(s).refresh(
            first_day=date(2026, 1, 1), last_day=date(2026, 1, 31)
        )
        Dexes(s).create(data={"id": "uniswap_v3", "name": "Uniswap V3", "network": "eth"})
        tokens = Tokens(s)
        base = tokens.create(data={"network": "eth", "address": "0x" + "1" * 40, "symbol": "WETH",
                                   "name": "Wrapped Ether", "decimals": 18})  # fmt: skip
        quote = tokens.create(data={"network": "eth", "address": "0x" + "2" * 40, "symbol": "USDC",
                                    "name": "USD Coin", "decimals": 6})  # fmt: skip
        pool = Pools(s).create(
            data={"network": "eth", "address": "0x" + "3" * 40, "dex_id": "uniswap_v3",
                  "base_token_id": base.id, "quote_token_id": quote.id}
        )  # fmt: skip
        trades = DexTradeRepository(s)
        for i in range(3):
            trades.create(
                data={"network": "eth", "pool_id": pool.id, "tx_hash": f"0x{i:064x}",
                      "log_index": 0, "block_number": i, "side": "buy", "base_amount": "1",
                      "block_timestamp": T0 + timedelta(minutes=i),
                      "quote_amount": str(3000 + i)}
            )  # fmt: skip
        articles = ArticleRepository(s)
        article = articles.create(
            data={"source": "coindesk", "url": "https://example.com/etf", "title": "ETF approved",
                  "content": "Flows", "published_at": T0, "symbols": ["BTC"]}
        )  # fmt: skip
        SentimentScoreRepository(s).create(
            data={"article_id": article.id, "score": "0.5", "confidence": "0.9",
                  "model": "finbert", "scored_at": T0}
        )  # fmt: skip
        MarketEventRepository(s).create(
            data={"article_id": article.id, "event_type": "regulation", "severity": "high",
                  "symbols": ["BTC"], "occurred_at": T0}
        )  # fmt: skip
        for hour in (0, 1):
            TradingSignalRepository(s).create(
                data={"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h",
                      "signal": "buy", "composite_score": "0.3",
                      "generated_at": T0 + timedelta(hours=hour)}
            )  # fmt: skip
    yield Seed(owner, other, pool.id)
    with database.service_session() as s:
        s.execute(text(f"truncate {TABLES} cascade"))


def _comparable(result: Any) -> Any:
    if isinstance(result, Page):
        return _comparable(result.data)
    if isinstance(result, list) and result and isinstance(result[0], SQLModel):
        return [r.id if hasattr(r, "id") else r for r in result]
    return result


QUERIES: list[tuple[str, type[Any], Callable[..., Any], Callable[[Seed], dict[str, Any]]]] = [
    (
        "trade statistics",
        TradeRepository,
        TradeRepository.statistics,
        lambda s: {"user_id": s.owner, "since": T0, "until": T0 + timedelta(days=7)},
    ),
    ("open positions", PositionRepository, PositionRepository.open_positions, lambda s: {}),
    ("orders by status", OrderRepository, OrderRepository.by_status, lambda s: {"status": "new"}),
    ("fills", OrderFillRepository, OrderFillRepository.list, lambda s: {}),
    (
        "daily performance",
        DailyPerformanceRepository,
        DailyPerformanceRepository.days,
        lambda s: {
            "user_id": s.owner,
            "first_day": date(2026, 1, 1),
            "last_day": date(2026, 1, 31),
        },
    ),
    ("article search", ArticleRepository, ArticleRepository.search, lambda s: {"query": "etf"}),
    (
        "articles by symbol",
        ArticleRepository,
        ArticleRepository.by_symbol,
        lambda s: {"symbol": "BTC"},
    ),
    (
        "hourly sentiment",
        SentimentScoreRepository,
        SentimentScoreRepository.hourly,
        lambda s: {"since": T0, "until": T0 + timedelta(days=1)},
    ),
    ("events", MarketEventRepository, MarketEventRepository.search, lambda s: {"symbol": "BTC"}),
    ("latest signals", TradingSignalRepository, TradingSignalRepository.latest, lambda s: {}),
    (
        "signal history",
        TradingSignalRepository,
        TradingSignalRepository.history,
        lambda s: {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h"},
    ),
    ("pool trades", DexTradeRepository, DexTradeRepository.by_pool, lambda s: {"pool_id": s.pool}),
]


@pytest.mark.parametrize(
    ("what", "repo", "method", "arguments"), QUERIES, ids=[q[0] for q in QUERIES]
)
async def test_the_async_twin_answers_like_the_user_session(
    what: str,
    repo: type[Any],
    method: Callable[..., Any],
    arguments: Callable[[Seed], dict[str, Any]],
    seed: Seed,
    database: Database,
) -> None:
    claims = user_claims(user_id=seed.owner)
    kwargs = arguments(seed)
    with database.user_session(claims=claims) as session:
        in_sync = _comparable(method(repo(session), **kwargs))
    async with database.async_user_session(claims=claims) as session:
        in_async = _comparable(await AsyncRepository(session, repo).run(method, **kwargs))
    assert in_async == in_sync
    assert in_sync not in ([], None), what  # the seed answers every query with something


async def test_a_user_session_sees_the_callers_own_trading_rows(
    seed: Seed, database: Database
) -> None:
    claims = user_claims(user_id=seed.owner)
    since, until = T0, T0 + timedelta(days=7)
    async with database.async_user_session(claims=claims) as session:
        trades = AsyncRepository(session, TradeRepository)
        mine = await trades.run(
            TradeRepository.statistics, user_id=seed.owner, since=since, until=until
        )
        theirs = await trades.run(
            TradeRepository.statistics, user_id=seed.other, since=since, until=until
        )
        positions = await AsyncRepository(session, PositionRepository).run(
            PositionRepository.open_positions
        )
        orders = await AsyncRepository(session, OrderRepository).run(
            OrderRepository.by_status, status=["new", "filled"]
        )
    # The owner bought 2 at 3000 and sold at 3100, paying 1 + 1 in fees: one trade, +198.
    assert (mine.trades, mine.wins, mine.total_pnl, mine.days) == (1, 1, Decimal("198"), 7)
    assert theirs.trades == 0  # RLS: another user's trades are not there
    assert [(p.user_id, p.quantity) for p in positions] == [(seed.owner, Decimal("1"))]
    assert {o.user_id for o in orders.data} == {seed.owner} and len(orders.data) == 4
    with database.service_session() as session:  # the service sees both
        other = TradeRepository(session).statistics(user_id=seed.other, since=since, until=until)
    assert (other.trades, other.losses, other.total_pnl) == (1, 1, Decimal("-202"))
