"""Each table's model classes by role, so generic code (repositories, tests) can look them up."""

from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import SQLModel

from database.schema import alerts, dex, llm, market, ops, research, trading, users, whales
from database.schema.rules import apply_rules


@dataclass(frozen=True)
class TableSchemas:
    table: type[SQLModel]
    create: type[SQLModel]
    update: type[SQLModel] | None
    public: type[SQLModel]

    @property
    def name(self) -> str:
        return str(self.table.__tablename__)


SCHEMAS: dict[str, TableSchemas] = {
    s.name: s
    for s in (
        TableSchemas(
            whales.WhaleTransaction,
            whales.WhaleTransactionCreate,
            whales.WhaleTransactionUpdate,
            whales.WhaleTransactionPublic,
        ),
        TableSchemas(
            market.MarketData,
            market.MarketDataCreate,
            market.MarketDataUpdate,
            market.MarketDataPublic,
        ),
        TableSchemas(market.Ohlcv, market.OhlcvCreate, market.OhlcvUpdate, market.OhlcvPublic),
        TableSchemas(
            market.LiquidityZone,
            market.LiquidityZoneCreate,
            market.LiquidityZoneUpdate,
            market.LiquidityZonePublic,
        ),
        TableSchemas(
            market.SmcPattern,
            market.SmcPatternCreate,
            market.SmcPatternUpdate,
            market.SmcPatternPublic,
        ),
        TableSchemas(dex.Dex, dex.DexCreate, dex.DexUpdate, dex.DexPublic),
        TableSchemas(dex.Token, dex.TokenCreate, dex.TokenUpdate, dex.TokenPublic),
        TableSchemas(dex.Pool, dex.PoolCreate, dex.PoolUpdate, dex.PoolPublic),
        TableSchemas(users.Profile, users.ProfileCreate, users.ProfileUpdate, users.ProfilePublic),
        TableSchemas(
            users.WatchlistEntry,
            users.WatchlistEntryCreate,
            users.WatchlistEntryUpdate,
            users.WatchlistEntryPublic,
        ),
        TableSchemas(alerts.Alert, alerts.AlertCreate, alerts.AlertUpdate, alerts.AlertPublic),
        TableSchemas(
            alerts.AlertWebhookSecret,
            alerts.AlertWebhookSecretCreate,
            None,
            alerts.AlertWebhookSecretPublic,
        ),
        TableSchemas(
            alerts.AlertEvent,
            alerts.AlertEventCreate,
            alerts.AlertEventUpdate,
            alerts.AlertEventPublic,
        ),
        TableSchemas(ops.SystemEvent, ops.SystemEventCreate, None, ops.SystemEventPublic),
        TableSchemas(
            ops.EvaluatorCursor, ops.EvaluatorCursorCreate, None, ops.EvaluatorCursorPublic
        ),
        TableSchemas(
            ops.CollectionRun,
            ops.CollectionRunCreate,
            ops.CollectionRunUpdate,
            ops.CollectionRunPublic,
        ),
        TableSchemas(dex.DexTrade, dex.DexTradeCreate, dex.DexTradeUpdate, dex.DexTradePublic),
        TableSchemas(
            research.Article,
            research.ArticleCreate,
            research.ArticleUpdate,
            research.ArticlePublic,
        ),
        TableSchemas(
            research.SentimentScore,
            research.SentimentScoreCreate,
            research.SentimentScoreUpdate,
            research.SentimentScorePublic,
        ),
        TableSchemas(
            research.MarketEvent,
            research.MarketEventCreate,
            research.MarketEventUpdate,
            research.MarketEventPublic,
        ),
        TableSchemas(
            research.TradingSignal,
            research.TradingSignalCreate,
            research.TradingSignalUpdate,
            research.TradingSignalPublic,
        ),
        TableSchemas(trading.Order, trading.OrderCreate, trading.OrderUpdate, trading.OrderPublic),
        TableSchemas(trading.OrderFill, trading.OrderFillCreate, None, trading.OrderFillPublic),
        TableSchemas(trading.Trade, trading.TradeCreate, trading.TradeUpdate, trading.TradePublic),
        TableSchemas(
            trading.Position,
            trading.PositionCreate,
            trading.PositionUpdate,
            trading.PositionPublic,
        ),
        TableSchemas(
            trading.DailyPerformance,
            trading.DailyPerformanceCreate,
            None,
            trading.DailyPerformancePublic,
        ),
        TableSchemas(
            trading.BacktestResult,
            trading.BacktestResultCreate,
            trading.BacktestResultUpdate,
            trading.BacktestResultPublic,
        ),
        TableSchemas(llm.LlmAnalysisLog, llm.LlmAnalysisLogCreate, None, llm.LlmAnalysisLogPublic),
    )
}


def _defaults_from_the_server(table: sa.Table) -> None:
    # A column the database fills itself (ids, timestamps) gets no Python default in SQL
    # inserts: a plain INSERT of the client's columns then works for a user whose grants cover
    # only those. Model instances still get Python values (pydantic's default_factory).
    for column in table.columns:
        if column.server_default is not None and column.default is not None:
            column.default = None


# Every table's CHECKs rendered from its fields' types (database.schema.rules), once.
for _schemas in SCHEMAS.values():
    apply_rules(_schemas.table)
    _defaults_from_the_server(_schemas.table.__table__)  # type: ignore[attr-defined]
