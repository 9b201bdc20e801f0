"""Whale transactions: recent, by address, by value and time, top by score, daily statistics."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import TypeAdapter, ValidationError

from database.errors import invalid_input
from database.repositories.base import Repository, check_limit, validate
from database.schema.base import Page
from database.schema.types import TxHash
from database.schema.whales import WhaleDailyStats, WhaleTransaction, WhaleTransactionFilters

_HASH_ADAPTER: TypeAdapter[str] = TypeAdapter(TxHash)


class WhaleTransactionRepository(Repository[WhaleTransaction]):
    model = WhaleTransaction
    sort = ("block_timestamp", "id")  # newest block first; id breaks ties

    def get_by_hash(self, *, hash: str) -> Any:
        """The transaction (a row with the model's attributes), or None."""
        try:
            normalized = _HASH_ADAPTER.validate_python(hash)
        except ValidationError as exc:
            error = invalid_input(exc)
            error.field = "hash"
            raise error from None
        statement = sa.select(*self.row_columns()).where(self.column("hash") == normalized)
        return self.session.execute(statement).one_or_none()

    def search(
        self,
        *,
        filters: WhaleTransactionFilters | Mapping[str, Any] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[WhaleTransaction]:
        """Newest first, keyset-paginated, every filter optional (validated before any I/O)."""
        f: Any = validate(WhaleTransactionFilters, filters or {})
        t = WhaleTransaction
        where: list[sa.ColumnElement[bool]] = []
        if f.chain is not None:
            where.append(t.chain == f.chain.value)
        if f.address is not None:
            where.append(sa.or_(t.from_address == f.address, t.to_address == f.address))
        if f.min_value_eth is not None:
            where.append(t.value_eth >= f.min_value_eth)
        if f.min_value_usd is not None:
            where.append(t.value_usd >= f.min_value_usd)
        if f.since is not None:
            where.append(t.block_timestamp >= f.since)
        if f.until is not None:
            where.append(t.block_timestamp < f.until)
        if f.min_score is not None:
            where.append(t.whale_score >= f.min_score)
        return self.list(where=where, limit=limit, cursor=cursor)

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
