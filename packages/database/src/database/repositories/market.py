"""Market quotes: the latest quote per symbol in one indexed query."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlmodel import select

from database.repositories.base import Repository
from database.schema.market import MarketData

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
        `symbols`, the distinct symbols are found by skipping through the same index.
        """
        source = (
            "select unnest(cast(:symbols as text[])) as symbol" if symbols is not None else _SYMBOLS
        )
        ids = sa.text(
            f"select q.id from ({source}) as s cross join lateral"
            " (select id from market_data m where m.symbol = s.symbol"
            " and (cast(:exchange as text) is null or m.exchange = :exchange)"
            " order by m.observed_at desc limit 1) q"
        ).bindparams(exchange=exchange.strip().lower() if exchange else None)
        if symbols is not None:
            ids = ids.bindparams(symbols=[s.strip().upper() for s in symbols])
        statement = (
            select(MarketData)
            .where(MarketData.id.in_(ids.columns(sa.column("id"))))  # type: ignore[attr-defined]
            .order_by(MarketData.symbol)
        )
        return list(self.session.exec(statement).all())
