"""LLM analysis logs (internal): recording calls and what they cost, per model and purpose."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from database.repositories.base import Repository
from database.repositories.periods import period
from database.schema.llm import LlmAnalysisLog, LlmUsage

_USAGE = sa.text(
    """
    select model, purpose, count(*) as calls, count(error) as errors,
           coalesce(sum(prompt_tokens), 0) as prompt_tokens,
           coalesce(sum(completion_tokens), 0) as completion_tokens,
           coalesce(sum(cost_usd), 0) as cost_usd,
           avg(latency_ms)::float8 as average_latency_ms
      from llm_analysis_logs
     where requested_at >= :since and requested_at < :until
     group by model, purpose
     order by model, purpose
    """
)


class LlmAnalysisLogRepository(Repository[LlmAnalysisLog]):
    model = LlmAnalysisLog
    sort = ("requested_at", "id")

    def usage(self, *, since: datetime, until: datetime) -> list[LlmUsage]:
        """Calls, errors, tokens, cost and mean latency per model and purpose, in SQL."""
        rows = self.session.execute(_USAGE, period(since, until)).mappings()
        return [LlmUsage.model_validate(dict(r)) for r in rows]
