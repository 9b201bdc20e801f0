"""What `Database.health_check()` reports: the primary (version, latency, pool) and, per read
URL, whether it is a standby and how far behind the primary it is.

Replica lag is measured two ways, both from the primary's position read first:

* `lag_bytes` - WAL the replica has not replayed yet: `pg_current_wal_lsn()` on the primary
  minus `pg_last_wal_replay_lsn()` on the replica (0 when it has replayed all of it). Exact,
  and meaningful whether or not anything is being written.
* `lag_seconds` - 0 when the replica has replayed up to that position; otherwise the age of its
  last replayed transaction (`now() - pg_last_xact_replay_timestamp()`): how old the newest
  data it serves may be. Not reported as the plain age when caught up, because on a quiet
  primary that age only says when someone last wrote. It compares the replica's clock with
  the primary's commit times, so clock skew between the hosts shows up in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.pool import Pool

from database.connect import display_url


@dataclass(frozen=True)
class PoolStatus:
    size: int
    checked_out: int
    checked_in: int
    overflow: int


@dataclass(frozen=True)
class ReplicaHealth:
    """One read URL. `standby` is None (and `error` says why) when it could not be asked."""

    url: str  # password hidden
    standby: bool | None
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Health:
    server_version: str
    latency_ms: float
    database: str
    user: str
    pool: PoolStatus
    # "primary" with no DATABASE_READ_URL (read sessions use the primary), else "replicas".
    reads: str = "primary"
    replicas: tuple[ReplicaHealth, ...] = ()


PRIMARY_SQL = text(
    "select current_setting('server_version') as server_version,"
    " current_database() as database, current_user as user,"
    # A primary that is itself a standby has no current WAL position of its own.
    " case when pg_is_in_recovery() then pg_last_wal_replay_lsn()"
    " else pg_current_wal_lsn() end::text as lsn"
)

REPLICA_SQL = text(
    "select pg_is_in_recovery() as standby,"
    " greatest(0, pg_wal_lsn_diff(cast(:lsn as pg_lsn), pg_last_wal_replay_lsn()))::bigint"
    "   as lag_bytes,"
    " case when pg_last_wal_replay_lsn() >= cast(:lsn as pg_lsn) then 0"
    "   else extract(epoch from now() - pg_last_xact_replay_timestamp()) end::float8"
    "   as lag_seconds"
)


def pool_status(pool: Pool) -> PoolStatus:
    return PoolStatus(
        size=int(getattr(pool, "size", lambda: 0)()),
        checked_out=int(getattr(pool, "checkedout", lambda: 0)()),
        checked_in=int(getattr(pool, "checkedin", lambda: 0)()),
        overflow=int(getattr(pool, "overflow", lambda: 0)()),
    )


def replica_health(*, url: URL, row: Any) -> ReplicaHealth:
    """The REPLICA_SQL row of `url`; a server that is not in recovery has no lag to report."""
    if not row.standby:
        return ReplicaHealth(url=display_url(url), standby=False)
    seconds = None if row.lag_seconds is None else round(float(row.lag_seconds), 3)
    return ReplicaHealth(
        url=display_url(url), standby=True, lag_bytes=int(row.lag_bytes), lag_seconds=seconds
    )


def unreachable(*, url: URL, exc: BaseException) -> ReplicaHealth:
    # The first line only: a driver error's later lines repeat the statement.
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return ReplicaHealth(url=display_url(url), standby=None, error=reason)
