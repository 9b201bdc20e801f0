"""Users' alert rules: what the API's handlers call. Keyword-only functions over the caller's
user session, so row-level security decides whose rules they see: another user's rule is simply
not found. None of them commits; the request's session does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import Session

from alert_service.queries import webhook_url
from database.errors import ConflictError, InvalidInputError, NotFoundError, invalid_input
from database.repositories import Repository
from database.schema import Alert, AlertCreate, AlertEvent, AlertUpdate
from database.schema.base import Page
from service_kit.egress import TargetPolicy, TargetRefusedError

# Issued by the database when a rule gains a webhook channel; readable (and rotated) by its
# owner only, through these functions: the secrets table is out of the user's reach.
_WEBHOOK_SECRET = sa.text("select private.webhook_secret(:rule)")
_ROTATE_SECRET = sa.text("select private.rotate_webhook_secret(:rule)")


class AlertRepository(Repository[Alert]):
    model = Alert
    sort = ("created_at", "id")


class AlertEventRepository(Repository[AlertEvent]):
    model = AlertEvent
    sort = ("triggered_at", "id")


@dataclass(frozen=True)
class SavedRule:
    rule: Alert
    # Shown once: when a rule first gets a webhook channel, the key its deliveries are signed
    # with.
    new_webhook_secret: str | None = None


def _has_webhook(channels: Any) -> bool:
    return any(
        (c.get("type") if isinstance(c, dict) else getattr(c, "type", None)) == "webhook"
        for c in channels or []
    )


def _secret(session: Session, rule_id: uuid.UUID) -> str | None:
    secret: str | None = session.execute(_WEBHOOK_SECRET, {"rule": rule_id}).scalar_one()
    return secret


def check_webhook_targets(channels: Any, /, *, targets: TargetPolicy) -> None:
    """Every webhook channel must point at a public HTTPS endpoint (its host resolved now; the
    deliverer checks again at every delivery). Resolves host names: call it off the event
    loop, before the session's transaction starts."""
    for index, channel in enumerate(channels or []):
        if getattr(channel, "type", None) != "webhook":
            continue
        try:
            targets.check_url(str(channel.url))
        except TargetRefusedError as exc:
            rule = f"must be a public HTTPS endpoint ({exc.reason})"
            loc = ["body", "channels", index, "url"]
            raise InvalidInputError(
                field=f"channels.{index}.url",
                rule=rule,
                errors=[{"loc": loc, "msg": rule, "type": "webhook_target"}],
            ) from None


def create_rule(session: Session, /, *, user_id: uuid.UUID, data: AlertCreate) -> SavedRule:
    """The caller's new rule. The database counts the caller's rules (at most
    MAX_RULES_PER_USER, race-free: a ConflictError beyond) and issues the webhook secret."""
    rule = AlertRepository(session).create(data=data, user_id=user_id)
    secret = _secret(session, rule.id) if _has_webhook(data.channels) else None
    return SavedRule(rule, secret)


def get_rule(session: Session, /, *, rule_id: uuid.UUID) -> Alert:
    rule = AlertRepository(session).get(id=rule_id)
    if rule is None:
        raise NotFoundError(what="alert")
    return rule


def list_rules(session: Session, /, *, limit: int, cursor: str | None) -> Page[Alert]:
    return AlertRepository(session).list(limit=limit, cursor=cursor)


def update_rule(session: Session, /, *, rule_id: uuid.UUID, data: AlertUpdate) -> SavedRule:
    current = get_rule(session, rule_id=rule_id)
    had_webhook = _has_webhook(current.channels)
    if data.conditions is not None and data.conditions.alert_type != current.alert_type:
        raise InvalidInputError(
            field="conditions.alert_type", rule=f"must stay {current.alert_type}"
        )
    try:
        rule = AlertRepository(session).update(id=rule_id, data=data)
        if rule is None:  # deleted meanwhile
            raise NotFoundError(what="alert")
        gained = _has_webhook(data.channels) and not had_webhook
        secret = _secret(session, rule.id) if gained else None
    except StaleDataError:  # deleted by a concurrent request between our read and our write
        raise NotFoundError(what="alert") from None
    except ValidationError as exc:  # the stored row, merged with the patch, breaks the model
        problem = invalid_input(exc)
        raise ConflictError(
            field=problem.field,
            rule=f"the stored alert breaks a rule ({problem.field}: {problem.rule});"
            " update it with valid values or delete it",
        ) from None
    return SavedRule(rule, secret)


def rotate_webhook_secret(session: Session, /, *, rule_id: uuid.UUID) -> str:
    """A new signing secret for the rule's webhook deliveries (the old one stops working)."""
    rule = get_rule(session, rule_id=rule_id)
    if webhook_url(rule.channels) is None:
        raise ConflictError(field="channels", rule="the rule has no webhook channel")
    secret: str | None = session.execute(_ROTATE_SECRET, {"rule": rule_id}).scalar_one()
    if secret is None:  # deleted meanwhile
        raise NotFoundError(what="alert")
    return secret


def delete_rule(session: Session, /, *, rule_id: uuid.UUID) -> None:
    if not AlertRepository(session).delete(id=rule_id):
        raise NotFoundError(what="alert")


def list_events(session: Session, /, *, limit: int, cursor: str | None) -> Page[AlertEvent]:
    return AlertEventRepository(session).list(limit=limit, cursor=cursor)
