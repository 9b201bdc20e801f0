"""OHLCV bars: bulk insert/upsert, range and latest-N reads, gap detection and resampling —
all answered by SQL over the (source, symbol, timeframe, bucket_start) index."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import sqlalchemy as sa

from database.errors import InvalidInputError
from database.repositories.base import Repository, check_limit
from database.schema.market import Ohlcv
from database.schema.types import WEEK_ORIGIN_SECONDS, Timeframe


class Bar(NamedTuple):
    """One candle as read back: a plain tuple, cheap to build for thousands of rows."""

    bucket_start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True)
class Gap:
    """Missing buckets from `start` to `end`, both inclusive."""

    start: datetime
    end: datetime
    missing: int


_SERIES = "source = :source and symbol = :symbol and timeframe = :timeframe"
_BAR_COLUMNS = "bucket_start, open, high, low, close, volume"


def _timeframe(value: Timeframe | str) -> Timeframe:
    try:
        return Timeframe(value)
    except ValueError:
        allowed = ", ".join(t.value for t in Timeframe)
        raise InvalidInputError(field="timeframe", rule=f"must be one of {allowed}") from None


def _aligned(field: str, value: datetime, timeframe: Timeframe) -> datetime:
    if value.tzinfo is None:
        raise InvalidInputError(field=field, rule="must be timezone-aware")
    origin = WEEK_ORIGIN_SECONDS if timeframe is Timeframe.W1 else 0
    if (int(value.timestamp()) - origin) % timeframe.seconds or value.microsecond:
        raise InvalidInputError(field=field, rule=f"must be on the {timeframe.value} grid")
    return value


class OhlcvRepository(Repository[Ohlcv]):
    model = Ohlcv
    sort = ("bucket_start", "id")

    def _series(
        self, source: str, symbol: str, timeframe: Timeframe | str, start: datetime, end: datetime
    ) -> dict[str, Any]:
        tf = _timeframe(timeframe)
        _aligned("start", start, tf)
        _aligned("end", end, tf)
        if end <= start:
            raise InvalidInputError(field="end", rule="must be after start")
        return {
            "source": source,
            "symbol": symbol.strip().upper(),
            "timeframe": tf.value,
            "start": start,
            "end": end,
            "step": timedelta(seconds=tf.seconds),
        }

    def get_range(
        self,
        *,
        source: str,
        symbol: str,
        timeframe: Timeframe | str,
        start: datetime,
        end: datetime,
    ) -> list[Bar]:
        """Bars with start <= bucket_start < end, oldest first."""
        params = self._series(source, symbol, timeframe, start, end)
        rows = self.session.execute(
            sa.text(
                f"select {_BAR_COLUMNS} from ohlcv where {_SERIES}"
                " and bucket_start >= :start and bucket_start < :end order by bucket_start"
            ),
            params,
        )
        return [Bar(*row) for row in rows]

    def get_latest(
        self, *, source: str, symbol: str, timeframe: Timeframe | str, n: int = 100
    ) -> list[Bar]:
        """The newest `n` bars, oldest first.

        First within the last `n` buckets before now (the table is partitioned by time: the
        bound prunes every older partition), then, for a series that stopped or has holes,
        without a bound."""
        check_limit(n)
        tf = _timeframe(timeframe)
        params = {
            "source": source,
            "symbol": symbol.strip().upper(),
            "timeframe": tf.value,
            "n": n,
            "since": datetime.now(UTC) - n * timedelta(seconds=tf.seconds),
        }
        sql = f"select {_BAR_COLUMNS} from ohlcv where {_SERIES}{{bound}}"
        sql += " order by bucket_start desc limit :n"
        rows = self.session.execute(
            sa.text(sql.format(bound=" and bucket_start >= :since")), params
        ).all()
        if len(rows) < n:
            rows = self.session.execute(sa.text(sql.format(bound="")), params).all()
        return [Bar(*row) for row in reversed(rows)]

    def gaps(
        self,
        *,
        source: str,
        symbol: str,
        timeframe: Timeframe | str,
        start: datetime,
        end: datetime,
    ) -> list[Gap]:
        """Missing buckets in [start, end), computed in SQL: one ordered pass over the index
        with lag(), plus the edges before the first and after the last bar. No bar leaves the
        database; only the gaps do."""
        params = self._series(source, symbol, timeframe, start, end)
        sql = f"""
            with series as (
                select bucket_start, lag(bucket_start) over (order by bucket_start) as prev
                  from ohlcv
                 where {_SERIES} and bucket_start >= :start and bucket_start < :end
            ), edges as (
                select min(bucket_start) as first, max(bucket_start) as last
                  from ohlcv
                 where {_SERIES} and bucket_start >= :start and bucket_start < :end
            )
            select prev + :step as gap_start, bucket_start - :step as gap_end
              from series where bucket_start - prev > :step
            union all
            select :start, coalesce(first, :end) - :step from edges
             where first is null or first > :start
            union all
            select last + :step, :end - :step from edges where last < :end - :step
            order by 1
        """
        step = params["step"]
        return [
            Gap(gap_start, gap_end, (gap_end - gap_start) // step + 1)
            for gap_start, gap_end in self.session.execute(sa.text(sql), params)
        ]

    def resample(
        self,
        *,
        source: str,
        symbol: str,
        timeframe: Timeframe | str,
        to: Timeframe | str,
        start: datetime,
        end: datetime,
    ) -> list[Bar]:
        """Bars of `timeframe` aggregated into `to` buckets in SQL (first open, max high, min
        low, last close, summed volume). Buckets with no source bars are absent."""
        params = self._series(source, symbol, timeframe, start, end)
        target = _timeframe(to)
        source_seconds = _timeframe(timeframe).seconds
        if target.seconds <= source_seconds or target.seconds % source_seconds:
            raise InvalidInputError(
                field="to", rule=f"must be a larger multiple of {timeframe} (got {target.value})"
            )
        _aligned("start", start, target)
        _aligned("end", end, target)
        origin = datetime.fromtimestamp(
            WEEK_ORIGIN_SECONDS if target is Timeframe.W1 else 0, tz=start.tzinfo
        )
        sql = f"""
            select date_bin(:to_step, bucket_start, :origin) as bucket,
                   (array_agg(open order by bucket_start))[1],
                   max(high), min(low),
                   (array_agg(close order by bucket_start desc))[1],
                   sum(volume)
              from ohlcv
             where {_SERIES} and bucket_start >= :start and bucket_start < :end
             group by 1
             order by 1
        """
        params |= {"to_step": timedelta(seconds=target.seconds), "origin": origin}
        return [Bar(*row) for row in self.session.execute(sa.text(sql), params)]
