"""Data access beyond plain sessions: generic CRUD + keyset pages, COPY-speed bulk writes,
and the time-series and statistics queries several consumers share. Every repository works in
the session it is given and never commits; `BulkWriter` owns its own transactions."""

from database.repositories.base import AsyncRepository, Repository
from database.repositories.bulk import BulkWriter, UpsertResult
from database.repositories.dex import BuiltBars, DexTradeRepository
from database.repositories.llm import LlmAnalysisLogRepository
from database.repositories.market import MarketDataRepository
from database.repositories.ohlcv import Bar, Gap, OhlcvRepository
from database.repositories.ops import CollectionRunRepository, SystemEventRepository
from database.repositories.research import (
    ArticleRepository,
    MarketEventRepository,
    SentimentScoreRepository,
    TradingSignalRepository,
)
from database.repositories.trading import (
    AppliedFill,
    DailyPerformanceRepository,
    OrderFillRepository,
    OrderRepository,
    PositionRepository,
    TradeRepository,
)
from database.repositories.users import ProfileRepository, WatchlistRepository
from database.repositories.whales import WhaleTransactionRepository

__all__ = [
    "AppliedFill",
    "ArticleRepository",
    "AsyncRepository",
    "Bar",
    "BuiltBars",
    "BulkWriter",
    "CollectionRunRepository",
    "DailyPerformanceRepository",
    "DexTradeRepository",
    "Gap",
    "LlmAnalysisLogRepository",
    "MarketDataRepository",
    "MarketEventRepository",
    "OhlcvRepository",
    "OrderFillRepository",
    "OrderRepository",
    "PositionRepository",
    "ProfileRepository",
    "Repository",
    "SentimentScoreRepository",
    "SystemEventRepository",
    "TradeRepository",
    "TradingSignalRepository",
    "UpsertResult",
    "WatchlistRepository",
    "WhaleTransactionRepository",
]
