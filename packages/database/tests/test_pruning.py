"""Queries prune: the repositories' reads of the time-partitioned tables touch only the
partitions their time range needs. Each repository call's SQL is captured as it is sent and run
again under EXPLAIN (ANALYZE, FORMAT JSON) with the same parameters; a partition counts as
touched when a scan of it was executed (pruned at plan time it is absent, at run time it is
in "Subplans Removed" or never executed)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, event, text
from sqlmodel import Session

from database.repositories.dex import DexTradeRepository
from database.repositories.market import MarketDataRepository
from database.repositories.ohlcv import OhlcvRepository

NOW = datetime.now(UTC)
MONTH_START = NOW.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@contextmanager
def _captured(conn: Connection) -> Iterator[list[tuple[str, Any]]]:
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().lower().startswith(("select", "with")):
            sent.append((statement, parameters))

    event.listen(conn, "before_cursor_execute", capture)
    try:
        yield sent
    finally:
        event.remove(conn, "before_cursor_execute", capture)


def _scans(node: dict[str, Any], table: str) -> list[tuple[str, int]]:
    found = []
    name = node.get("Relation Name", "")
    if name == table or name.startswith(f"{table}_"):
        found.append((name, node.get("Actual Loops", 0)))
    for child in node.get("Plans", []):
        found += _scans(child, table)
    return found


def touched(conn: Connection, call: Callable[[], Any], table: str) -> set[str]:
    """The partitions of `table` whose scans ran in the plans of what `call` sent."""
    with _captured(conn) as sent:
        call()
    assert sent, "the call sent no query"
    partitions: set[str] = set()
    for statement, parameters in sent:
        plan = conn.exec_driver_sql(
            f"explain (analyze, costs off, format json) {statement}", parameters
        ).scalar_one()
        partitions |= {name for name, loops in _scans(plan[0]["Plan"], table) if loops}
    return partitions


@pytest.fixture
def months(db_connection: Connection) -> list[str]:
    """ohlcv partitions for the last 6 months (besides now's and the ones ahead), a daily and
    an hourly series in each, statistics fresh."""
    db_connection.execute(
        text(
            "select private.create_partitions('public.ohlcv', 'month',"
            " now() - interval '6 months', now())"
        )
    )
    db_connection.execute(
        text(
            "insert into ohlcv (source, symbol, timeframe, bucket_start, open, high, low, close,"
            " volume) select 'binance', 'BTC', '1h', b, 1, 2, 1, 1, 1"
            " from generate_series(date_trunc('hour', now()) - interval '180 days',"
            " date_trunc('hour', now()), interval '1 hour') b"
        )
    )
    db_connection.execute(text("analyze ohlcv"))
    return [f"ohlcv_p{_month_start(k).strftime('%Y%m%d')}" for k in range(7)]


def _series() -> dict[str, Any]:
    return {"source": "binance", "symbol": "BTC", "timeframe": "1h"}


def _month_start(k: int) -> datetime:
    """The start of the k-th month before now's (UTC)."""
    year, month = divmod(MONTH_START.year * 12 + MONTH_START.month - 1 - k, 12)
    return MONTH_START.replace(year=year, month=month + 1)


def _month(k: int) -> tuple[datetime, datetime]:
    """The k-th month before now's: its start, and a week into it."""
    start = _month_start(k)
    return start, start + timedelta(days=7)


def test_ohlcv_range_gaps_and_resample_touch_the_partitions_of_their_range(
    db_session: Session, db_connection: Connection, months: list[str]
) -> None:
    repo = OhlcvRepository(db_session)
    start, end = _month(3)
    assert len(repo.get_range(**_series(), start=start, end=end)) == 7 * 24
    for call in (
        lambda: repo.get_range(**_series(), start=start, end=end),
        lambda: repo.gaps(**_series(), start=start, end=end),
        lambda: repo.resample(**_series(), to="1d", start=start, end=end),
    ):
        assert touched(db_connection, call, "ohlcv") == {months[3]}
    # Across a month boundary: the two months, no more.
    across = (_month(4)[0] + timedelta(days=20), _month(3)[1])
    assert touched(
        db_connection, lambda: repo.get_range(**_series(), start=across[0], end=across[1]), "ohlcv"
    ) == {months[4], months[3]}


def test_ohlcv_latest_bars_touch_no_partition_older_than_their_window(
    db_session: Session, db_connection: Connection, months: list[str]
) -> None:
    repo = OhlcvRepository(db_session)
    bars = repo.get_latest(**_series(), n=24)
    assert len(bars) == 24
    assert bars[-1].bucket_start >= NOW - timedelta(hours=1)
    found = touched(db_connection, lambda: repo.get_latest(**_series(), n=24), "ohlcv")
    # The window has no upper bound: now's partition, the (empty) ones ahead and the default
    # one are read (pg_partman names now's and those its own way); no older month is.
    assert found and not found & set(months[2:]), found
    assert len(found) <= 6, found
    # A series that stopped long ago is still found, through the unbounded read.
    db_connection.execute(
        text(
            "insert into ohlcv (source, symbol, timeframe, bucket_start, open, high, low, close,"
            " volume) values ('binance', 'OLD', '1h', date_trunc('hour', now())"
            " - interval '150 days', 1, 1, 1, 1, 1)"
        )
    )
    assert len(repo.get_latest(source="binance", symbol="OLD", timeframe="1h", n=5)) == 1


def test_market_data_latest_quote_touches_only_the_newest_partitions(
    db_session: Session, db_connection: Connection
) -> None:
    db_connection.execute(
        text(
            "select private.create_partitions('public.market_data', 'week',"
            " now() - interval '8 weeks', now());"
            "insert into market_data (exchange, symbol, price, observed_at)"
            " select 'binance', s, 100, t from unnest(array['BTC', 'ETH']) s,"
            " generate_series(now() - interval '55 days', now(), interval '1 hour') t;"
            "analyze market_data"
        )
    )
    weeks = db_connection.execute(
        text("select count(*) from pg_partition_tree('public.market_data') where isleaf")
    ).scalar_one()
    assert weeks >= 10
    repo = MarketDataRepository(db_session)
    assert [q.symbol for q in repo.latest(symbols=["BTC", "ETH"])] == ["BTC", "ETH"]
    found = touched(db_connection, lambda: repo.latest(symbols=["BTC", "ETH"]), "market_data")
    # now's week, the one before it (the last day may span both), the ones ahead, the default.
    assert len(found) <= 5, found
    # A symbol with no recent quote is still found, through the unbounded read.
    db_connection.execute(
        text(
            "insert into market_data (exchange, symbol, price, observed_at)"
            " values ('binance', 'OLD', 1, now() - interval '40 days')"
        )
    )
    assert [q.symbol for q in repo.latest(symbols=["OLD", "BTC"])] == ["BTC", "OLD"]


def test_dex_trades_range_reads_touch_the_partitions_of_their_range(
    db_session: Session, db_connection: Connection
) -> None:
    db_connection.execute(
        text(
            "select private.create_partitions('public.dex_trades', 'week',"
            " now() - interval '8 weeks', now());"
            "insert into dexes (id, name, network) values ('uni', 'Uniswap', 'eth');"
            "insert into tokens (network, address, symbol, name, decimals) values"
            " ('eth', '0xaa', 'WETH', 'Wrapped Ether', 18), ('eth', '0xbb', 'USDC', 'USD', 6);"
            "insert into pools (network, address, dex_id, base_token_id, quote_token_id)"
            " select 'eth', '0xcc', 'uni', b.id, q.id from tokens b, tokens q"
            " where b.address = '0xaa' and q.address = '0xbb';"
            "insert into dex_trades (network, pool_id, tx_hash, log_index, block_number,"
            " block_timestamp, side, base_amount, quote_amount)"
            " select 'eth', p.id, '0x' || to_hex(g), 0, g, now() - make_interval(hours => g),"
            " 'buy', 1, 2000 from pools p, generate_series(0, 1300) g;"
            "analyze dex_trades"
        )
    )
    pool: uuid.UUID = db_connection.execute(text("select id from pools")).scalar_one()
    repo = DexTradeRepository(db_session)
    week = db_connection.execute(
        text(
            "select date_trunc('week', now() at time zone 'UTC') at time zone 'UTC'"
            " - interval '4 weeks'"
        )
    ).scalar_one()
    until = week + timedelta(days=7)
    page = repo.by_pool(pool_id=pool, since=week, until=until, limit=500)
    assert len(page.data) == 7 * 24
    found = touched(
        db_connection,
        lambda: repo.by_pool(pool_id=pool, since=week, until=until, limit=500),
        "dex_trades",
    )
    assert found == {f"dex_trades_p{week.strftime('%Y%m%d')}"}
