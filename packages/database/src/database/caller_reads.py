"""A caller's read in one round trip: role, claims and query sent as one simple query.

PostgreSQL runs the statements of one simple query as one implicit transaction, so
`select set_config('role', …, true), set_config('request.jwt.claims', …, true); set transaction
read only; select …` reads as the caller, with row-level security deciding, in a read-only
transaction wherever it runs, and commits when it ends — no BEGIN, no
COMMIT, no prepared statement: safe behind Supabase's transaction pooler. A user session costs
three round trips for the same read (role and BEGIN, the query, COMMIT), and each wakes the
event loop and the driver twice.

Parameters are bound by the client (psycopg's client-side binding quotes every value), as a
simple query carries none; that is also what lets the impersonation travel in the same text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from sqlalchemy.ext.asyncio import AsyncEngine

from database.connect import unavailable
from database.errors import UnknownUserError
from database.sessions import impersonation_sql


async def read_as(
    engine: AsyncEngine,
    *,
    identity: tuple[str, str],
    sql: str,
    params: Mapping[str, Any],
    verify_user: bool = False,
) -> list[Sequence[Any]]:
    """The rows of `sql` (placeholders `%(name)s`) read as `identity` (role, claims JSON) on an
    API engine (autocommit at the driver). With `verify_user`, UnknownUserError when the claims
    name a user that is not in auth.users."""
    # `%` in the impersonation's literals is text, not a placeholder.
    # Read-only wherever it runs (a replica is; the primary is not by itself).
    statement = impersonation_sql(identity, verify_user=verify_user, read_only=True)
    statement = statement.replace("%", "%%")
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver: psycopg.AsyncConnection[Any] = raw.driver_connection  # type: ignore[assignment]
        try:
            async with psycopg.AsyncClientCursor(driver) as cursor:
                await cursor.execute(f"{statement}; {sql}", params)
                caller = await cursor.fetchone()
                cursor.nextset()  # the read-only statement's
                cursor.nextset()
                rows = await cursor.fetchall()
        except psycopg.OperationalError as exc:
            await connection.invalidate()
            raise unavailable(engine.url, exc) from None
    if caller is None or not caller[-1]:
        raise UnknownUserError()
    return rows
