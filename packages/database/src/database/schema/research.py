"""Market research: news articles (full-text searchable), their sentiment scores, the market
events detected in them, and the trading signals derived from all of it. Public data, written
by the research pipeline (service)."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

import sqlalchemy as sa
from pydantic import AwareDatetime, model_validator
from pydantic import Field as PydanticField
from sqlalchemy.dialects.postgresql import ARRAY, TSVECTOR
from sqlmodel import Field, SQLModel

from database.errors import describe_pattern
from database.schema.base import (
    AccessClass,
    CreatedAtMixin,
    IdMixin,
    Page,
    access_info,
    check,
    unset,
)
from database.schema.rules import Text
from database.schema.types import (
    SCORE_SQL_TYPE,
    Keyword,
    Name,
    Score,
    SignedScore,
    Symbol,
    Timeframe,
    Url,
)

_TEXT: Any = sa.Text
_TS: Any = sa.DateTime(timezone=True)
_TEXTS: Any = ARRAY(sa.Text)
_SIGNED_SCORE = sa.Numeric(5, 4)

MAX_SYMBOLS = 20
MAX_KEYWORDS = 50
#: Full-text search configuration of articles: stemmed as English (most crypto news is).
SEARCH_CONFIG = "english"


class EventType(StrEnum):
    """What kind of thing happened: the event detector's closed vocabulary."""

    LISTING = "listing"
    DELISTING = "delisting"
    HACK = "hack"
    REGULATION = "regulation"
    LAWSUIT = "lawsuit"
    PARTNERSHIP = "partnership"
    PRODUCT_LAUNCH = "product_launch"
    NETWORK_UPGRADE = "network_upgrade"
    OUTAGE = "outage"
    TOKEN_UNLOCK = "token_unlock"  # noqa: S105 - an event type, not a secret
    AIRDROP = "airdrop"
    FUNDING = "funding"
    MACRO = "macro"
    OTHER = "other"


class EventSeverity(StrEnum):
    """How much an event may move the market, in increasing order (queries ask "at least")."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    def and_above(self) -> list[str]:
        members = list(EventSeverity)
        return [m.value for m in members[members.index(self) :]]


class SignalValue(StrEnum):
    BUY = "buy"
    SELL = "sell"
    HOLD = "hold"


LANGUAGE_PATTERN = describe_pattern("^[a-z]{2}$", "must be a two-letter ISO 639-1 code")
Language = Annotated[str, Text(pattern=LANGUAGE_PATTERN, lower=True, strip=True)]
Title = Annotated[str, Text(min_length=1, max_length=500)]
Content = Annotated[str, Text(max_length=100_000)]
Summary = Annotated[str, Text(max_length=2_000)]
Explanation = Annotated[str, Text(max_length=4_000)]
Symbols = Annotated[list[Symbol], PydanticField(max_length=MAX_SYMBOLS)]
Keywords = Annotated[list[Keyword], PydanticField(max_length=MAX_KEYWORDS)]


def _empty_array() -> Any:
    return {"server_default": sa.text("'{}'::text[]")}


# -- articles --------------------------------------------------------------------------------


class ArticleBase(SQLModel):
    source: Name = Field(sa_type=_TEXT)
    url: Url = Field(sa_type=_TEXT, unique=True)
    title: Title = Field(sa_type=_TEXT)
    content: Content | None = Field(default=None, sa_type=_TEXT)
    published_at: AwareDatetime = Field(sa_type=_TS)
    # The assets an article is about (tickers such as BTC, ETH): upper-case, at most 20.
    symbols: Symbols = Field(default_factory=list, sa_type=_TEXTS, sa_column_kwargs=_empty_array())
    language: Language = Field(
        default="en", sa_type=_TEXT, sa_column_kwargs={"server_default": "en"}
    )


class Article(CreatedAtMixin, ArticleBase, IdMixin, table=True):
    __tablename__ = "articles"
    __table_args__ = (
        sa.Index("ix_articles_published_at_id", "published_at", "id"),
        sa.Index("ix_articles_symbols", "symbols", postgresql_using="gin"),
        access_info(AccessClass.PUBLIC_DATA),
    )


# Kept current by the database (a generated column), weighted title A, content B. Not mapped:
# searches name it, row reads never carry it.
Article.__table__.append_column(  # type: ignore[attr-defined]
    sa.Column(
        "search_vector",
        TSVECTOR(),
        sa.Computed(
            f"setweight(to_tsvector('{SEARCH_CONFIG}'::regconfig, title), 'A')"
            f" || setweight(to_tsvector('{SEARCH_CONFIG}'::regconfig, coalesce(content, '')),"
            " 'B')",
            persisted=True,
        ),
        nullable=False,
    )
)
sa.Index(
    "ix_articles_search_vector",
    Article.__table__.c.search_vector,  # type: ignore[attr-defined]
    postgresql_using="gin",
)


class ArticleCreate(ArticleBase):
    pass


class ArticleUpdate(SQLModel):
    title: Title = unset()
    content: Content | None = unset()
    symbols: Symbols = unset()
    language: Language = unset()


class ArticlePublic(ArticleBase):
    id: uuid.UUID
    created_at: datetime


class ArticlesPublic(Page[ArticlePublic]):
    pass


class ArticleHit(SQLModel):
    """A full-text search result: the article and how well it matches (higher is better)."""

    article: ArticlePublic
    rank: float


# -- sentiment_scores ------------------------------------------------------------------------


class SentimentScoreBase(SQLModel):
    article_id: uuid.UUID = Field(foreign_key="articles.id", ondelete="CASCADE")
    # -1 (bearish) to 1 (bullish), and how sure the model is of it.
    score: SignedScore = Field(sa_type=_SIGNED_SCORE)
    confidence: Score = Field(sa_type=SCORE_SQL_TYPE)
    positive_keywords: Keywords = Field(
        default_factory=list, sa_type=_TEXTS, sa_column_kwargs=_empty_array()
    )
    negative_keywords: Keywords = Field(
        default_factory=list, sa_type=_TEXTS, sa_column_kwargs=_empty_array()
    )
    model: Name = Field(sa_type=_TEXT)
    scored_at: AwareDatetime = Field(sa_type=_TS)


# One score per article and model (a re-score replaces it: the natural key for upserts).
class SentimentScore(CreatedAtMixin, SentimentScoreBase, IdMixin, table=True):
    __tablename__ = "sentiment_scores"
    __table_args__ = (
        sa.UniqueConstraint("article_id", "model"),
        access_info(AccessClass.PUBLIC_DATA),
    )


class SentimentScoreCreate(SentimentScoreBase):
    pass


class SentimentScoreUpdate(SQLModel):
    score: SignedScore = unset()
    confidence: Score = unset()
    positive_keywords: Keywords = unset()
    negative_keywords: Keywords = unset()
    scored_at: AwareDatetime = unset()


class SentimentScorePublic(SentimentScoreBase):
    id: uuid.UUID
    created_at: datetime


class HourlySentiment(SQLModel):
    """Sentiment of one symbol's articles published in one UTC hour."""

    symbol: str
    hour: datetime
    scores: int
    average: float
    # Each score weighted by its confidence; null when every confidence is 0.
    confidence_weighted: float | None


