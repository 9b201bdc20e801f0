"""`whale-tracker serve`: the read-only HTTP API over whale transactions.

Public data, readable with no token (the `anon` role) or with a Supabase user token (the
`authenticated` role). Every read runs in a session of the caller's role, so the grants and
policies of the schema decide, exactly as they would for Supabase's own Data API.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Response
from sqlmodel import Field

from database.repositories import AsyncRepository, WhaleTransactionRepository
from database.schema import Chain
from database.schema.whales import (
    WhaleDailyStats,
    WhaleTransactionBase,
    WhaleTransactionFilters,
    WhaleTransactionPublic,
    WhaleTransactionsPublic,
)
from database.sessions import Database
from service_kit.app import create_service_app
from service_kit.errors import responses
from service_kit.pages import items_response, public_page_response, public_row_response
from service_kit.params import MAX_PAGE, Cursor, IsoDateTime
from service_kit.sessions import CallerIdentity, CallerSession, ReadCallerSession
from service_kit.tokens import TokenVerifier

TX_HASH_PATTERN = "^0[xX][0-9a-fA-F]{64}$"


def _like_column(name: str) -> Any:
    """A filter on a column takes only values of that column's type (its bounds, digits and
    scale, as declared on the model): `min_value_eth=1e400` is a 422, not a query."""
    rules: dict[str, Any] = {}
    for item in WhaleTransactionBase.model_fields[name].metadata:
        for key in ("ge", "gt", "le", "lt", "max_digits", "decimal_places"):
            if getattr(item, key, None) is not None:
                rules[key] = getattr(item, key)
    return Field(default=None, **rules)


class WhaleQuery(WhaleTransactionFilters):
    """The listing's query parameters: the package's filters, with timestamps that must be
    ISO 8601 (not Unix numbers) and amounts within their columns' types."""

    min_value_eth: Decimal | None = _like_column("value_eth")
    min_value_usd: Decimal | None = _like_column("value_usd")
    since: IsoDateTime | None = None
    until: IsoDateTime | None = None


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
        responses=responses(401, 413, 422, 503),
    )
    async def list_whale_transactions(
        caller: CallerIdentity,
        filters: Annotated[WhaleQuery, Query()],
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: Cursor = None,
    ) -> Response:
        """Newest first. Pass `next_cursor` back as `cursor` for the next page."""
        listing = WhaleTransactionRepository.search_public(
            WhaleTransactionPublic, filters=filters, limit=limit, cursor=cursor
        )
        return await public_page_response(caller, listing)

    @app.get(
        "/whale-transactions/top",
        response_model=list[WhaleTransactionPublic],
        responses=responses(401, 413, 422, 503),
    )
    async def top_whale_transactions(
        s: ReadCallerSession,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 10,
        since: Annotated[IsoDateTime | None, Query()] = None,
        until: Annotated[IsoDateTime | None, Query()] = None,
    ) -> Response:
        """The highest whale scores (largest first on ties), optionally within a time range."""
        rows = await _whales(s).run(
            WhaleTransactionRepository.top_by_score, limit=limit, since=since, until=until
        )
        return items_response(rows, WhaleTransactionPublic)

    @app.get(
        "/whale-transactions/{tx_hash}",
        response_model=WhaleTransactionPublic,
        responses=responses(401, 404, 409, 413, 422, 503),
    )
    # On the primary: a hash the caller just learned (an alert, a listing from a replica
    # further ahead) must not be a 404 because this replica has not replayed it yet.
    async def get_whale_transaction(
        caller: CallerIdentity, tx_hash: Annotated[str, Path(pattern=TX_HASH_PATTERN)]
    ) -> Response:
        query = WhaleTransactionRepository.get_by_hash_public(WhaleTransactionPublic, hash=tx_hash)
        return await public_row_response(caller, query, what="whale transaction with that hash")

    @app.get(
        "/stats/daily",
        response_model=list[WhaleDailyStats],
        responses=responses(401, 413, 422, 503),
    )
    async def daily_stats(
        s: ReadCallerSession,
        chain: Chain | None = None,
        since: Annotated[IsoDateTime | None, Query()] = None,
        until: Annotated[IsoDateTime | None, Query()] = None,
    ) -> list[WhaleDailyStats]:
        """Per UTC day and chain: count, sums, median / p90 / p99 value, top score."""
        filters = {"chain": chain, "since": since, "until": until}
        return await _whales(s).run(WhaleTransactionRepository.daily_stats, filters=filters)

    return app
