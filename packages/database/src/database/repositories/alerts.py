"""Alert rules and events: the SQL-side matching of whale transactions against enabled rules."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from database.models.alerts import Alert, AlertEvent
from database.repositories.base import Repository

# Every common condition of a whale_transaction rule, evaluated by the database for a batch.
_MATCH_WHALES = """
    select a.id as alert_id, a.user_id, t.id as whale_transaction_id, a.cooldown_seconds
      from whale_transactions t
      join alerts a
        on a.enabled
       and a.alert_type = 'whale_transaction'
       and (a.conditions ->> 'chain' is null or a.conditions ->> 'chain' = t.chain)
       and (a.conditions ->> 'min_value_eth' is null
            or t.value_eth >= (a.conditions ->> 'min_value_eth')::numeric)
       and (a.conditions ->> 'min_value_usd' is null
            or t.value_usd >= (a.conditions ->> 'min_value_usd')::numeric)
       and (a.conditions ->> 'min_whale_score' is null
            or t.whale_score >= (a.conditions ->> 'min_whale_score')::numeric)
       and (coalesce(jsonb_array_length(a.conditions -> 'addresses'), 0) = 0
            or a.conditions -> 'addresses'
               ?| array_remove(array[t.from_address, t.to_address], null))
     where t.id = any(:ids)
     order by t.block_timestamp, t.id, a.id
"""


@dataclass(frozen=True)
class AlertMatch:
    alert_id: uuid.UUID
    user_id: uuid.UUID
    whale_transaction_id: uuid.UUID
    cooldown_seconds: int


class AlertRepository(Repository[Alert]):
    model = Alert
    sort = ("created_at", "id")

    def matching_whale_alerts(self, *, transaction_ids: Sequence[uuid.UUID]) -> list[AlertMatch]:
        """(rule, transaction) pairs where an enabled whale_transaction rule's conditions hold
        for a transaction of the batch. Cooldowns are the evaluator's business."""
        if not transaction_ids:
            return []
        rows = self.session.execute(sa.text(_MATCH_WHALES), {"ids": list(transaction_ids)})
        return [AlertMatch(*row) for row in rows]


class AlertEventRepository(Repository[AlertEvent]):
    model = AlertEvent
    sort = ("triggered_at", "id")
