"""Read replicas as sessions, on a real streaming standby: a copy of the test server made with
`pg_basebackup -R` and started on a free loopback port beside it (the plugin's `standby_url`).
Reads through `read_session()` and the read user/anon sessions, sync and async, are served by
the standby (in recovery), RLS applies there, writes fail before reaching a server, several
read URLs are used in turn, and with no read URL reads go to the primary."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Result, TextClause, text
from sqlalchemy.engine import URL
from sqlmodel.ext.asyncio.session import AsyncSession

from database.connect import conninfo
from database.errors import ReadOnlySessionError
from database.schema.market import MarketData
from database.sessions import Database, user_claims
from database.settings import load_settings
from database_tools.standby import wait_replayed


def _quote(symbol: str) -> MarketData:
    return MarketData(
        exchange="binance", symbol=symbol, price=Decimal(1), observed_at=datetime.now(UTC)
    )


def _database(primary: URL, read: str | None) -> Database:
    settings = load_settings(database_read_url=read)
    return Database(settings=settings, url=primary)


def test_reads_are_served_by_the_standby_with_rls(database_url: URL, standby_url: URL) -> None:
    db = _database(database_url, conninfo(standby_url))
    symbol = f"R{uuid.uuid4().hex[:8].upper()}"
    try:
        with db.service_session() as s:
            s.add(_quote(symbol))
        wait_replayed(standby=standby_url, primary=database_url)
        with db.read_session() as s:
            assert s.execute(text("select pg_is_in_recovery()")).scalar_one() is True
            found = s.execute(
                text("select count(*) from market_data where symbol = :s"), {"s": symbol}
            ).scalar_one()
            assert found == 1
        # RLS on the replica: anon reads public quotes; its role is anon there too.
        with db.read_anon_session() as s:
            assert s.execute(text("select pg_is_in_recovery()")).scalar_one() is True
            assert s.execute(text("select current_user")).scalar_one() == "anon"
            found = s.execute(
                text("select count(*) from market_data where symbol = :s"), {"s": symbol}
            ).scalar_one()
            assert found == 1
        claims = user_claims(user_id=uuid.uuid4())
        with db.read_user_session(claims=claims) as s:
            assert s.execute(text("select current_user")).scalar_one() == "authenticated"
            assert s.execute(text("select pg_is_in_recovery()")).scalar_one() is True
            # RLS applies on the standby: a user with no rules sees none.
            assert s.execute(text("select count(*) from alerts")).scalar_one() == 0
        # A write never reaches the standby.
        with db.read_session() as s:
            s.add(_quote(symbol))
            with pytest.raises(ReadOnlySessionError):
                s.flush()
            s.expunge_all()
    finally:
        db.dispose()


def test_several_read_urls_are_used_in_turn_and_none_means_the_primary(
    database_url: URL, standby_url: URL
) -> None:
    db = _database(database_url, f"{conninfo(standby_url)}, {conninfo(database_url)}")
    try:
        seen = []
        for _ in range(4):
            with db.read_session() as s:
                seen.append(s.execute(text("select pg_is_in_recovery()")).scalar_one())
        assert seen == [True, False, True, False]
    finally:
        db.dispose()
    db = _database(database_url, None)
    try:
        with db.read_session() as s:
            assert s.execute(text("select pg_is_in_recovery()")).scalar_one() is False
            # Read-only on the primary too.
            assert s.execute(text("show transaction_read_only")).scalar_one() == "on"
    finally:
        db.dispose()


async def test_async_read_sessions_on_the_standby(database_url: URL, standby_url: URL) -> None:
    db = _database(database_url, conninfo(standby_url))
    try:
        async with db.async_read_session() as s:
            assert (await _run(s, text("select pg_is_in_recovery()"))).scalar_one() is True
        async with db.async_read_anon_session() as s:
            row = (await _run(s, text("select current_user, pg_is_in_recovery()"))).one()
            assert tuple(row) == ("anon", True)
        async with db.async_read_user_session(claims=user_claims(user_id=uuid.uuid4())) as s:
            row = (await _run(s, text("select current_user, pg_is_in_recovery()"))).one()
            assert tuple(row) == ("authenticated", True)
            assert (await _run(s, text("select count(*) from alerts"))).scalar_one() == 0
        # Refused before it is sent: the standby would refuse it too, but later and unclearly.
        for session in (db.async_read_session(), db.async_read_anon_session()):
            async with session as s:
                s.add(_quote("NEVER"))
                with pytest.raises(ReadOnlySessionError):
                    await s.flush()
                s.expunge_all()
    finally:
        await db.adispose()
    db = _database(database_url, f"{conninfo(standby_url)}, {conninfo(database_url)}")
    try:
        seen = []
        for _ in range(4):
            async with db.async_read_anon_session() as s:
                seen.append((await _run(s, text("select pg_is_in_recovery()"))).scalar_one())
        assert seen == [True, False, True, False]
    finally:
        await db.adispose()
    # No read URL: the primary, through the API role for anon, read-only all the same.
    db = _database(database_url, None)
    try:
        async with db.async_read_anon_session() as s:
            row = (await _run(s, text("select current_user, pg_is_in_recovery()"))).one()
            assert tuple(row) == ("anon", False)
            assert (await _run(s, text("show transaction_read_only"))).scalar_one() == "on"
    finally:
        await db.adispose()


async def _run(session: AsyncSession, statement: TextClause) -> Result[Any]:
    return await (await session.connection()).execute(statement)
