"""`alert-service serve`: users manage their alert rules and read their alert events.

Every request needs a Supabase access token. Every database access runs in the package's
user session with the token's claims, so row-level security — not this code — keeps one
user's rules and events from another: nothing here filters by user id, and another user's rule
is simply not found (404).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
import sqlalchemy as sa
from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlmodel.ext.asyncio.session import AsyncSession

from database.auth import InvalidTokenError, TokenVerifier
from database.engine import Database
from database.errors import DatabaseUnavailableError, InvalidInputError
from database.models import AlertCreate, AlertPublic, AlertUpdate
from database.models.alerts import AlertEventPublic, AlertEventsPublic, AlertsPublic
from database.repositories import AlertEventRepository, AlertRepository, AsyncRepository

MAX_RULES_PER_USER = 100
MAX_BODY_BYTES = 16_384
MAX_PAGE = 200


class AlertCreated(AlertPublic):
    # Shown once, at creation: the key this rule's webhook deliveries are signed with.
    webhook_secret: str | None = None


async def user_session(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> AsyncIterator[AsyncSession]:
    if authorization is None:
        raise InvalidTokenError("missing Authorization: Bearer <access token>")
    verifier = request.app.state.verifier
    if verifier is None:
        verifier = request.app.state.verifier = TokenVerifier.from_settings()
    # JWKS may need fetching: off the event loop.
    claims = await anyio.to_thread.run_sync(verifier.verify_header, authorization)
    request.state.user_id = uuid.UUID(claims["sub"])
    db: Database = request.app.state.database
    async with db.async_user_session(claims=claims) as session:
        yield session


UserSession = Annotated[AsyncSession, Depends(user_session)]


def _has_webhook(channels: Any) -> bool:
    return any(getattr(c, "type", None) == "webhook" for c in channels or [])


def create_app(
    *, database: Database | None = None, verifier: TokenVerifier | None = None
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await app.state.database.adispose()

    app = FastAPI(title="Alert service", version="0.1.0", lifespan=lifespan)
    app.state.database = database or Database()
    app.state.verifier = verifier

    @app.middleware("http")
    async def limit_body(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return JSONResponse(
                {"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413
            )
        return await call_next(request)

    def rules(s: AsyncSession) -> AsyncRepository[AlertRepository]:
        return AsyncRepository(s, AlertRepository)

    @app.post("/alerts", response_model=AlertCreated, status_code=201)
    async def create_alert(
        request: Request, s: UserSession, body: AlertCreate
    ) -> AlertCreated | JSONResponse:
        connection = await s.connection()
        count = (await connection.execute(sa.text("select count(*) from alerts"))).scalar_one()
        if count >= MAX_RULES_PER_USER:
            return JSONResponse(
                {"detail": f"rule limit reached: at most {MAX_RULES_PER_USER} rules per user"},
                status_code=409,
            )
        # RLS shows only the caller's rules: this counts theirs.
        secret = secrets.token_hex(32) if _has_webhook(body.channels) else None
        row = await rules(s).run(
            AlertRepository.create, data=body, user_id=request.state.user_id, webhook_secret=secret
        )
        return AlertCreated.model_validate({**row.model_dump(), "webhook_secret": secret})

    @app.get("/alerts", response_model=AlertsPublic)
    async def list_alerts(
        s: UserSession,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
    ) -> AlertsPublic:
        page = await rules(s).run(AlertRepository.list, limit=limit, cursor=cursor)
        return AlertsPublic(
            data=[AlertPublic.model_validate(r) for r in page.rows], next_cursor=page.next_cursor
        )

    @app.get("/alerts/{alert_id}", response_model=AlertPublic)
    async def get_alert(s: UserSession, alert_id: uuid.UUID) -> AlertPublic | JSONResponse:
        row = await rules(s).run(AlertRepository.get, id=alert_id)
        return _not_found() if row is None else AlertPublic.model_validate(row)

    @app.patch("/alerts/{alert_id}", response_model=AlertPublic)
    async def update_alert(
        s: UserSession, alert_id: uuid.UUID, body: AlertUpdate
    ) -> AlertPublic | JSONResponse:
        current = await rules(s).run(AlertRepository.get, id=alert_id)
        if current is None:
            return _not_found()
        if body.conditions is not None and body.conditions.alert_type != current.alert_type:
            raise InvalidInputError(
                field="conditions.alert_type", rule=f"must stay {current.alert_type}"
            )
        row = await rules(s).run(AlertRepository.update, id=alert_id, data=body)
        if row is None:
            return _not_found()
        if _has_webhook(body.channels) and row.webhook_secret is None:
            await (await s.connection()).execute(
                sa.text("update alerts set webhook_secret = :k where id = :id"),
                {"k": secrets.token_hex(32), "id": alert_id},
            )
        return AlertPublic.model_validate(row)

    @app.delete("/alerts/{alert_id}", status_code=204, response_model=None)
    async def delete_alert(s: UserSession, alert_id: uuid.UUID) -> Response:
        deleted = await rules(s).run(AlertRepository.delete, id=alert_id)
        return Response(status_code=204) if deleted else _not_found()

    @app.get("/alert-events", response_model=AlertEventsPublic)
    async def list_events(
        s: UserSession,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
    ) -> AlertEventsPublic:
        repo = AsyncRepository(s, AlertEventRepository)
        page = await repo.run(AlertEventRepository.list, limit=limit, cursor=cursor)
        return AlertEventsPublic(
            data=[AlertEventPublic.model_validate(r) for r in page.rows],
            next_cursor=page.next_cursor,
        )

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        return (await request.app.state.database.ahealth_check()).report()  # type: ignore[no-any-return]

    @app.exception_handler(InvalidTokenError)
    async def unauthorized(_: Request, exc: InvalidTokenError) -> JSONResponse:
        challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        return JSONResponse({"detail": exc.reason}, status_code=401, headers=challenge)

    @app.exception_handler(InvalidInputError)
    async def invalid(_: Request, exc: InvalidInputError) -> JSONResponse:
        detail = [
            {
                "loc": ["body" if "." in exc.field else "query", *exc.field.split(".")],
                "msg": exc.rule,
                "type": "value_error",
            }
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(DatabaseUnavailableError)
    async def unavailable(_: Request, exc: DatabaseUnavailableError) -> JSONResponse:
        return JSONResponse(
            {"detail": "database unavailable", "reason": exc.reason}, status_code=503
        )

    return app


def _not_found() -> JSONResponse:
    return JSONResponse({"detail": "no such alert"}, status_code=404)
