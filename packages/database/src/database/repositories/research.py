"""Research reads: ranked full-text search over articles, articles and events by symbol and time,
hourly sentiment per symbol, and trading signals (latest per series, and history) — in SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import TypeAdapter, ValidationError
from sqlmodel import select

from database.errors import InvalidInputError, invalid_input
from database.repositories.base import Repository, check_limit
from database.repositories.periods import period, time_filters
from database.schema.base import Page
from database.schema.research import (
    SEARCH_CONFIG,
    Article,
    ArticleHit,
    ArticlePublic,
    EventSeverity,
    EventType,
    HourlySentiment,
    MarketEvent,
    SentimentScore,
    TradingSignal,
)
from database.schema.types import Name, Symbol, Timeframe

_SYMBOL: TypeAdapter[str] = TypeAdapter(Symbol)
_NAME: TypeAdapter[str] = TypeAdapter(Name)
MAX_QUERY = 500


def _valid(adapter: TypeAdapter[Any], field: str, value: Any) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        error = invalid_input(exc)
        error.field = field
        raise error from None


def _symbols(values: Sequence[str]) -> list[str]:
    return [_valid(_SYMBOL, "symbols", v) for v in values]


# -- articles --------------------------------------------------------------------------------


class ArticleRepository(Repository[Article]):
    model = Article
    sort = ("published_at", "id")

    def search(
        self,
        *,
        query: str,
        symbol: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        language: str | None = None,
        limit: int = 20,
    ) -> list[ArticleHit]:
        """The best `limit` matches of a web-search style `query` ("etf approval -rumor",
        quoted phrases, `or`), ranked by ts_rank over the weighted title/content vector (GIN
        index), then newest first. Filters: a symbol the article is about, a time range."""
        check_limit(limit)
        text = query.strip()
        if not text or len(text) > MAX_QUERY or "\x00" in text:
            raise InvalidInputError(field="query", rule=f"must be 1-{MAX_QUERY} characters")
        vector = Article.__table__.c.search_vector  # type: ignore[attr-defined]
        tsquery = sa.func.websearch_to_tsquery(sa.literal_column(f"'{SEARCH_CONFIG}'"), text)
        rank = sa.func.ts_rank(vector, tsquery).label("rank")
        where = [vector.op("@@")(tsquery), *time_filters(self.column("published_at"), since, until)]
        if symbol is not None:
            where.append(self._about(symbol))
        if language is not None:
            where.append(self.column("language") == language.strip().lower())
        statement = (
            select(Article, rank)
            .where(*where)
            .order_by(rank.desc(), self.column("published_at").desc(), self.column("id").desc())
            .limit(limit)
        )
        return [
            ArticleHit(article=ArticlePublic.model_validate(a), rank=float(r))
            for a, r in self.session.execute(statement)
        ]

    def by_symbol(
        self,
        *,
        symbol: str,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Article]:
        """Articles about `symbol`, newest first (keyset), in [since, until) when given."""
        where = [self._about(symbol), *time_filters(self.column("published_at"), since, until)]
        return self.list(where=where, limit=limit, cursor=cursor)

    def _about(self, symbol: str) -> Any:
        # `symbols @> array[…]` is what the GIN index answers.
        wanted = sa.literal(_symbols([symbol]), type_=sa.ARRAY(sa.Text))
        return self.column("symbols").op("@>")(wanted)


# -- sentiment -------------------------------------------------------------------------------

# Scores are summed per (symbols array, hour) first, then spread over each symbol: fewer rows
# to unnest and regroup than one per (score, symbol). The averages are floats: summed in
# float8, whose fixed-size state keeps the aggregation in memory (NUMERIC's does not).
_HOURLY = """
    with grouped as (
        select a.symbols,
               date_bin('1 hour', a.published_at, timestamptz '2000-01-01 00:00:00+00') as hour,
               count(*) as n, sum(sc.score::float8) as total,
               sum(sc.score::float8 * sc.confidence::float8) as weighted,
               sum(sc.confidence::float8) as confidence
          from sentiment_scores sc
          join articles a on a.id = sc.article_id
         where a.published_at >= :since and a.published_at < :until {filters}
         group by 1, 2
    )
    select s.symbol, g.hour, sum(g.n) as scores, sum(g.total) / sum(g.n) as average,
           sum(g.weighted) / nullif(sum(g.confidence), 0) as confidence_weighted
      from grouped g
      cross join lateral unnest(g.symbols) as s(symbol)
     where true {symbols}
     group by 1, 2
     order by 1, 2
