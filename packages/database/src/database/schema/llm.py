"""LLM analysis logs: every call the trading service makes to a language model, with what it
cost and what it decided. Internal: the service writes and reads them; users see nothing."""

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Self

import sqlalchemy as sa
from pydantic import AwareDatetime, model_validator
from pydantic import Field as PydanticField
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from database.schema.base import AccessClass, CreatedAtMixin, IdMixin, access_info, check, utc_now
from database.schema.research import SignalValue
from database.schema.rules import Int, Text
from database.schema.types import Name, PlainDigits, Symbol

_TEXT: Any = sa.Text
_TS: Any = sa.DateTime(timezone=True)

#: Request and response documents are the provider's JSON, kept whole up to this size.
MAX_DOCUMENT_BYTES = 262_144


class LlmPurpose(StrEnum):
    MARKET_ANALYSIS = "market_analysis"
    TRADE_DECISION = "trade_decision"
    SENTIMENT = "sentiment"
    RISK_REVIEW = "risk_review"
    SUMMARY = "summary"
    OTHER = "other"


Tokens = Annotated[int, Int(ge=0)]
LatencyMs = Annotated[int, Int(ge=0)]
#: What a call cost, in USD to a millionth of a cent.
CostUsd = Annotated[Decimal, PydanticField(ge=0, max_digits=14, decimal_places=8), PlainDigits]
LlmError = Annotated[str, Text(max_length=10_000)]


def _bounded(document: dict[str, Any], field: str) -> None:
    import json

    if len(json.dumps(document, default=str).encode()) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"{field} must serialize to at most {MAX_DOCUMENT_BYTES} bytes")


class LlmAnalysisLogBase(SQLModel):
    model: Name = Field(sa_type=_TEXT)
    purpose: LlmPurpose = Field(sa_type=_TEXT)
    symbol: Symbol | None = Field(default=None, sa_type=_TEXT)
    prompt_tokens: Tokens = Field(default=0, sa_column_kwargs={"server_default": "0"})
    completion_tokens: Tokens = Field(default=0, sa_column_kwargs={"server_default": "0"})
    latency_ms: LatencyMs
    cost_usd: CostUsd = Field(
        default=Decimal(0), sa_type=sa.Numeric(14, 8), sa_column_kwargs={"server_default": "0"}
    )
    # What the model advised, when the call was for a decision.
    decision: SignalValue | None = Field(default=None, sa_type=_TEXT)
    error: LlmError | None = Field(default=None, sa_type=_TEXT)
    requested_at: AwareDatetime = Field(default_factory=utc_now, sa_type=_TS)


class LlmAnalysisLog(CreatedAtMixin, LlmAnalysisLogBase, IdMixin, table=True):
    __tablename__ = "llm_analysis_logs"
    __table_args__ = (
        # Cost and usage reports per model over time; a symbol's analyses.
        sa.Index("ix_llm_analysis_logs_model_requested_at", "model", "requested_at"),
        sa.Index("ix_llm_analysis_logs_symbol_requested_at", "symbol", "requested_at"),
        check("jsonb_typeof(request) = 'object'", "request_is_object"),
        check("jsonb_typeof(response) = 'object'", "response_is_object"),
        check(
            f"octet_length(request::text) <= {MAX_DOCUMENT_BYTES}"
            f" and octet_length(response::text) <= {MAX_DOCUMENT_BYTES}",
            "documents_bounded",
        ),
        access_info(AccessClass.INTERNAL),
    )

    request: dict[str, Any] = Field(
        default_factory=dict,
        sa_type=JSONB,
        sa_column_kwargs={"server_default": sa.text("'{}'::jsonb")},
    )
    response: dict[str, Any] = Field(
        default_factory=dict,
        sa_type=JSONB,
        sa_column_kwargs={"server_default": sa.text("'{}'::jsonb")},
    )


class LlmAnalysisLogCreate(LlmAnalysisLogBase):
    request: dict[str, Any] = PydanticField(default_factory=dict)
    response: dict[str, Any] = PydanticField(default_factory=dict)

    @model_validator(mode="after")
    def _bounded_documents(self) -> Self:
        _bounded(self.request, "request")
        _bounded(self.response, "response")
        return self


class LlmAnalysisLogPublic(LlmAnalysisLogBase):
    id: uuid.UUID
    request: dict[str, Any]
    response: dict[str, Any]
    created_at: datetime


class LlmUsage(SQLModel):
    """Calls, tokens and cost of one model for one purpose over a period."""

    model: str
    purpose: LlmPurpose
    calls: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal
    average_latency_ms: float
