"""Research and DEX queries against known data, expected values worked out by hand: ranked
full-text search, hourly sentiment, events, latest signals, a pool's trades and the OHLCV bars
built from them, LLM usage."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import Session

from database.errors import InvalidInputError, NotFoundError
from database.repositories import (
    ArticleRepository,
    BulkWriter,
    DexTradeRepository,
    LlmAnalysisLogRepository,
    MarketEventRepository,
    OhlcvRepository,
    SentimentScoreRepository,
    TradingSignalRepository,
)
from database.schema import Article, DexTrade, TradingSignal
from database.sessions import Database
from database_tools.factories import (
    ArticleFactory,
    DexTradeFactory,
    LlmAnalysisLogFactory,
    MarketEventFactory,
    PoolFactory,
    SentimentScoreFactory,
    TokenFactory,
    TradingSignalFactory,
)

T0 = datetime(2026, 1, 5, 10, tzinfo=UTC)
D = Decimal


# -- articles ------------------------------------------------------------------------------


def test_full_text_search_ranks_title_over_content(db_session: Session) -> None:
    in_title = ArticleFactory(
        title="Spot bitcoin ETF approved", content="Flows start Monday.", symbols=["BTC"],
        published_at=T0,
    )  # fmt: skip
    in_content = ArticleFactory(
        title="Markets wrap", content="Analysts expect more ETF approvals.", symbols=["BTC"],
        published_at=T0 + timedelta(hours=1),
    )  # fmt: skip
    ArticleFactory(title="Ether staking grows", content="Validators", symbols=["ETH"])
    repo = ArticleRepository(db_session)
    hits = repo.search(query="ETF approvals")  # stemmed: approved ~ approvals
    assert [h.article.id for h in hits] == [in_title.id, in_content.id]
    assert hits[0].rank > hits[1].rank > 0
    assert [h.article.id for h in repo.search(query="etf -markets")] == [in_title.id]
    assert [h.article.id for h in repo.search(query='"staking grows"')] != []
    assert repo.search(query="etf", symbol="eth") == []
    later = repo.search(query="etf", since=T0 + timedelta(minutes=30))
    assert [h.article.id for h in later] == [in_content.id]
    with pytest.raises(InvalidInputError) as caught:
        repo.search(query="   ")
    assert caught.value.field == "query"


def test_articles_by_symbol_newest_first_in_pages(db_session: Session) -> None:
    about = [
        ArticleFactory(symbols=["SOL", "BTC"], published_at=T0 + timedelta(minutes=i))
        for i in range(5)
    ]
    ArticleFactory(symbols=["ETH"], published_at=T0)
    repo = ArticleRepository(db_session)
    first = repo.by_symbol(symbol="sol", limit=3)
    second = repo.by_symbol(symbol="SOL", limit=3, cursor=first.next_cursor)
    assert [a.id for a in first.data + second.data] == [a.id for a in reversed(about)]
    window = repo.by_symbol(
        symbol="BTC", since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3)
    )
    assert [a.id for a in window.data] == [about[2].id, about[1].id]


# -- sentiment -----------------------------------------------------------------------------


def _score(article: Any, score: str, confidence: str, model: str) -> None:
    SentimentScoreFactory(article=article, article_id=article.id, score=D(score),
                          confidence=D(confidence), model=model)  # fmt: skip


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 9)


def test_sentiment_per_symbol_per_hour(db_session: Session) -> None:
    both = ArticleFactory(symbols=["BTC", "ETH"], published_at=T0 + timedelta(minutes=5))
    btc = ArticleFactory(symbols=["BTC"], published_at=T0 + timedelta(minutes=40))
    late = ArticleFactory(symbols=["BTC"], published_at=T0 + timedelta(minutes=70))
    quiet = ArticleFactory(symbols=["DOGE"], published_at=T0 + timedelta(minutes=10))
    _score(both, "0.5", "0.8", "finbert")
    _score(both, "-0.1", "0.2", "vader")
    _score(btc, "0.9", "0.5", "finbert")
    _score(late, "-0.4", "1", "finbert")
    _score(quiet, "0.3", "0", "finbert")
    ArticleFactory(symbols=["BTC"], published_at=T0 + timedelta(minutes=20))  # never scored
    repo = SentimentScoreRepository(db_session)
    rows = repo.hourly(since=T0, until=T0 + timedelta(hours=2))
    got = [(r.symbol, r.hour, r.scores, _r(r.average), _r(r.confidence_weighted)) for r in rows]
    hour = T0 + timedelta(hours=1)
    assert got == [
        # (0.5 + -0.1 + 0.9) / 3; (0.5*0.8 - 0.1*0.2 + 0.9*0.5) / (0.8 + 0.2 + 0.5) = 0.83 / 1.5
        ("BTC", T0, 3, _r(1.3 / 3), _r(0.83 / 1.5)),
        ("BTC", hour, 1, -0.4, -0.4),
        ("DOGE", T0, 1, 0.3, None),  # every confidence 0: no weighted mean
        ("ETH", T0, 2, 0.2, 0.38),
    ]
    only_eth = repo.hourly(since=T0, until=hour, symbols=["eth"])
    assert [(r.symbol, r.scores) for r in only_eth] == [("ETH", 2)]
    finbert = repo.hourly(since=T0, until=hour, symbols=["BTC"], model="finbert")
    assert [(r.scores, _r(r.average)) for r in finbert] == [(2, 0.7)]
    with pytest.raises(InvalidInputError):
        repo.hourly(since=hour, until=T0)


# -- events --------------------------------------------------------------------------------


def test_events_by_symbol_severity_and_time(db_session: Session) -> None:
    made = {
        (severity, minute): MarketEventFactory(
            article=None, article_id=None, severity=severity, symbols=symbols,
            occurred_at=T0 + timedelta(minutes=minute), event_type=kind,
        )
        for severity, minute, symbols, kind in [
            ("low", 0, ["BTC"], "listing"),
            ("high", 1, ["BTC", "ETH"], "hack"),
            ("critical", 2, ["BTC"], "outage"),
            ("medium", 3, ["BTC"], "regulation"),
            ("critical", 4, ["ETH"], "hack"),
        ]
    }  # fmt: skip
    repo = MarketEventRepository(db_session)
    serious = repo.search(symbol="btc", min_severity="high")
    assert [e.id for e in serious.data] == [made["critical", 2].id, made["high", 1].id]
    hacks = repo.search(event_types=["hack"], until=T0 + timedelta(minutes=4))
    assert [e.id for e in hacks.data] == [made["high", 1].id]
    first = repo.search(symbol="BTC", limit=2)
    rest = repo.search(symbol="BTC", limit=2, cursor=first.next_cursor)
    assert len(first.data) == len(rest.data) == 2 and rest.next_cursor is None
    with pytest.raises(InvalidInputError) as caught:
        repo.search(min_severity="apocalyptic")
    assert caught.value.field == "min_severity"


# -- signals -------------------------------------------------------------------------------


def test_latest_signal_per_series_and_a_series_history(db_session: Session) -> None:
    def signal(exchange: str, symbol: str, timeframe: str, hour: int) -> Any:
        return TradingSignalFactory(exchange=exchange, symbol=symbol, timeframe=timeframe,
                                    generated_at=T0 + timedelta(hours=hour))  # fmt: skip

    eth_1h = [signal("binance", "ETH/USDT", "1h", h) for h in (0, 1, 2)]
    eth_4h = signal("binance", "ETH/USDT", "4h", 0)
    btc_1h = [signal("binance", "BTC/USDT", "1h", h) for h in (3, 1)]
    kraken = signal("kraken", "ETH/USDT", "1h", 5)
    repo = TradingSignalRepository(db_session)
    latest = repo.latest()
    assert [s.id for s in latest] == [btc_1h[0].id, eth_1h[2].id, eth_4h.id, kraken.id]
    assert [s.id for s in repo.latest(exchange="binance", timeframe="1h")] == [
        btc_1h[0].id,
        eth_1h[2].id,
    ]
    assert [s.id for s in repo.latest(symbols=["eth/usdt"], timeframe="4h")] == [eth_4h.id]
    assert repo.latest(exchange="coinbase") == []
    history = repo.history(exchange="binance", symbol="ETH/USDT", timeframe="1h", limit=2)
    more = repo.history(exchange="binance", symbol="ETH/USDT", timeframe="1h", limit=2,
                        cursor=history.next_cursor)  # fmt: skip
    assert [s.id for s in history.data + more.data] == [s.id for s in reversed(eth_1h)]


# -- DEX trades and the bars built from them -----------------------------------------------


def test_a_pools_trades_in_keyset_pages(db_session: Session) -> None:
    pool, other = PoolFactory(), PoolFactory()
    trades = [
        DexTradeFactory(pool=pool, pool_id=pool.id, block_timestamp=T0 + timedelta(seconds=s))
        for s in (30, 10, 20, 40)
    ]
    DexTradeFactory(pool=other, pool_id=other.id, block_timestamp=T0)
    repo = DexTradeRepository(db_session)
    first = repo.by_pool(pool_id=pool.id, limit=3)
    second = repo.by_pool(pool_id=pool.id, limit=3, cursor=first.next_cursor)
    order = sorted(trades, key=lambda t: t.block_timestamp, reverse=True)
    assert [t.id for t in first.data + second.data] == [t.id for t in order]
    oldest = repo.by_pool(pool_id=pool.id, newest_first=False, until=T0 + timedelta(seconds=25))
    assert [t.id for t in oldest.data] == [trades[1].id, trades[2].id]


def test_ohlcv_bars_are_built_from_trades_in_sql(db_session: Session) -> None:
    weth = TokenFactory(symbol="WETH")
    usdc = TokenFactory(symbol="USDC")
    pool = PoolFactory(base_token=weth, quote_token=usdc)
    other = PoolFactory()

    def trade(second: int, base: str, quote: str, pool: Any = pool) -> None:
        DexTradeFactory(pool=pool, pool_id=pool.id, block_timestamp=T0 + timedelta(seconds=second),
                        base_amount=D(base), quote_amount=D(quote))  # fmt: skip

    trade(10, "1", "3000")  # 3000
    trade(40, "2", "6020")  # 3010
    trade(50, "0.5", "1495")  # 2990
    trade(90, "1", "3005")  # 3005, the next minute
    trade(20, "1", "1", pool=other)
    repo = DexTradeRepository(db_session)
    built = repo.build_ohlcv(pool_id=pool.id, timeframe="1m", start=T0, end=T0 + timedelta(hours=1))
    assert (built.inserted, built.updated, built.symbol) == (2, 0, "WETH/USDC")
    assert built.source == f"{pool.network}:{pool.address}"
    bars = OhlcvRepository(db_session).get_range(
        source=built.source, symbol="WETH/USDC", timeframe="1m", start=T0,
        end=T0 + timedelta(hours=1),
    )  # fmt: skip
    assert [tuple(b) for b in bars] == [
        (T0, D(3000), D(3010), D(2990), D(2990), D("3.5")),
        (T0 + timedelta(minutes=1), D(3005), D(3005), D(3005), D(3005), D(1)),
    ]
    again = repo.build_ohlcv(pool_id=pool.id, timeframe="1m", start=T0, end=T0 + timedelta(hours=1))
    assert (again.inserted, again.updated) == (0, 0)  # unchanged bars are left alone
    trade(100, "1", "3100")  # the second minute gets a higher trade
    again = repo.build_ohlcv(pool_id=pool.id, timeframe="1m", start=T0, end=T0 + timedelta(hours=1))
    assert (again.inserted, again.updated) == (0, 1)
    five = repo.build_ohlcv(pool_id=pool.id, timeframe="5m", start=T0, end=T0 + timedelta(hours=1))
    assert five.inserted == 1
    (bar,) = OhlcvRepository(db_session).get_latest(source=built.source, symbol="WETH/USDC",
                                                    timeframe="5m", n=5)  # fmt: skip
    assert tuple(bar) == (T0, D(3000), D(3100), D(2990), D(3100), D("5.5"))


def test_building_bars_checks_its_arguments(db_session: Session) -> None:
    repo = DexTradeRepository(db_session)
    pool = PoolFactory()
    for kwargs, field in (
        ({"start": T0 + timedelta(seconds=30)}, "start"),
        ({"timeframe": "2m"}, "timeframe"),
        ({"end": T0}, "end"),
    ):
        args: dict[str, Any] = {"pool_id": pool.id, "timeframe": "1m", "start": T0,
                                "end": T0 + timedelta(hours=1), **kwargs}  # fmt: skip
        with pytest.raises(InvalidInputError) as caught:
            repo.build_ohlcv(**args)
        assert caught.value.field == field
    with pytest.raises(NotFoundError):
        repo.build_ohlcv(pool_id=PoolFactory.build().id, timeframe="1h", start=T0,
                         end=T0 + timedelta(hours=1))  # fmt: skip


# -- LLM usage -----------------------------------------------------------------------------


def test_llm_usage_per_model_and_purpose(db_session: Session) -> None:
    for cost, latency, error in (("0.001", 100, None), ("0.003", 300, "timeout")):
        LlmAnalysisLogFactory(model="gpt-4o", purpose="trade_decision", cost_usd=D(cost),
                              latency_ms=latency, error=error, requested_at=T0)  # fmt: skip
    LlmAnalysisLogFactory(model="claude", purpose="sentiment", requested_at=T0)
    LlmAnalysisLogFactory(
        model="gpt-4o", purpose="trade_decision", requested_at=T0 - timedelta(days=1)
    )
    usage = LlmAnalysisLogRepository(db_session).usage(since=T0, until=T0 + timedelta(hours=1))
    assert [(u.model, u.purpose, u.calls, u.errors, u.cost_usd, u.average_latency_ms)
            for u in usage] == [
        ("claude", "sentiment", 1, 0, D("0.00042"), 850.0),
        ("gpt-4o", "trade_decision", 2, 1, D("0.004"), 200.0),
    ]  # fmt: skip


# -- bulk loads by natural key -------------------------------------------------------------


def test_collectors_bulk_upsert_by_natural_key(
    database: Database, truncate_after: Callable[..., None]
) -> None:
    truncate_after("articles", "trading_signals", "dex_trades", "pools", "tokens", "dexes")
    with database.service_session() as s:
        s.execute(text("insert into dexes (id, name, network) values ('uni', 'Uni', 'eth')"))
        base, quote = (
            s.execute(
                text("insert into tokens (network, address, symbol, name, decimals)"
                     " values ('eth', :a, 'TK', 'Token', 18) returning id"),
                {"a": "0x" + digit * 40},
            ).scalar_one()
            for digit in "12"
        )  # fmt: skip
        pool_id = s.execute(
            text("insert into pools (network, address, dex_id, base_token_id, quote_token_id)"
                 " values ('eth', :a, 'uni', :b, :q) returning id"),
            {"a": "0x" + "3" * 40, "b": base, "q": quote},
        ).scalar_one()  # fmt: skip
    writer = BulkWriter(database)
    articles = [
        {"source": "wire", "url": f"https://example.com/{i}", "title": f"Story {i}",
         "published_at": T0, "symbols": ["btc", "ETH"]}
        for i in range(3)
    ]  # fmt: skip
    signals = [
        {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h", "signal": "hold",
         "composite_score": "0.05", "generated_at": T0 + timedelta(hours=i)}
        for i in range(3)
    ]  # fmt: skip
    trades = [
        {"network": "eth", "pool_id": pool_id, "tx_hash": f"0x{i:064x}", "log_index": i % 2,
         "block_number": i, "block_timestamp": T0, "side": "sell", "base_amount": "1",
         "quote_amount": "3000"}
        for i in range(3)
    ]  # fmt: skip
    for model, rows in ((Article, articles), (TradingSignal, signals), (DexTrade, trades)):
        assert writer.upsert(model, rows=rows).inserted == 3
        again = writer.upsert(model, rows=rows)  # the same rows: found by their natural key
        assert (again.inserted, again.updated, again.unchanged) == (0, 0, 3), model
    changed = [{**a, "title": "Corrected"} if i == 0 else a for i, a in enumerate(articles)]
    assert writer.upsert(Article, rows=changed).updated == 1
    with database.service_session() as s:
        hits = ArticleRepository(s).search(query="corrected", symbol="BTC")
    assert [h.article.url for h in hits] == ["https://example.com/0"]  # the vector followed
