"""Whale transactions: recent, by address, by value and time, top by score, daily statistics."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, TypeAdapter, ValidationError

from database.errors import invalid_input
from database.repositories.base import (
    PublicListing,
    PublicQuery,
    Repository,
    check_limit,
    plain_value,
    validate,
)
from database.schema.base import Page
from database.schema.types import TxHash
from database.schema.whales import WhaleDailyStats, WhaleTransaction, WhaleTransactionFilters

_HASH_ADAPTER: TypeAdapter[str] = TypeAdapter(TxHash)

_t = WhaleTransaction
#: The search's filters, each given its value (a literal or a bound parameter).
_FILTERS: dict[str, Callable[[Any], sa.ColumnElement[bool]]] = {
    "chain": lambda v: _t.chain == v,
    "address": lambda v: sa.or_(_t.from_address == v, _t.to_address == v),
    "min_value_eth": lambda v: _t.value_eth >= v,
    "min_value_usd": lambda v: _t.value_usd >= v,
    "since": lambda v: _t.block_timestamp >= v,
    "until": lambda v: _t.block_timestamp < v,
    "min_score": lambda v: _t.whale_score >= v,
}


def _by_hash(value: Any) -> sa.ColumnElement[bool]:
    condition: sa.ColumnElement[bool] = _t.hash == value
    return condition


def _normalized(hash: str) -> str:
    try:
        return _HASH_ADAPTER.validate_python(hash)
    except ValidationError as exc:
        error = invalid_input(exc)
        error.field = "hash"
        raise error from None


def _filter_values(
    filters: WhaleTransactionFilters | Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The filters that are set, validated before any I/O."""
    f = validate(WhaleTransactionFilters, filters or {})
    return {name: value for name, value in f.model_dump().items() if value is not None}


class WhaleTransactionRepository(Repository[WhaleTransaction]):
    model = WhaleTransaction
    sort = ("block_timestamp", "id")  # newest block first; id breaks ties

    def get_by_hash(self, *, hash: str) -> Any:
        """The transaction (a row with the model's attributes), or None."""
        statement = sa.select(*self.row_columns()).where(_by_hash(_normalized(hash)))
        return self.session.execute(statement).one_or_none()

    @classmethod
    def get_by_hash_public(cls, public: type[BaseModel], *, hash: str) -> PublicQuery:
        """`get_by_hash`, as `public`'s JSON rendered by the server (no row: not there)."""
        return cls.public_one(public, condition=_by_hash, name="hash", value=_normalized(hash))

    def search(
        self,
        *,
        filters: WhaleTransactionFilters | Mapping[str, Any] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[WhaleTransaction]:
        """Newest first, keyset-paginated, every filter optional (validated before any I/O)."""
        values = _filter_values(filters)
        where = [_FILTERS[name](plain_value(value)) for name, value in values.items()]
        return self.list(where=where, limit=limit, cursor=cursor)

    @classmethod
    def search_public(
        cls,
        public: type[BaseModel],
        *,
        filters: WhaleTransactionFilters | Mapping[str, Any] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> PublicListing:
        """`search`, as `public`'s JSON rendered by the server (see `Repository.public_listing`):
        the same filters, order and cursors."""
        return cls.public_listing(
            public, conditions=_FILTERS, values=_filter_values(filters), limit=limit, cursor=cursor
        )

    def top_by_score(
        self, *, limit: int = 10, since: datetime | None = None, until: datetime | None = None
    ) -> list[Any]:
        """The highest scores first (rows with the model's attributes)."""
        check_limit(limit)
        f: Any = validate(WhaleTransactionFilters, {"since": since, "until": until})
        t = WhaleTransaction
        statement = sa.select(*self.row_columns())
        if f.since is not None:
            statement = statement.where(t.block_timestamp >= f.since)
        if f.until is not None:
            statement = statement.where(t.block_timestamp < f.until)
        by_score = sa.desc(t.__table__.c.whale_score), sa.desc(t.__table__.c.block_timestamp)  # type: ignore[attr-defined]
        statement = statement.order_by(*by_score).limit(limit)
        return list(self.session.execute(statement).all())

    def daily_stats(
        self, *, filters: WhaleTransactionFilters | Mapping[str, Any] | None = None
    ) -> list[WhaleDailyStats]:
        """Count, sums, percentiles per UTC day and chain, computed in SQL (chain, since and
        until of `filters` apply). Percentiles are exact values (percentile_disc)."""
        f: Any = validate(WhaleTransactionFilters, filters or {})
        sql = """
            select (block_timestamp at time zone 'UTC')::date as day, chain,
                   count(*) as transactions,
                   sum(value_eth) as total_value_eth,
                   sum(value_usd) as total_value_usd,
                   percentile_disc(0.5) within group (order by value_eth) as median_value_eth,
                   percentile_disc(0.9) within group (order by value_eth) as p90_value_eth,
                   percentile_disc(0.99) within group (order by value_eth) as p99_value_eth,
                   max(value_eth) as max_value_eth,
                   max(whale_score) as max_whale_score
              from whale_transactions
             where (cast(:chain as text) is null or chain = :chain)
               and (cast(:since as timestamptz) is null or block_timestamp >= :since)
               and (cast(:until as timestamptz) is null or block_timestamp < :until)
             group by 1, 2
             order by 1, 2
        """
        params = {
            "chain": f.chain.value if f.chain else None,
            "since": f.since,
            "until": f.until,
        }
        rows = self.session.execute(sa.text(sql), params).mappings()
        return [WhaleDailyStats.model_validate(dict(r)) for r in rows]
