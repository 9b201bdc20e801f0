"""`whale-tracker serve`: the read-only HTTP API over whale transactions.

Public data, readable with no token (the `anon` role) or with a Supabase user token (the
`authenticated` role). Every read runs in a session of the caller's role, so the grants and
policies of the schema decide, exactly as they would for Supabase's own Data API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.responses import JSONResponse
from sqlmodel.ext.asyncio.session import AsyncSession

from database.auth import InvalidTokenError, TokenVerifier
from database.engine import Database
from database.errors import DatabaseUnavailableError, InvalidInputError
from database.models import Chain
from database.models.whales import (
    WhaleDailyStats,
    WhaleTransactionFilters,
    WhaleTransactionPublic,
    WhaleTransactionsPublic,
)
from database.repositories import AsyncRepository, WhaleTransactionRepository

MAX_PAGE = 200


async def caller_session(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> AsyncIterator[AsyncSession]:
    """A session in the caller's role: anon without a token, the user's claims with one."""
    db: Database = request.app.state.database
    if authorization is None:
        async with db.async_anon_session() as s:
            yield s
        return
    verifier = request.app.state.verifier
    if verifier is None:
        verifier = request.app.state.verifier = TokenVerifier.from_settings()
    # JWKS may need fetching: off the event loop.
    claims = await anyio.to_thread.run_sync(verifier.verify_header, authorization)
    async with db.async_user_session(claims=claims) as s:
        yield s


SessionDep = Annotated[AsyncSession, Depends(caller_session)]


def create_app(
    *, database: Database | None = None, verifier: TokenVerifier | None = None
) -> FastAPI:
    """The app; `database` and `verifier` default to ones built from the settings."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await app.state.database.adispose()

    app = FastAPI(
        title="Whale tracker",
        version="0.1.0",
        summary="Large on-chain transfers, scored; read-only.",
        lifespan=lifespan,
    )
    app.state.database = database or Database()
    app.state.verifier = verifier

    def whales(s: AsyncSession) -> AsyncRepository[WhaleTransactionRepository]:
        return AsyncRepository(s, WhaleTransactionRepository)

    @app.get("/whale-transactions", response_model=WhaleTransactionsPublic)
    async def list_whale_transactions(
        s: SessionDep,
        filters: Annotated[WhaleTransactionFilters, Query()],
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
    ) -> WhaleTransactionsPublic:
        """Newest first. Pass `next_cursor` back as `cursor` for the next page."""
        page = await whales(s).run(
            WhaleTransactionRepository.search, filters=filters, limit=limit, cursor=cursor
        )
        return WhaleTransactionsPublic(
            data=[WhaleTransactionPublic.model_validate(r) for r in page.rows],
            next_cursor=page.next_cursor,
        )

    @app.get(
        "/whale-transactions/{tx_hash}",
        response_model=WhaleTransactionPublic,
        responses={404: {"description": "No transaction with that hash"}},
    )
    async def get_whale_transaction(
        s: SessionDep, tx_hash: Annotated[str, Path(max_length=80)]
    ) -> WhaleTransactionPublic | JSONResponse:
        row = await whales(s).run(WhaleTransactionRepository.get_by_hash, hash=tx_hash)
        if row is None:
            return JSONResponse({"detail": "no whale transaction with that hash"}, status_code=404)
        return WhaleTransactionPublic.model_validate(row)

    @app.get("/stats/daily", response_model=list[WhaleDailyStats])
    async def daily_stats(
        s: SessionDep,
        chain: Chain | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[WhaleDailyStats]:
        """Per UTC day and chain: count, sums, median / p90 / p99 value, top score."""
        filters = {"chain": chain, "since": since, "until": until}
        return await whales(s).run(WhaleTransactionRepository.daily_stats, filters=filters)

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        return (await request.app.state.database.ahealth_check()).report()  # type: ignore[no-any-return]

    @app.exception_handler(DatabaseUnavailableError)
    async def unavailable(_: Request, exc: DatabaseUnavailableError) -> JSONResponse:
        return JSONResponse(
            {"detail": "database unavailable", "reason": exc.reason}, status_code=503
        )

    @app.exception_handler(InvalidInputError)
    async def invalid(_: Request, exc: InvalidInputError) -> JSONResponse:
        location = "path" if exc.field == "hash" else "query"
        detail = [{"loc": [location, exc.field], "msg": exc.rule, "type": "value_error"}]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(InvalidTokenError)
    async def unauthorized(_: Request, exc: InvalidTokenError) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.reason},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )

    return app
