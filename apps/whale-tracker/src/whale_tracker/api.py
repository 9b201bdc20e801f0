"""`whale-tracker serve`: the read-only HTTP API over whale transactions.

Public data, readable with no token (the `anon` role) or with a Supabase user token (the
`authenticated` role). Every read runs in a session of the caller's role, so the grants and
policies of the schema decide, exactly as they would for Supabase's own Data API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import FastAPI, Path, Query

from database.errors import NotFoundError
from database.repositories import AsyncRepository, WhaleTransactionRepository
from database.schema import Chain
from database.schema.whales import (
    WhaleDailyStats,
    WhaleTransactionFilters,
    WhaleTransactionPublic,
    WhaleTransactionsPublic,
)
from database.sessions import Database
from service_kit.app import create_service_app
from service_kit.errors import responses
from service_kit.pages import public_page
from service_kit.sessions import CallerSession
from service_kit.tokens import TokenVerifier

MAX_PAGE = 200


def _whales(session: CallerSession) -> AsyncRepository[WhaleTransactionRepository]:
    return AsyncRepository(session, WhaleTransactionRepository)


def create_app(
    *, database: Database | None = None, verifier: TokenVerifier | None = None
) -> FastAPI:
    """The app; `database` and `verifier` default to ones built from the settings."""
    app = create_service_app(
        title="Whale tracker",
        version="0.2.0",
        summary="Large on-chain transfers, scored; read-only.",
        database=database,
        verifier=verifier,
    )

    @app.get(
        "/whale-transactions",
        response_model=WhaleTransactionsPublic,
        responses=responses(401, 422, 503),
    )
    async def list_whale_transactions(
        s: CallerSession,
        filters: Annotated[WhaleTransactionFilters, Query()],
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
    ) -> WhaleTransactionsPublic:
        """Newest first. Pass `next_cursor` back as `cursor` for the next page."""
        page = await _whales(s).run(
            WhaleTransactionRepository.search, filters=filters, limit=limit, cursor=cursor
        )
        return public_page(page, WhaleTransactionsPublic)

    @app.get(
        "/whale-transactions/top",
        response_model=list[WhaleTransactionPublic],
        responses=responses(401, 422, 503),
    )
    async def top_whale_transactions(
        s: CallerSession,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 10,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[WhaleTransactionPublic]:
        """The highest whale scores (largest first on ties), optionally within a time range."""
        rows = await _whales(s).run(
            WhaleTransactionRepository.top_by_score, limit=limit, since=since, until=until
        )
        return [WhaleTransactionPublic.model_validate(r) for r in rows]

    @app.get(
        "/whale-transactions/{tx_hash}",
        response_model=WhaleTransactionPublic,
        responses=responses(401, 404, 422, 503),
    )
    async def get_whale_transaction(
        s: CallerSession, tx_hash: Annotated[str, Path(max_length=80)]
    ) -> WhaleTransactionPublic:
        row = await _whales(s).run(WhaleTransactionRepository.get_by_hash, hash=tx_hash)
        if row is None:
            raise NotFoundError(what="whale transaction with that hash")
        return WhaleTransactionPublic.model_validate(row)

    @app.get(
        "/stats/daily", response_model=list[WhaleDailyStats], responses=responses(401, 422, 503)
    )
    async def daily_stats(
        s: CallerSession,
        chain: Chain | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[WhaleDailyStats]:
        """Per UTC day and chain: count, sums, median / p90 / p99 value, top score."""
        filters = {"chain": chain, "since": since, "until": until}
        return await _whales(s).run(WhaleTransactionRepository.daily_stats, filters=filters)

    return app
