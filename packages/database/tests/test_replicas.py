"""Read replicas as sessions, on a real streaming standby: a copy of the test server made with
`pg_basebackup -R` and started on a free loopback port beside it (the plugin's `standby_url`).
Reads through `read_session()` and the read user/anon sessions, sync and async, are served by
the standby (in recovery), RLS applies there, writes fail before reaching a server, several
read URLs are used in turn, with no read URL reads go to the primary, and health reports
each replica's lag."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from sqlalchemy import Result, TextClause, text
from sqlalchemy.engine import URL
from sqlmodel.ext.asyncio.session import AsyncSession

from database.connect import conninfo
from database.errors import ReadOnlySessionError, UnknownUserError
from database.schema.market import MarketData
from database.sessions import Database, user_claims
from database.settings import load_settings
from database_tools.identities import create_auth_user
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


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_health_reports_each_replicas_lag(database_url: URL, standby_url: URL) -> None:
    down = database_url.set(port=_closed_port())
    read = ", ".join(conninfo(u) for u in (standby_url, database_url, down))
    db = _database(database_url, read)
    try:
        with db.service_session() as s:
            s.add(_quote(f"H{uuid.uuid4().hex[:8].upper()}"))
        wait_replayed(standby=standby_url, primary=database_url)
        for health in (db.health_check(), await db.ahealth_check()):
            assert health.reads == "replicas"
            standby, primary, lost = health.replicas
            # Caught up: nothing (or only a background record or two) left to replay.
            assert standby.standby is True and standby.error is None
            assert standby.lag_bytes is not None and 0 <= standby.lag_bytes < 1 << 20
            assert standby.lag_seconds is not None and 0 <= standby.lag_seconds < 60
            assert standby.url.endswith(f":{standby_url.port}/{standby_url.database}")
            # A read URL that is the primary is no standby: there is no lag to speak of.
            assert (primary.standby, primary.lag_bytes, primary.lag_seconds) == (False, None, None)
            # One that cannot be reached is reported, not raised: the primary is still up.
            assert lost.standby is None and lost.error and str(down.port) in lost.error
        assert db.health_check(replicas=False).replicas == ()
    finally:
        await db.adispose()
    db = _database(database_url, None)
    try:
        health = db.health_check()
        assert (health.reads, health.replicas) == ("primary", ())
    finally:
        db.dispose()


def test_health_shows_a_standby_falling_behind(database_url: URL, standby_url: URL) -> None:
    db = _database(database_url, conninfo(standby_url))
    # A transaction replayed first: a standby just started has no "last replayed" time yet.
    with db.service_session() as s:
        s.add(_quote(f"F{uuid.uuid4().hex[:8].upper()}"))
    wait_replayed(standby=standby_url, primary=database_url)
    with psycopg.connect(conninfo(standby_url), autocommit=True) as standby:
        standby.execute("select pg_wal_replay_pause()")
        try:
            with db.service_session() as s:
                s.add(_quote(f"L{uuid.uuid4().hex[:8].upper()}"))
            (replica,) = db.health_check().replicas
            assert replica.standby is True
            assert replica.lag_bytes is not None and replica.lag_bytes > 0
            # Its newest data is as old as the last transaction it replayed.
            assert replica.lag_seconds is not None and replica.lag_seconds > 0
        finally:
            standby.execute("select pg_wal_replay_resume()")
            db.dispose()
    wait_replayed(standby=standby_url, primary=database_url)


def test_database_health_prints_the_lag(
    database_url: URL,
    standby_url: URL,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from database.settings import get_settings
    from database_tools.cli import main

    monkeypatch.setenv("DATABASE_URL", conninfo(database_url))
    for read, reads in ((conninfo(standby_url), "replicas"), ("", "primary")):
        monkeypatch.setenv("DATABASE_READ_URL", read)
        get_settings.cache_clear()
        try:
            assert main(["health", "--json"]) == 0
        finally:
            get_settings.cache_clear()
        health = json.loads(capsys.readouterr().out)
        assert health["reads"] == reads
        if read:
            (replica,) = health["replicas"]
            assert replica["standby"] is True and replica["lag_bytes"] >= 0
            assert set(replica) == {"url", "standby", "lag_bytes", "lag_seconds", "error"}
        else:
            assert health["replicas"] == []


async def test_a_user_not_replayed_yet_is_read_on_the_primary(
    database_url: URL, standby_url: URL, truncate_after: Callable[..., None]
) -> None:
    """With verify_user, the read user sessions look the user up on the replica; one created
    after the replica's last replay is looked up on the primary and read there, one replayed is
    read on the replica, and one known nowhere is UnknownUserError."""
    truncate_after("auth.users")
    db = _database(database_url, conninfo(standby_url))
    where = text("select current_user, pg_is_in_recovery()")
    try:
        with db.service_session() as s:
            known = create_auth_user(s.connection())
        wait_replayed(standby=standby_url, primary=database_url)
        with psycopg.connect(conninfo(standby_url), autocommit=True) as standby:
            standby.execute("select pg_wal_replay_pause()")
            try:
                with db.service_session() as s:
                    new = create_auth_user(s.connection())
                for user, on_standby in ((known, True), (new, False)):
                    claims = user_claims(user_id=user)
                    with db.read_user_session(claims=claims, verify_user=True) as sync:
                        assert tuple(sync.connection().execute(where).one()) == (
                            "authenticated",
                            on_standby,
                        )
                        for _ in range(2):
                            mode = sync.connection().exec_driver_sql("show transaction_read_only")
                            assert mode.scalar_one() == "on"
                            sync.commit()
                    async with db.async_read_user_session(claims=claims, verify_user=True) as s:
                        row = (await _run(s, where)).one()
                        assert tuple(row) == ("authenticated", on_standby)
                        # Every transaction of the session, not only its first.
                        for _ in range(2):
                            read_only = await _run(s, text("show transaction_read_only"))
                            assert read_only.scalar_one() == "on"
                            await s.commit()
                nobody = user_claims(user_id=uuid.uuid4())
                with (
                    pytest.raises(UnknownUserError),
                    db.read_user_session(claims=nobody, verify_user=True) as sync,
                ):
                    sync.connection()
                with pytest.raises(UnknownUserError):
                    async with db.async_read_user_session(claims=nobody, verify_user=True) as s:
                        await s.connection()
            finally:
                standby.execute("select pg_wal_replay_resume()")
    finally:
        await db.adispose()
