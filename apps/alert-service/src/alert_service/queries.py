"""The alert service's own SQL: matching a stream's new rows against rules (each type's
statement: sources.py), recording events and the webhook delivery queue (the stream position:
stream.py). Keyword-only functions over the caller's session; none of them commits (the
evaluator and deliverer own their transactions).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from alert_service.sources import Source
from database.schema import AlertType

# -- matching and recording -------------------------------------------------------------------

_RULES_OF_TYPE = sa.text("select id from alerts where enabled and alert_type = :type order by id")
_DISABLE = sa.text(
    "update alerts set enabled = false, disabled_reason = :reason where id = :id returning user_id"
)

# Candidates become events unless the rule is cooling down (an event within cooldown_seconds)
# or the pair was recorded before (the unique key: a retry or a second worker changes nothing).
# The same statement for every source: the match gave the row's description.
_RECORD = sa.text("""
    insert into alert_events (alert_id, user_id, source, source_id, payload, delivery_status)
    select a.id, a.user_id, cast(:source as text), c.source_id,
           jsonb_build_object('alert', a.name, 'source', cast(:source as text)) || c.payload,
           case when a.channels @> '[{"type": "webhook"}]' then 'pending' else 'delivered' end
      from unnest(cast(:alert_ids as uuid[]), cast(:source_ids as uuid[]),
                  cast(:payloads as jsonb[])) as c(alert_id, source_id, payload)
      join alerts a on a.id = c.alert_id and a.enabled
     where a.cooldown_seconds = 0
        or not exists (select 1 from alert_events e where e.alert_id = a.id
                        and e.triggered_at > now() - make_interval(secs => a.cooldown_seconds))
    on conflict (alert_id, source, source_id) do nothing
    returning id
""")


@dataclass(frozen=True)
class AlertMatch:
    alert_id: uuid.UUID
    user_id: uuid.UUID
    source_id: uuid.UUID
    cooldown_seconds: int
    payload: str  # the source row's description, JSON text


def match_rules(
    session: Session,
    *,
    source: Source,
    row_ids: Sequence[uuid.UUID],
    rule_ids: Sequence[uuid.UUID] | None = None,
) -> list[AlertMatch]:
    """(rule, row) pairs where an enabled rule of the source's type holds for a row of the
    batch (only the rules `rule_ids`, when given). Cooldowns are decided when recording."""
    if not row_ids or rule_ids == []:
        return []
    params: dict[str, Any] = {"ids": list(row_ids)}
    if rule_ids is not None:
        params["rule_ids"] = list(rule_ids)
    rows = session.execute(source.match(narrowed=rule_ids is not None), params)
    return [AlertMatch(*row) for row in rows]


def rule_ids(session: Session, *, alert_type: AlertType) -> list[uuid.UUID]:
    """Every enabled rule of a type."""
    return list(session.execute(_RULES_OF_TYPE, {"type": alert_type.value}).scalars())


def disable_rule(session: Session, *, rule_id: uuid.UUID, reason: str) -> uuid.UUID | None:
    """Switch a rule off, saying why; its owner's id (None when the rule is gone)."""
    params = {"id": rule_id, "reason": reason[:500]}
    owner: uuid.UUID | None = session.execute(_DISABLE, params).scalar_one_or_none()
    return owner


def record_events(session: Session, *, source: Source, matches: Sequence[AlertMatch]) -> int:
    """Turn matches into events: at most one per rule in a batch when the rule has a cooldown
    (the earliest row), none while it is cooling down, never the same (rule, row) twice.
    Returns how many events were written."""
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
            "source": source.table.value,
            "alert_ids": [m.alert_id for m in pairs],
            "source_ids": [m.source_id for m in pairs],
            "payloads": [m.payload for m in pairs],
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
