"""`alert-service serve`: users manage their alert rules and read their alert events.

Every request needs a Supabase access token. Every database access runs in the package's user
session with the token's claims, so row-level security — not this code — keeps one user's rules
and events from another: nothing here filters by user id, and another user's rule is simply
not found (404).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import FastAPI, Query, Request, Response

from alert_service import rules
from database.schema import AlertCreate, AlertPublic, AlertUpdate
from database.schema.alerts import AlertEventsPublic, AlertsPublic
from database.sessions import Database
from service_kit.app import create_service_app
from service_kit.errors import responses
from service_kit.pages import public_page
from service_kit.sessions import UserSession, current_user_id, run_in
from service_kit.tokens import TokenVerifier

MAX_BODY_BYTES = 16_384
MAX_PAGE = 200


class AlertSaved(AlertPublic):
    # Shown once: the key this rule's webhook deliveries are signed with, in the response that
    # creates it (at creation, or when a PATCH first adds a webhook channel).
    webhook_secret: str | None = None


def _saved(saved: rules.SavedRule) -> AlertSaved:
    public = AlertSaved.model_validate(saved.rule)
    return public.model_copy(update={"webhook_secret": saved.new_webhook_secret})


def create_app(
    *, database: Database | None = None, verifier: TokenVerifier | None = None
) -> FastAPI:
    app = create_service_app(
        title="Alert service",
        version="0.2.0",
        database=database,
        verifier=verifier,
        max_body_bytes=MAX_BODY_BYTES,
    )

    @app.post(
        "/alerts",
        response_model=AlertSaved,
        status_code=201,
        responses=responses(401, 409, 413, 422, 503),
    )
    async def create_alert(request: Request, s: UserSession, body: AlertCreate) -> AlertSaved:
        user_id = current_user_id(request)
        return _saved(await run_in(s, rules.create_rule, user_id=user_id, data=body))

    @app.get("/alerts", response_model=AlertsPublic, responses=responses(401, 422, 503))
    async def list_alerts(
        s: UserSession,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
    ) -> AlertsPublic:
        page = await run_in(s, rules.list_rules, limit=limit, cursor=cursor)
        return public_page(page, AlertsPublic)

    @app.get(
        "/alerts/{alert_id}", response_model=AlertPublic, responses=responses(401, 404, 422, 503)
    )
    async def get_alert(s: UserSession, alert_id: uuid.UUID) -> AlertPublic:
        return AlertPublic.model_validate(await run_in(s, rules.get_rule, rule_id=alert_id))

    @app.patch(
        "/alerts/{alert_id}",
        response_model=AlertSaved,
        responses=responses(401, 404, 409, 413, 422, 503),
    )
    async def update_alert(s: UserSession, alert_id: uuid.UUID, body: AlertUpdate) -> AlertSaved:
        return _saved(await run_in(s, rules.update_rule, rule_id=alert_id, data=body))

    @app.delete(
        "/alerts/{alert_id}",
        status_code=204,
        response_model=None,
        responses=responses(401, 404, 422, 503),
    )
    async def delete_alert(s: UserSession, alert_id: uuid.UUID) -> Response:
        await run_in(s, rules.delete_rule, rule_id=alert_id)
        return Response(status_code=204)

    @app.get("/alert-events", response_model=AlertEventsPublic, responses=responses(401, 422, 503))
    async def list_events(
        s: UserSession,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
    ) -> AlertEventsPublic:
        page = await run_in(s, rules.list_events, limit=limit, cursor=cursor)
        return public_page(page, AlertEventsPublic)

    return app
