"""Alert rules and events: the SQL-side matching of whale transactions against enabled rules."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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


# Candidates become events unless the rule is cooling down (an event within cooldown_seconds)
# or the pair was recorded before (the unique key: a retry or a second worker changes nothing).
_RECORD = """
    insert into alert_events (alert_id, user_id, whale_transaction_id, payload, delivery_status)
    select a.id, a.user_id, t.id,
           jsonb_build_object(
               'alert', a.name, 'hash', t.hash, 'chain', t.chain,
               'value_eth', t.value_eth::text, 'value_usd', t.value_usd::text,
               'from_address', t.from_address, 'to_address', t.to_address,
               'block_number', t.block_number, 'block_timestamp', t.block_timestamp,
               'whale_score', t.whale_score::text),
           case when a.channels @> '[{"type": "webhook"}]' then 'pending' else 'delivered' end
      from unnest(cast(:alert_ids as uuid[]), cast(:tx_ids as uuid[])) as c(alert_id, tx_id)
      join alerts a on a.id = c.alert_id and a.enabled
      join whale_transactions t on t.id = c.tx_id
     where a.cooldown_seconds = 0
        or not exists (select 1 from alert_events e where e.alert_id = a.id
                        and e.triggered_at > now() - make_interval(secs => a.cooldown_seconds))
    on conflict (alert_id, whale_transaction_id) do nothing
    returning id
"""

# Claim due webhook deliveries: SKIP LOCKED keeps two workers off the same event, and the lease
# (next_attempt_at moved ahead) keeps it claimed while the HTTP call runs outside the lock.
_CLAIM = """
    update alert_events e
       set attempts = e.attempts + 1, next_attempt_at = now() + make_interval(secs => :lease)
      from alerts a
     where a.id = e.alert_id
       and e.id in (select id from alert_events
                     where delivery_status = 'pending' and next_attempt_at <= now()
                     order by next_attempt_at limit :limit for update skip locked)
    returning e.id, e.alert_id, e.payload, e.attempts, e.triggered_at, a.channels, a.webhook_secret
"""


@dataclass(frozen=True)
class WebhookJob:
    event_id: uuid.UUID
    alert_id: uuid.UUID
    payload: dict[str, Any]
    attempt: int
    triggered_at: datetime
    url: str | None
    secret: str | None


class AlertEventRepository(Repository[AlertEvent]):
    model = AlertEvent
    sort = ("triggered_at", "id")

    def record_whale_matches(self, *, matches: Sequence[AlertMatch]) -> int:
        """Turn matches into events: at most one per rule in a batch when the rule has a
        cooldown (the earliest transaction), none while it is cooling down, never the same
        (rule, transaction) twice. Returns how many events were written."""
        chosen: dict[uuid.UUID, list[AlertMatch]] = {}
        for match in matches:
            kept = chosen.setdefault(match.alert_id, [])
            if match.cooldown_seconds == 0 or not kept:
                kept.append(match)
        pairs = [m for kept in chosen.values() for m in kept]
        if not pairs:
            return 0
        rows = self.session.execute(
            sa.text(_RECORD),
            {
                "alert_ids": [m.alert_id for m in pairs],
                "tx_ids": [m.whale_transaction_id for m in pairs],
            },
        )
        return len(rows.all())

    def claim_webhooks(self, *, limit: int = 50, lease_seconds: int = 60) -> list[WebhookJob]:
        """Due webhook deliveries, claimed for this worker (attempts already counted)."""
        rows = self.session.execute(sa.text(_CLAIM), {"limit": limit, "lease": lease_seconds})
        jobs = []
        for row in rows:
            url = next((c["url"] for c in row.channels if c.get("type") == "webhook"), None)
            jobs.append(
                WebhookJob(
                    row.id,
                    row.alert_id,
                    row.payload,
                    row.attempts,
                    row.triggered_at,
                    url,
                    row.webhook_secret,
                )
            )
        return jobs

    def settle(
        self,
        *,
        event_id: uuid.UUID,
        delivered: bool,
        error: str | None = None,
        retry_in_seconds: float | None = None,
    ) -> None:
        """Record a delivery outcome: delivered, retry later, or failed for good."""
        status = (
            "delivered" if delivered else ("pending" if retry_in_seconds is not None else "failed")
        )
        self.session.execute(
            sa.text(
                "update alert_events set delivery_status = :status, last_error = :error,"
                " next_attempt_at = now() + make_interval(secs => :delay) where id = :id"
            ),
            {
                "status": status,
                "error": error[:2000] if error else None,
                "delay": retry_in_seconds or 0,
                "id": event_id,
            },
        )
