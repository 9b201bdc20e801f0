"""The alert service's own SQL: matching whale transactions against rules, recording events
and the webhook delivery queue (the stream position: stream.py). Keyword-only functions over
the caller's session; none of them commits (the evaluator and deliverer own their
transactions).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

# -- matching and recording -------------------------------------------------------------------

# Every common condition of a whale_transaction rule, evaluated by the database for a batch.
# A rule's conditions are JSON a user wrote, perhaps around the API (the Data API): a value the
# casts below cannot take fails the statement, and the evaluator then finds the rule and
# quarantines it (evaluator.py). `{rules}` narrows the rules for that search.
_MATCH_WHALES_SQL = """
    select a.id as alert_id, a.user_id, t.id as whale_transaction_id, a.cooldown_seconds
      from whale_transactions t
      join alerts a
        on a.enabled
       and a.alert_type = 'whale_transaction'{rules}
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
_MATCH_WHALES = sa.text(_MATCH_WHALES_SQL.format(rules=""))
_MATCH_WHALES_OF = sa.text(_MATCH_WHALES_SQL.format(rules="\n       and a.id = any(:rule_ids)"))
_WHALE_RULES = sa.text(
    "select id from alerts where enabled and alert_type = 'whale_transaction' order by id"
)
_DISABLE = sa.text("update alerts set enabled = false where id = :id returning user_id")

# Candidates become events unless the rule is cooling down (an event within cooldown_seconds)
# or the pair was recorded before (the unique key: a retry or a second worker changes nothing).
_RECORD = sa.text("""
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
""")


@dataclass(frozen=True)
class AlertMatch:
    alert_id: uuid.UUID
    user_id: uuid.UUID
    whale_transaction_id: uuid.UUID
    cooldown_seconds: int


def match_whale_rules(
    session: Session,
    *,
    transaction_ids: Sequence[uuid.UUID],
    rule_ids: Sequence[uuid.UUID] | None = None,
) -> list[AlertMatch]:
    """(rule, transaction) pairs where an enabled whale_transaction rule's conditions hold for
    a transaction of the batch (only the rules `rule_ids`, when given). Cooldowns are decided
    when recording."""
    if not transaction_ids or rule_ids == []:
        return []
    params: dict[str, Any] = {"ids": list(transaction_ids)}
    if rule_ids is None:
        rows = session.execute(_MATCH_WHALES, params)
    else:
        rows = session.execute(_MATCH_WHALES_OF, {**params, "rule_ids": list(rule_ids)})
    return [AlertMatch(*row) for row in rows]


def whale_rule_ids(session: Session) -> list[uuid.UUID]:
    """Every enabled whale_transaction rule."""
    return list(session.execute(_WHALE_RULES).scalars())


def disable_rule(session: Session, *, rule_id: uuid.UUID) -> uuid.UUID | None:
    """Switch a rule off; its owner's id (None when the rule is gone)."""
    owner: uuid.UUID | None = session.execute(_DISABLE, {"id": rule_id}).scalar_one_or_none()
    return owner


def record_whale_events(session: Session, *, matches: Sequence[AlertMatch]) -> int:
    """Turn matches into events: at most one per rule in a batch when the rule has a cooldown
    (the earliest transaction), none while it is cooling down, never the same (rule,
    transaction) twice. Returns how many events were written."""
    chosen: dict[uuid.UUID, list[AlertMatch]] = {}
    for match in matches:
        kept = chosen.setdefault(match.alert_id, [])
        if match.cooldown_seconds == 0 or not kept:
            kept.append(match)
    pairs = [m for kept in chosen.values() for m in kept]
    if not pairs:
        return 0
    rows = session.execute(
        _RECORD,
        {
            "alert_ids": [m.alert_id for m in pairs],
            "tx_ids": [m.whale_transaction_id for m in pairs],
        },
    )
    return len(rows.all())


# -- webhook delivery queue -------------------------------------------------------------------

# Claim due webhook deliveries: SKIP LOCKED keeps two workers off the same event, and the lease
# (next_attempt_at moved ahead) keeps it claimed while the HTTP call runs outside the lock.
_CLAIM = sa.text("""
    update alert_events e
       set attempts = e.attempts + 1, next_attempt_at = now() + make_interval(secs => :lease)
      from alerts a
      left join alert_webhook_secrets s on s.alert_id = a.id
     where a.id = e.alert_id
       and e.id in (select id from alert_events
                     where delivery_status = 'pending' and next_attempt_at <= now()
                     order by next_attempt_at limit :limit for update skip locked)
    returning e.id, e.alert_id, e.payload, e.attempts, e.triggered_at, a.channels,
              s.secret as webhook_secret
""")
_SETTLE = sa.text(
    "update alert_events set delivery_status = :status, last_error = :error,"
    " next_attempt_at = now() + make_interval(secs => :delay) where id = :id"
)


@dataclass(frozen=True)
class WebhookJob:
    event_id: uuid.UUID
    alert_id: uuid.UUID
    payload: Any
    attempt: int
    triggered_at: datetime
    # None when the rule's channels name no usable webhook (a row written around the API).
    url: str | None
    secret: str | None


def webhook_url(channels: Any) -> str | None:
    """The first webhook channel's url, read defensively: `channels` is whatever JSON the
    row holds, so anything but a list of objects with a string url yields None."""
    if not isinstance(channels, list):
        return None
    for channel in channels:
        if isinstance(channel, dict) and channel.get("type") == "webhook":
            url = channel.get("url")
            return url if isinstance(url, str) and url else None
    return None


def claim_webhooks(session: Session, *, limit: int, lease_seconds: int) -> list[WebhookJob]:
    """Due webhook deliveries, claimed for this worker (attempts already counted)."""
    jobs = []
    for row in session.execute(_CLAIM, {"limit": limit, "lease": lease_seconds}):
        secret = row.webhook_secret if isinstance(row.webhook_secret, str) else None
        jobs.append(
            WebhookJob(
                event_id=row.id,
                alert_id=row.alert_id,
                payload=row.payload,
                attempt=row.attempts,
                triggered_at=row.triggered_at,
                url=webhook_url(row.channels),
                secret=secret or None,
            )
        )
    return jobs


def settle_delivery(
    session: Session,
    *,
    event_id: uuid.UUID,
    delivered: bool,
    error: str | None = None,
    retry_in_seconds: float | None = None,
) -> None:
    """Record a delivery outcome: delivered, retry later, or failed for good."""
    retry = retry_in_seconds is not None
    status = "delivered" if delivered else ("pending" if retry else "failed")
    session.execute(
        _SETTLE,
        {
            "status": status,
            "error": error[:2000] if error else None,
            "delay": retry_in_seconds or 0,
            "id": event_id,
        },
    )
