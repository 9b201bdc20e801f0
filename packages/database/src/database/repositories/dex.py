"""DEX trades: a pool's trades by time (keyset), and OHLCV bars built from them in SQL.

Bars are built and merged into `ohlcv` by one `INSERT … SELECT … ON CONFLICT` statement: the
trades are already in the database, so aggregating them there and upserting in the same
statement moves no row out of it (BulkWriter would carry every bar to Python and back).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from database.errors import NotFoundError
from database.repositories.base import Repository, refused_writes
from database.repositories.ohlcv import _aligned, _timeframe
from database.repositories.periods import period, time_filters
from database.schema.base import Page
from database.schema.dex import DexTrade
from database.schema.types import WEEK_ORIGIN_SECONDS, Timeframe


@dataclass(frozen=True)
class BuiltBars:
    """What building bars did: bars written new, bars changed, and where they went."""

    inserted: int
    updated: int
    source: str
    symbol: str


# Bars in the quote token: price = quote_amount / base_amount, volume in the base token;
# source "<network>:<pool address>", symbol "<BASE>/<QUOTE>" from the pool's tokens. Unchanged
# bars are not rewritten; prices are rounded to the column's scale as they are stored.
_BUILD = sa.text(
    """
    with pool as (
        select p.network || ':' || p.address as source, b.symbol || '/' || q.symbol as symbol
          from pools p
          join tokens b on b.id = p.base_token_id
          join tokens q on q.id = p.quote_token_id
         where p.id = :pool_id
    ), priced as (
        select date_bin(:step, block_timestamp, :origin) as bucket_start, block_timestamp, id,
               quote_amount / base_amount as price, base_amount
          from dex_trades
         where pool_id = :pool_id and block_timestamp >= :start and block_timestamp < :end
    ), bars as materialized (
        -- Each bar staged with a fresh id: ohlcv is partitioned, so its INSERT cannot return
        -- xmax; a bar is new when it comes back with its own id (an update keeps the stored
        -- one), which holds for a bar another session committed meanwhile too.
        select private.uuid_v7() as bar_id, bucket_start,
               (array_agg(price order by block_timestamp, id))[1] as open,
               max(price) as high,
               min(price) as low,
               (array_agg(price order by block_timestamp desc, id desc))[1] as close,
               sum(base_amount) as volume
          from priced
         group by bucket_start
    ), merged as (
        insert into ohlcv as o (id, source, symbol, timeframe, bucket_start, open, high, low,
                                close, volume)
        select bars.bar_id, pool.source, pool.symbol, :timeframe, bars.bucket_start, bars.open,
               bars.high, bars.low, bars.close, bars.volume
          from bars cross join pool
        on conflict (source, symbol, timeframe, bucket_start) do update
           set open = excluded.open, high = excluded.high, low = excluded.low,
               close = excluded.close, volume = excluded.volume
         where (o.open, o.high, o.low, o.close, o.volume)
               is distinct from (excluded.open, excluded.high, excluded.low, excluded.close,
                                 excluded.volume)
        returning o.id
    ), counted as (
        -- A join, not `id in (select …)` per row: past work_mem that subplan is not hashed
        -- and rescans every bar for each one (300k bars took minutes).
        select count(b.bar_id) as inserted, count(*) - count(b.bar_id) as updated
          from merged m left join bars b on b.bar_id = m.id
    )
    select counted.inserted, counted.updated,
           (select source from pool) as source, (select symbol from pool) as symbol
      from counted
    """
)


class DexTradeRepository(Repository[DexTrade]):
    model = DexTrade
    sort = ("block_timestamp", "id")

    def by_pool(
        self,
        *,
        pool_id: uuid.UUID,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
        newest_first: bool = True,
    ) -> Page[DexTrade]:
        """A pool's trades in block time order (newest first unless asked), keyset pages over
        the (pool_id, block_timestamp, id) index, in [since, until) when given."""
        where = time_filters(self.column("block_timestamp"), since, until)
        return self.list(
            filters={"pool_id": pool_id},
            where=where,
            limit=limit,
            cursor=cursor,
            newest_first=newest_first,
        )

    def build_ohlcv(
        self, *, pool_id: uuid.UUID, timeframe: Timeframe | str, start: datetime, end: datetime
    ) -> BuiltBars:
        """Build `timeframe` bars of the pool's trades in [start, end) (both on the timeframe's
        grid) and upsert them into `ohlcv`, in one statement. Idempotent: building again
        changes nothing; a bucket that got more trades is updated. Service only."""
        tf = _timeframe(timeframe)
        period(start, end, names=("start", "end"))
        _aligned("start", start, tf)
        _aligned("end", end, tf)
        origin = datetime.fromtimestamp(WEEK_ORIGIN_SECONDS if tf is Timeframe.W1 else 0, tz=UTC)
        params = {
            "pool_id": pool_id,
            "step": timedelta(seconds=tf.seconds),
            "origin": origin,
            "start": start,
            "end": end,
            "timeframe": tf.value,
        }
        with refused_writes():
            row = self.session.execute(_BUILD, params).one()
        if row.source is None:
            raise NotFoundError(what="pool", key=pool_id)
        return BuiltBars(row.inserted, row.updated, row.source, row.symbol)
