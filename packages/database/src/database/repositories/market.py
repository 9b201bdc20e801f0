"""Market quotes: the latest quote per symbol in one indexed query."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import select

from database.repositories.base import Repository
from database.schema.market import MarketData

#: How far back the latest quote of a named symbol is looked for first (see `latest`).
RECENT = timedelta(days=1)

# Distinct symbols by walking the (symbol, observed_at) index ("loose index scan"): one probe
# per symbol instead of reading every quote.
_SYMBOLS = """
    with recursive symbols(symbol) as (
        (select symbol from market_data order by symbol limit 1)
        union all
        select (select m.symbol from market_data m where m.symbol > s.symbol
                order by m.symbol limit 1)
          from symbols s where s.symbol is not null
    )
    select symbol from symbols where symbol is not null
"""


class MarketDataRepository(Repository[MarketData]):
    model = MarketData
    sort = ("observed_at", "id")

    def latest(
        self, *, symbols: Sequence[str] | None = None, exchange: str | None = None
    ) -> list[MarketData]:
        """Newest quote per symbol (across exchanges, or on `exchange`), in one query.

        Each symbol costs one backwards probe of the (symbol, observed_at) index; without
        `symbols`, the distinct symbols are found by skipping through the same index. Named
        symbols are looked for in the last `RECENT` first (the bound prunes every older
        partition), and without the bound when one of them has no quote that recent.
        """
        if symbols is None:
            return self._latest(None, exchange, since=None)
        wanted = sorted({s.strip().upper() for s in symbols})
        found = self._latest(wanted, exchange, since=datetime.now(UTC) - RECENT)
        if len(found) < len(wanted):
            found = self._latest(wanted, exchange, since=None)
        return found

    def _latest(
        self, symbols: list[str] | None, exchange: str | None, *, since: datetime | None
    ) -> list[MarketData]:
        source = (
            "select unnest(cast(:symbols as text[])) as symbol" if symbols is not None else _SYMBOLS
        )
        bound = " and m.observed_at >= :since" if since is not None else ""
        ids = sa.text(
            f"select q.id from ({source}) as s cross join lateral"
            " (select id from market_data m where m.symbol = s.symbol"
            f" and (cast(:exchange as text) is null or m.exchange = :exchange){bound}"
            " order by m.observed_at desc limit 1) q"
        ).bindparams(exchange=exchange.strip().lower() if exchange else None)
        if symbols is not None:
            ids = ids.bindparams(symbols=symbols)
        if since is not None:
            ids = ids.bindparams(since=since)
        statement = (
            select(MarketData)
            .where(MarketData.id.in_(ids.columns(sa.column("id"))))  # type: ignore[attr-defined]
            .order_by(MarketData.symbol)
        )
        if since is not None:
            statement = statement.where(MarketData.observed_at >= since)
        return list(self.session.exec(statement).all())