# -- market_events ---------------------------------------------------------------------------


class MarketEventBase(SQLModel):
    # The article the event was detected in (none for events from other sources).
    article_id: uuid.UUID | None = Field(
        default=None, foreign_key="articles.id", ondelete="SET NULL", index=True
    )
    event_type: EventType = Field(sa_type=_TEXT)
    severity: EventSeverity = Field(sa_type=_TEXT)
    summary: Summary | None = Field(default=None, sa_type=_TEXT)
    keywords: Keywords = Field(
        default_factory=list, sa_type=_TEXTS, sa_column_kwargs=_empty_array()
    )
    symbols: Symbols = Field(default_factory=list, sa_type=_TEXTS, sa_column_kwargs=_empty_array())
    occurred_at: AwareDatetime = Field(sa_type=_TS)


class MarketEvent(CreatedAtMixin, MarketEventBase, IdMixin, table=True):
    __tablename__ = "market_events"
    __table_args__ = (
        # Newest first (keyset), with severity and symbols as filters.
        sa.Index("ix_market_events_occurred_at_id", "occurred_at", "id"),
        sa.Index("ix_market_events_symbols", "symbols", postgresql_using="gin"),
        access_info(AccessClass.PUBLIC_DATA),
    )


class MarketEventCreate(MarketEventBase):
    pass


class MarketEventUpdate(SQLModel):
    event_type: EventType = unset()
    severity: EventSeverity = unset()
    summary: Summary | None = unset()
    keywords: Keywords = unset()
    symbols: Symbols = unset()


class MarketEventPublic(MarketEventBase):
    id: uuid.UUID
    created_at: datetime


class MarketEventsPublic(Page[MarketEventPublic]):
    pass


# -- trading_signals -------------------------------------------------------------------------


class TradingSignalBase(SQLModel):
    exchange: Name = Field(sa_type=_TEXT)
    symbol: Symbol = Field(sa_type=_TEXT)
    timeframe: Timeframe = Field(sa_type=_TEXT)
    signal: SignalValue = Field(sa_type=_TEXT)
    # The composite market score and the parts it is made of, each -1 (sell) to 1 (buy).
    composite_score: SignedScore = Field(sa_type=_SIGNED_SCORE)
    sentiment_component: SignedScore | None = Field(default=None, sa_type=_SIGNED_SCORE)
    technical_component: SignedScore | None = Field(default=None, sa_type=_SIGNED_SCORE)
    regime_component: SignedScore | None = Field(default=None, sa_type=_SIGNED_SCORE)
    explanation: Explanation | None = Field(default=None, sa_type=_TEXT)
    generated_at: AwareDatetime = Field(sa_type=_TS)

    @model_validator(mode="after")
    def _signal_matches_score(self) -> Self:
        if (self.signal is SignalValue.BUY and self.composite_score < 0) or (
            self.signal is SignalValue.SELL and self.composite_score > 0
        ):
            raise ValueError("a buy signal needs composite_score >= 0, a sell signal <= 0")
        return self


# One signal per series (exchange, symbol, timeframe) and time: the natural key, which also
# serves "latest per series" (a skip scan) and a series' history.
class TradingSignal(CreatedAtMixin, TradingSignalBase, IdMixin, table=True):
    __tablename__ = "trading_signals"
    __table_args__ = (
        sa.UniqueConstraint("exchange", "symbol", "timeframe", "generated_at"),
        check(
            "(signal <> 'buy' or composite_score >= 0)"
            " and (signal <> 'sell' or composite_score <= 0)",
            "signal_matches_score",
        ),
        access_info(AccessClass.PUBLIC_DATA),
    )


class TradingSignalCreate(TradingSignalBase):
    pass


class TradingSignalUpdate(SQLModel):
    explanation: Explanation | None = unset()


class TradingSignalPublic(TradingSignalBase):
    id: uuid.UUID
    created_at: datetime


class TradingSignalsPublic(Page[TradingSignalPublic]):
    pass
