"""`alert-service serve`: users manage their alert rules and read their alert events.

Every request needs a Supabase access token. Every database access runs in the package's user
session with the token's claims, so row-level security — not this code — keeps one user's rules
and events from another: nothing here filters by user id, and another user's rule is simply
not found (404).
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

import anyio
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel

from alert_service import rules
from database.errors import InvalidInputError
from database.schema import AlertCreate, AlertPublic, AlertUpdate
from database.schema.alerts import AlertEventsPublic, AlertsPublic
from database.sessions import Database
from service_kit.app import create_service_app
from service_kit.egress import TargetPolicy
from service_kit.errors import responses
from service_kit.pages import page_response, public_row, row_response
from service_kit.params import Cursor, PageLimit
from service_kit.sessions import UserSession, current_user_id, run_in
from service_kit.tokens import TokenVerifier

MAX_BODY_BYTES = 16_384
#: How long a webhook host may take to resolve when a rule is saved.
RESOLVE_SECONDS = 5.0


class AlertSaved(AlertPublic):
    # Shown once: the key this rule's webhook deliveries are signed with, in the response that
    # creates it (at creation, or when a PATCH first adds a webhook channel).
    webhook_secret: str | None = None


class WebhookSecret(BaseModel):
    # Shown once: the rule's new signing key; the previous one stops working at once.
    webhook_secret: str


def _saved(saved: rules.SavedRule) -> AlertSaved:
    public = public_row(saved.rule, AlertSaved, what="alert")
    return public.model_copy(update={"webhook_secret": saved.new_webhook_secret})


async def _vet_webhooks(channels: Any, targets: TargetPolicy) -> None:
    """Webhook hosts are resolved off the event loop, with a time limit, before the request's
    transaction starts."""
    check = partial(rules.check_webhook_targets, channels, targets=targets)
    try:
        with anyio.fail_after(RESOLVE_SECONDS):
            await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
    except TimeoutError:
        rule = "a webhook host did not resolve in time"
        problem = {"loc": ["body", "channels"], "msg": rule, "type": "webhook_target"}
        raise InvalidInputError(field="channels", rule=rule, errors=[problem]) from None


def create_app(
    *,
    database: Database | None = None,
    verifier: TokenVerifier | None = None,
    targets: TargetPolicy | None = None,
) -> FastAPI:
    """The app; `database`, `verifier` and the webhook `targets` policy default to ones built
    from the settings."""
    app = create_service_app(
        title="Alert service",
        version="0.3.0",
        database=database,
        verifier=verifier,
        max_body_bytes=MAX_BODY_BYTES,
    )
    webhook_targets = targets or TargetPolicy.from_settings(app.state.database.settings)

    @app.post(
        "/alerts",
        response_model=AlertSaved,
        status_code=201,
        responses=responses(401, 409, 413, 422, 503),
    )
    async def create_alert(request: Request, s: UserSession, body: AlertCreate) -> AlertSaved:
        await _vet_webhooks(body.channels, webhook_targets)
        user_id = current_user_id(request)
        return _saved(await run_in(s, rules.create_rule, user_id=user_id, data=body))

    @app.get("/alerts", response_model=AlertsPublic, responses=responses(401, 413, 422, 503))
    async def list_alerts(s: UserSession, limit: PageLimit = 50, cursor: Cursor = None) -> Response:
        page = await run_in(s, rules.list_rules, limit=limit, cursor=cursor)
        return page_response(page, AlertsPublic)

    @app.get(
        "/alerts/{alert_id}",
        response_model=AlertPublic,
        responses=responses(401, 404, 409, 413, 422, 503),
    )
    async def get_alert(s: UserSession, alert_id: uuid.UUID) -> Response:
        rule = await run_in(s, rules.get_rule, rule_id=alert_id)
        return row_response(rule, AlertPublic, what="alert")

    @app.patch(
        "/alerts/{alert_id}",
        response_model=AlertSaved,
        responses=responses(401, 404, 409, 413, 422, 503),
    )
    async def update_alert(s: UserSession, alert_id: uuid.UUID, body: AlertUpdate) -> AlertSaved:
        await _vet_webhooks(body.channels, webhook_targets)
        return _saved(await run_in(s, rules.update_rule, rule_id=alert_id, data=body))

    @app.post(
        "/alerts/{alert_id}/webhook-secret",
        response_model=WebhookSecret,
        responses=responses(401, 404, 409, 413, 422, 503),
    )
    async def rotate_webhook_secret(s: UserSession, alert_id: uuid.UUID) -> WebhookSecret:
        """A new signing secret for the rule's webhooks, shown once (409: no webhook channel)."""
        secret = await run_in(s, rules.rotate_webhook_secret, rule_id=alert_id)
        return WebhookSecret(webhook_secret=secret)

    @app.delete(
        "/alerts/{alert_id}",
        status_code=204,
        response_model=None,
        responses=responses(401, 404, 413, 422, 503),
    )
    async def delete_alert(s: UserSession, alert_id: uuid.UUID) -> Response:
        await run_in(s, rules.delete_rule, rule_id=alert_id)
        return Response(status_code=204)

    @app.get(
        "/alert-events", response_model=AlertEventsPublic, responses=responses(401, 413, 422, 503)
    )
    async def list_events(s: UserSession, limit: PageLimit = 50, cursor: Cursor = None) -> Response:
        page = await run_in(s, rules.list_events, limit=limit, cursor=cursor)
        return page_response(page, AlertEventsPublic)

    return app
