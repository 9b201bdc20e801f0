"""The caller's database session as a FastAPI dependency.

A request with `Authorization: Bearer <Supabase access token>` runs in a user session with the
token's claims; one without runs as `anon` (where the endpoint allows it). A token whose user
is not in auth.users is a 401, found in the same round trip that sets the role. Either way the
database's grants and policies decide what the caller sees, exactly as for Supabase's Data API.
`ReadCallerSession` is the caller's session on a read replica (read-only), for listings.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from database.caller_reads import read_as
from database.errors import UnknownUserError
from database.sessions import Database, identity_for, run_in

__all__ = [
    "CallerIdentity",
    "CallerSession",
    "ReadCallerSession",
    "UserSession",
    "current_user_id",
    "run_in",
]
from service_kit.tokens import InvalidTokenError, TokenVerifier


def _verifier(request: Request) -> TokenVerifier:
    verifier: TokenVerifier | None = request.app.state.verifier
    if verifier is None:
        verifier = request.app.state.verifier = TokenVerifier.from_settings()
    return verifier


async def verified_claims(request: Request, authorization: str) -> dict[str, Any]:
    """The claims of the request's token; remembers the user id on `request.state`."""
    # A JWKS fetch may be needed: off the event loop.
    claims = await anyio.to_thread.run_sync(_verifier(request).verify_header, authorization)
    request.state.user_id = uuid.UUID(claims["sub"])
    return claims


async def _caller_claims(request: Request, authorization: str | None) -> dict[str, Any] | None:
    """None without a token (the caller is anon); the verified claims with one."""
    return None if authorization is None else await verified_claims(request, authorization)


async def caller_session(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> AsyncIterator[AsyncSession]:
    """A session in the caller's role: anon without a token, the user's claims with one."""
    async with await _session_of_caller(request, authorization, read=False) as session:
        yield session


async def _session_of_caller(
    request: Request, authorization: str | None, *, read: bool
) -> AbstractAsyncContextManager[AsyncSession]:
    """The caller's session, not yet open: anon or the verified user, on the primary or (`read`)
    a read replica."""
    database: Database = request.app.state.database
    claims = await _caller_claims(request, authorization)
    if claims is None:
        return database.async_read_anon_session() if read else database.async_anon_session()
    if read:
        return database.async_read_user_session(claims=claims, verify_user=True)
    return database.async_user_session(claims=claims, verify_user=True)


@dataclass(frozen=True)
class Caller:
    """Who is asking (anon, or a verified token's claims), for reads that need no session: a
    listing read in one round trip (`database.caller_reads`)."""

    database: Database
    identity: tuple[str, str]
    verify_user: bool

    async def read(
        self, *, sql: str, params: Mapping[str, Any], replica: bool = False
    ) -> list[Sequence[Any]]:
        """Rows of `sql` read as the caller; with `replica`, on a read replica in turn (the
        primary when there is none), for listings that may run slightly behind. A user the
        replica does not know yet (created a moment ago) is read on the primary."""
        database = self.database
        on_replica = replica and bool(database.read_urls)
        engine = database.next_async_read_api_engine() if on_replica else database.async_api_engine
        try:
            return await self._read(engine, sql, params)
        except UnknownUserError:
            if not on_replica:
                raise
        return await self._read(database.async_api_engine, sql, params)

    async def _read(
        self, engine: AsyncEngine, sql: str, params: Mapping[str, Any]
    ) -> list[Sequence[Any]]:
        return await read_as(
            engine, identity=self.identity, sql=sql, params=params, verify_user=self.verify_user
        )


async def caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> Caller:
    """The caller: anon without a token, the user's claims with one (a bad token is a 401)."""
    database: Database = request.app.state.database
    claims = await _caller_claims(request, authorization)
    if claims is None:
        return Caller(database=database, identity=_ANON, verify_user=False)
    return Caller(database=database, identity=identity_for(claims), verify_user=True)


_ANON = identity_for({"role": "anon"})


async def read_caller_session(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> AsyncIterator[AsyncSession]:
    """`caller_session`, on a read replica (DATABASE_READ_URL; unset: the primary), read-only.
    For listings a caller can accept slightly behind the primary; a read that must see a write
    just made (by this caller or one it was told about) takes CallerSession."""
    async with await _session_of_caller(request, authorization, read=True) as session:
        yield session


async def user_session(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> AsyncIterator[AsyncSession]:
    """A signed-in user's session; no token is a 401."""
    if authorization is None:
        raise InvalidTokenError("missing Authorization: Bearer <access token>")
    claims = await verified_claims(request, authorization)
    database: Database = request.app.state.database
    async with database.async_user_session(claims=claims, verify_user=True) as session:
        yield session


# scope="function": the session commits when the handler returns, before the response is sent.
# FastAPI's default ("request") commits after the response is out: a client could read before
# its own write was committed, and a failed commit would follow a 2xx already sent.
CallerSession = Annotated[AsyncSession, Depends(caller_session, scope="function")]
CallerIdentity = Annotated[Caller, Depends(caller)]
ReadCallerSession = Annotated[AsyncSession, Depends(read_caller_session, scope="function")]
UserSession = Annotated[AsyncSession, Depends(user_session, scope="function")]


def current_user_id(request: Request) -> uuid.UUID:
    """The verified caller's user id (after a UserSession dependency ran)."""
    user_id: uuid.UUID = request.state.user_id
    return user_id