"""


class SentimentScoreRepository(Repository[SentimentScore]):
    model = SentimentScore
    sort = ("scored_at", "id")

    def hourly(
        self,
        *,
        since: datetime,
        until: datetime,
        symbols: Sequence[str] | None = None,
        model: str | None = None,
    ) -> list[HourlySentiment]:
        """Per symbol and UTC hour of publication in [since, until): how many scores, their
        average, and their confidence-weighted average (sum(score * confidence) /
        sum(confidence)). An article about several symbols counts for each; only `symbols`
        (GIN-filtered) and one scoring `model` when given. One SQL statement."""
        params: dict[str, Any] = period(since, until)
        filters, only = "", ""
        if symbols is not None:
            params["symbols"] = _symbols(symbols)
            filters += " and a.symbols && :symbols"
            only = " and s.symbol = any(:symbols)"
        if model is not None:
            params["model"] = _valid(_NAME, "model", model)
            filters += " and sc.model = :model"
        statement = sa.text(_HOURLY.format(filters=filters, symbols=only))
        if symbols is not None:
            statement = statement.bindparams(sa.bindparam("symbols", type_=sa.ARRAY(sa.Text)))
        rows = self.session.execute(statement, params).mappings()
        return [HourlySentiment.model_validate(dict(r)) for r in rows]


# -- market events ---------------------------------------------------------------------------


class MarketEventRepository(Repository[MarketEvent]):
    model = MarketEvent
    sort = ("occurred_at", "id")

    def search(
        self,
        *,
        symbol: str | None = None,
        min_severity: EventSeverity | str | None = None,
        event_types: Sequence[EventType | str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[MarketEvent]:
        """Events newest first (keyset): about `symbol` (GIN), at least `min_severity`, of the
        given types, in [since, until) — every filter optional."""
        where = time_filters(self.column("occurred_at"), since, until)
        if symbol is not None:
            wanted = sa.literal(_symbols([symbol]), type_=sa.ARRAY(sa.Text))
            where.append(self.column("symbols").op("@>")(wanted))
        if min_severity is not None:
            severity = _valid(TypeAdapter(EventSeverity), "min_severity", min_severity)
            where.append(self.column("severity").in_(severity.and_above()))
        if event_types is not None:
            types = _valid(TypeAdapter(list[EventType]), "event_types", list(event_types))
            where.append(self.column("event_type").in_([t.value for t in types]))
        return self.list(where=where, limit=limit, cursor=cursor)


# -- trading signals -------------------------------------------------------------------------

# The distinct series by skipping through the unique (exchange, symbol, timeframe,
# generated_at) index — one probe per series, not a read of every signal — then the newest
# signal of each, one backwards probe each.
_LATEST = """
    with recursive series(exchange, symbol, timeframe) as (
        (select exchange, symbol, timeframe from trading_signals t
          where true {seed}
          order by exchange, symbol, timeframe limit 1)
        union all
        select n.exchange, n.symbol, n.timeframe
          from series s cross join lateral (
              select t.exchange, t.symbol, t.timeframe from trading_signals t
               where (t.exchange, t.symbol, t.timeframe) > (s.exchange, s.symbol, s.timeframe)
                 {seed}
               order by t.exchange, t.symbol, t.timeframe limit 1) n
    )
    select l.id from series s cross join lateral (
        select id from trading_signals t
         where t.exchange = s.exchange and t.symbol = s.symbol and t.timeframe = s.timeframe
         order by t.generated_at desc limit 1) l
     where true {final}
"""


class TradingSignalRepository(Repository[TradingSignal]):
    model = TradingSignal
    sort = ("generated_at", "id")

    def latest(
        self,
        *,
        exchange: str | None = None,
        symbols: Sequence[str] | None = None,
        timeframe: Timeframe | str | None = None,
    ) -> list[TradingSignal]:
        """The newest signal of every series (exchange, symbol, timeframe), optionally only
        on one exchange, for some symbols, on one timeframe; ordered by series."""
        params: dict[str, Any] = {}
        seed, final = "", ""
        if exchange is not None:
            params["exchange"] = _valid(_NAME, "exchange", exchange)
            seed += " and t.exchange = :exchange"
        if timeframe is not None:
            params["timeframe"] = _valid(TypeAdapter(Timeframe), "timeframe", timeframe).value
            final += " and s.timeframe = :timeframe"
        ids = sa.text(_LATEST.format(seed=seed, final=final))
        if symbols is not None:
            params["symbols"] = _symbols(symbols)
            ids = sa.text(_LATEST.format(seed=seed, final=final + " and s.symbol = any(:symbols)"))
            ids = ids.bindparams(sa.bindparam("symbols", type_=sa.ARRAY(sa.Text)))
        found = [row.id for row in self.session.execute(ids, params)]
        if not found:
            return []
        statement = (
            select(TradingSignal)
            .where(self.column("id").in_(found))
            .order_by(TradingSignal.exchange, TradingSignal.symbol, TradingSignal.timeframe)
        )
        return list(self.session.exec(statement).all())

    def history(
        self,
        *,
        exchange: str,
        symbol: str,
        timeframe: Timeframe | str,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[TradingSignal]:
        """One series' signals, newest first (keyset), in [since, until) when given."""
        where = [
            self.column("exchange") == _valid(_NAME, "exchange", exchange),
            self.column("symbol") == _symbols([symbol])[0],
            self.column("timeframe") == _valid(TypeAdapter(Timeframe), "timeframe", timeframe),
            *time_filters(self.column("generated_at"), since, until),
        ]
        return self.list(where=where, limit=limit, cursor=cursor)
