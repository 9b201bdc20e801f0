"""Data access beyond plain sessions: generic CRUD + keyset pages, COPY-speed bulk writes,
time-series and statistics queries. Every repository takes the session it works in."""

from database.repositories.alerts import AlertEventRepository, AlertMatch, AlertRepository
from database.repositories.base import AsyncRepository, Repository, RowsPage
from database.repositories.bulk import UpsertResult, copy_many, upsert_many
from database.repositories.market import MarketDataRepository
from database.repositories.ohlcv import Bar, Gap, OhlcvRepository
from database.repositories.ops import CollectionRunRepository, SystemEventRepository
from database.repositories.users import ProfileRepository, WatchlistRepository
from database.repositories.whales import WhaleTransactionRepository

__all__ = [
    "AlertEventRepository",
    "AlertMatch",
    "AlertRepository",
    "AsyncRepository",
    "Bar",
    "CollectionRunRepository",
    "Gap",
    "MarketDataRepository",
    "OhlcvRepository",
    "ProfileRepository",
    "Repository",
    "RowsPage",
    "SystemEventRepository",
    "UpsertResult",
    "WatchlistRepository",
    "WhaleTransactionRepository",
    "copy_many",
    "upsert_many",
]
