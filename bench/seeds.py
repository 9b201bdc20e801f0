"""Benchmarks of the seed systems' queries: trade statistics for one user, hourly sentiment per
symbol, OHLCV bars built from DEX trades — each in SQL against the same answer computed by
fetching the rows into Python (the predecessors' way), measured in the same run."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import URL

from bench.harness import Report, Result, connect, percentiles, timed
from database.repositories import BulkWriter, DexTradeRepository, TradeRepository
from database.repositories.research import SentimentScoreRepository
from database.schema import Ohlcv
from database.sessions import Database
from database.settings import load_settings

START = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday


def _vacuum(url: URL, *tables: str) -> None:
    with connect(url) as conn:
        conn.autocommit = True
        for table in tables:
            conn.execute(f"vacuum analyze {table}")


def _p50(run: Callable[[], Any], runs: int) -> tuple[float, Any]:
    samples, value = [], None
    for _ in range(runs):
        seconds, value = timed(run)
        samples.append(seconds * 1000)
    return percentiles(samples)[0], value


def _p50_both(
    measured: Callable[[], Any], baseline: Callable[[], Any], runs: int
) -> tuple[tuple[float, Any], tuple[float, Any]]:
    """p50 (ms) and last value of each, runs interleaved so both see the same machine load."""
    samples: tuple[list[float], list[float]] = ([], [])
    values: list[Any] = [None, None]
    for _ in range(runs):
        for i, run in enumerate((measured, baseline)):
            seconds, values[i] = timed(run)
            samples[i].append(seconds * 1000)
    return (
        (percentiles(samples[0])[0], values[0]),
        (percentiles(samples[1])[0], values[1]),
    )


def _versus(report: Report, group: str, name: str, ms: float, baseline: Result, at_least: float,
            note: str = "ratio = how many times faster") -> None:  # fmt: skip
    speedup = baseline.value / ms
    report.add(
        Result(group, name, round(ms, 2), "ms", baseline.name, round(speedup, 3),
               f">= {at_least}x", speedup >= at_least, note)
    )  # fmt: skip


# -- trade statistics ------------------------------------------------------------------------


def _load_trades(url: URL, n: int) -> Any:
    """`n` closed trades of one user over a year (PnL from a seeded hash, some losses), and as
    many again spread over 100 other users."""
    with connect(url) as conn:
        users = [
            r[0]
            for r in conn.execute(
                "insert into auth.users (id) select gen_random_uuid()"
                " from generate_series(1, 101) returning id"
            )
        ]
        conn.execute(
            """
            insert into trades (user_id, exchange, symbol, side, entry_time, entry_price,
                                quantity, exit_quantity, exit_price, exit_time, fees,
                                realized_pnl, status)
            select u, 'binance', 'ETH/USDT', 'long', t - interval '1 hour', 3000, 1, 1, 3000, t,
                   1, round(((abs(hashtext(g::text)) %% 2000) - 1000)::numeric / 10, 2), 'closed'
              from (select g, %(start)s::timestamptz + (g * interval '1 year') / (2 * %(n)s) as t,
                           case when g %% 2 = 0 then %(owner)s::uuid
                                else (%(others)s::uuid[])[1 + g %% 100] end as u
                      from generate_series(1, 2 * %(n)s) g) s
            """,
            {"start": START, "n": n, "owner": users[0], "others": users[1:]},
        )
        conn.commit()
    _vacuum(url, "trades")
    return users[0]


def _statistics_in_python(url: URL, user: Any, since: datetime, until: datetime) -> dict[str, Any]:
    """The same figures, from every trade fetched into Python."""
    with connect(url) as conn:
        rows = conn.execute(
            "select exit_time, realized_pnl from trades where user_id = %s and exit_time >= %s"
            " and exit_time < %s order by exit_time, id",
            (user, since, until),
        ).fetchall()
    pnls = [pnl for _, pnl in rows]
    wins = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p < 0]
    equity, peak, drawdown = Decimal(0), Decimal(0), Decimal(0)
    daily: dict[Any, Decimal] = defaultdict(Decimal)
    for exit_time, pnl in rows:
        equity += pnl
        peak = max(peak, equity)
        drawdown = max(drawdown, peak - equity)
        daily[exit_time.astimezone(UTC).date()] += pnl
    days = [
        float(daily.get((since + timedelta(days=d)).date(), 0)) for d in range((until - since).days)
    ]
    mean = statistics.fmean(days)
    downside = math.sqrt(sum(min(r, 0) ** 2 for r in days) / len(days))
    return {
        "trades": len(pnls),
        "total_pnl": sum(pnls, Decimal(0)),
        "win_rate": len(wins) / len(pnls),
        "profit_factor": float(sum(wins) / -sum(losses)),
        "max_drawdown": drawdown,
        "sharpe": mean / statistics.stdev(days) * math.sqrt(365),
        "sortino": mean / downside * math.sqrt(365),
    }


def trade_statistics(report: Report, url: URL, *, trades: int, runs: int) -> None:
    g = f"stats {trades // 1000}k"
    user = _load_trades(url, trades)
    since, until = START, START + timedelta(days=366)
    db = Database(settings=load_settings(), url=url)
    with db.service_session() as session:
        repo = TradeRepository(session)
        (sql_ms, stats), (python_ms, expected) = _p50_both(
            lambda: repo.statistics(user_id=user, since=since, until=until),
            lambda: _statistics_in_python(url, user, since, until),
            runs,
        )
    assert stats.trades == expected["trades"] == trades, (stats.trades, trades)
    assert (
        stats.total_pnl == expected["total_pnl"] and stats.max_drawdown == expected["max_drawdown"]
    )
    assert math.isclose(stats.sharpe_ratio or 0, expected["sharpe"], rel_tol=1e-9)
    assert math.isclose(stats.sortino_ratio or 0, expected["sortino"], rel_tol=1e-9)
    base = report.add(
        Result(g, "fetch + compute in Python p50 (baseline)", round(python_ms, 2), "ms")
    )
    _versus(
        report, g, f"statistics() in SQL, {trades:,} trades of one user p50", sql_ms, base, 1.25
    )
    db.dispose()


# -- hourly sentiment ------------------------------------------------------------------------


def _load_sentiment(url: URL, scores: int) -> None:
    """`scores` sentiment scores: four models over scores/4 articles, each about 1-3 of 20
    symbols, published over 30 days."""
    articles = scores // 4
    with connect(url) as conn:
        conn.execute(
            """
            insert into articles (source, url, title, published_at, symbols)
            select 'wire', 'https://news.example.com/' || g, 'Headline ' || g,
                   %(start)s::timestamptz + (g * interval '30 days') / %(n)s,
                   (select array_agg(distinct 'S' || ((g::bigint * k * 7919) %% 20))
                      from generate_series(1, 1 + g %% 3) k)
              from generate_series(1, %(n)s) g
            """,
            {"start": START, "n": articles},
        )
        conn.execute(
            """
            insert into sentiment_scores (article_id, score, confidence, model, scored_at)
            select a.id, round(((hashtext(a.url || m) % 10000) / 10000.0)::numeric, 4),
                   round(abs((hashtext(m || a.url) % 10000) / 10000.0)::numeric, 4),
                   m, a.published_at
              from articles a cross join unnest(array['m1', 'm2', 'm3', 'm4']) m
            """
        )
        conn.commit()
    _vacuum(url, "articles", "sentiment_scores")


def _hourly_in_python(url: URL, since: datetime, until: datetime) -> dict[Any, Any]:
    with connect(url) as conn:
        rows = conn.execute(
            "select a.symbols, a.published_at, s.score, s.confidence from articles a"
            " join sentiment_scores s on s.article_id = a.id"
            " where a.published_at >= %s and a.published_at < %s",
            (since, until),
        ).fetchall()
    sums: dict[Any, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0), Decimal(0)])
    counts: dict[Any, int] = defaultdict(int)
    for symbols, published_at, score, confidence in rows:
        hour = published_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        for symbol in symbols:
            key = (symbol, hour)
            counts[key] += 1
            total = sums[key]
            total[0] += score
            total[1] += score * confidence
            total[2] += confidence
    return {
        key: (counts[key], float(s / counts[key]), float(w / c) if c else None)
        for key, (s, w, c) in sums.items()
    }


def sentiment_hourly(report: Report, url: URL, *, scores: int, runs: int) -> None:
    g = f"sentiment {scores // 1000}k"
    _load_sentiment(url, scores)
    since, until = START, START + timedelta(days=31)
    db = Database(settings=load_settings(), url=url)
    with db.service_session() as session:
        repo = SentimentScoreRepository(session)
        (sql_ms, rows), (python_ms, expected) = _p50_both(
            lambda: repo.hourly(since=since, until=until),
            lambda: _hourly_in_python(url, since, until),
            runs,
        )
    assert len(rows) == len(expected) and sum(r.scores for r in rows) > scores
    sample = rows[len(rows) // 2]
    assert expected[sample.symbol, sample.hour][0] == sample.scores
    base = report.add(
        Result(g, "fetch + aggregate in Python p50 (baseline)", round(python_ms, 2), "ms")
    )
    _versus(report, g, f"hourly() in SQL, {scores:,} scores p50", sql_ms, base, 1.5)
    db.dispose()


# -- OHLCV from DEX trades -------------------------------------------------------------------


def _load_pool_trades(url: URL, n: int) -> Any:
    with connect(url) as conn:
        conn.execute("insert into dexes (id, name, network) values ('uni', 'Uni', 'eth')")
        base, quote = (
            conn.execute(
                "insert into tokens (network, address, symbol, name, decimals)"
                " values ('eth', %s, %s, %s, 18) returning id",
                (address, symbol, symbol),
            ).fetchone()[0]  # type: ignore[index]
            for address, symbol in (("0x" + "1" * 40, "WETH"), ("0x" + "2" * 40, "USDC"))
        )
        pool = conn.execute(
            "insert into pools (network, address, dex_id, base_token_id, quote_token_id)"
            " values ('eth', %s, 'uni', %s, %s) returning id",
            ("0x" + "3" * 40, base, quote),
        ).fetchone()[0]  # type: ignore[index]
        # One trade every half second or so: about 120 per one-minute bar.
        conn.execute(
            """
            insert into dex_trades (network, pool_id, tx_hash, log_index, block_number,
                                    block_timestamp, side, base_amount, quote_amount)
            select 'eth', %(pool)s, '0x' || lpad(to_hex(g), 64, '0'), 0, g,
                   %(start)s::timestamptz + g * interval '500 milliseconds',
                   case when g %% 2 = 0 then 'buy' else 'sell' end,
                   1 + (g %% 7) / 10.0,
                   (1 + (g %% 7) / 10.0) * (3000 + (hashtext(g::text) %% 500) / 10.0)
              from generate_series(1, %(n)s) g
            """,
            {"pool": pool, "start": START, "n": n},
        )
        conn.commit()
    _vacuum(url, "dex_trades")
    return pool


def _bars_in_python(url: URL, db: Database, pool: Any, end: datetime) -> int:
    """Fetch every trade, build one-minute bars in Python, upsert them with BulkWriter."""
    with connect(url) as conn:
        rows = conn.execute(
            "select block_timestamp, base_amount, quote_amount from dex_trades"
            " where pool_id = %s and block_timestamp >= %s and block_timestamp < %s"
            " order by block_timestamp, id",
            (pool, START, end),
        ).fetchall()
    bars: dict[datetime, list[Decimal]] = {}
    for at, base, quote in rows:
        price = quote / base
        minute = at.replace(second=0, microsecond=0)
        bar = bars.get(minute)
        if bar is None:
            bars[minute] = [price, price, price, price, base]
        else:
            bar[1], bar[2], bar[3] = max(bar[1], price), min(bar[2], price), price
            bar[4] += base
    source = "eth:0x" + "3" * 40
    result = BulkWriter(db).upsert(
        Ohlcv,
        rows=(
            {"source": source, "symbol": "WETH/USDC", "timeframe": "1m", "bucket_start": minute,
             "open": round(o, 18), "high": round(h, 18), "low": round(lo, 18),
             "close": round(c, 18), "volume": v}
            for minute, (o, h, lo, c, v) in bars.items()
        ),
    )  # fmt: skip
    return result.inserted + result.updated


def _empty_ohlcv(url: URL) -> None:
    with connect(url) as conn:
        conn.execute("truncate ohlcv")
        conn.commit()


def ohlcv_from_trades(report: Report, url: URL, *, trades: int, repeat: int) -> None:
    g = f"dex bars {trades // 1000}k"
    pool = _load_pool_trades(url, trades)
    end = START + timedelta(seconds=trades // 2 + 60)
    end -= timedelta(seconds=end.second)
    db = Database(settings=load_settings(), url=url)

    def in_sql() -> int:
        with db.service_session() as session:
            built = DexTradeRepository(session).build_ohlcv(
                pool_id=pool, timeframe="1m", start=START, end=end
            )
        return built.inserted

    sql_s, python_s, bars = [], [], 0
    for _ in range(repeat):
        _empty_ohlcv(url)
        seconds, bars = timed(in_sql)
        sql_s.append(seconds)
        _empty_ohlcv(url)
        seconds, written = timed(lambda: _bars_in_python(url, db, pool, end))
        python_s.append(seconds)
        assert written == bars, (written, bars)
    base = report.add(
        Result(
            g,
            "fetch + build in Python + BulkWriter p50 (baseline)",
            round(statistics.median(python_s) * 1000, 1),
            "ms",
        )
    )
    _versus(
        report,
        g,
        f"build_ohlcv() in SQL, {trades:,} trades -> {bars:,} 1m bars",
        statistics.median(sql_s) * 1000,
        base,
        2,
    )
    # Built again over bars that are all there and unchanged: nothing is rewritten.
    in_sql()
    again_ms, inserted = _p50(in_sql, repeat)
    assert inserted == 0
    report.add(Result(g, "build_ohlcv() again, bars unchanged", round(again_ms, 1), "ms"))
    db.dispose()
