"""Service, user and anon sessions against the real test database; health and failure modes."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ProgrammingError

from database.errors import DatabaseUnavailableError
from database.sessions import Database, user_claims
from database.settings import TRANSACTION_POOLER_PORT, load_settings
from database_tools.network import tcp_forwarder

IDENTITY = text(
    "select current_user as role, auth.uid() as uid, auth.role() as auth_role,"
    " auth.jwt() ->> 'email' as email"
)


@pytest.fixture
def scratch(database: Database) -> Iterator[str]:
    """A committed table the sessions can write to; dropped afterwards."""
    name = f"scratch_{uuid.uuid4().hex[:8]}"
    with database.service_session() as s:
        s.execute(text(f"create table {name} (n int primary key)"))
    yield name
    with database.service_session() as s:
        s.execute(text(f"drop table {name}"))


def _count(database: Database, table: str) -> int:
    with database.service_session() as s:
        return int(s.execute(text(f"select count(*) from {table}")).scalar_one())


def test_service_session_commits_on_success(database: Database, scratch: str) -> None:
    with database.service_session() as s:
        s.execute(text(f"insert into {scratch} values (1)"))
    assert _count(database, scratch) == 1


def test_service_session_rolls_back_on_error(database: Database, scratch: str) -> None:
    def insert_then_fail() -> None:
        with database.service_session() as s:
            s.execute(text(f"insert into {scratch} values (1)"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        insert_then_fail()
    assert _count(database, scratch) == 0


def test_service_session_has_no_identity(database: Database) -> None:
    with database.service_session() as s:
        row = s.execute(IDENTITY).one()
    assert row.role == database.url.username
    assert (row.uid, row.auth_role, row.email) == (None, None, None)


def test_user_session_sets_role_and_claims_per_transaction(database: Database) -> None:
    uid = uuid.uuid4()
    claims = user_claims(user_id=uid, email="a@example.test")
    with database.user_session(claims=claims) as s:
        first = s.execute(IDENTITY).one()
        s.commit()  # a second transaction in the same session gets the identity again
        second = s.execute(IDENTITY).one()
    for row in (first, second):
        assert row.role == "authenticated"
        assert row.uid == uid
        assert row.auth_role == "authenticated"
        assert row.email == "a@example.test"
    # Nothing leaks back into the pool: the next service session is the owner again.
    with database.service_session() as s:
        assert s.execute(IDENTITY).one().role == database.url.username


def test_a_user_session_is_one_transaction_opened_by_its_impersonation(
    database: Database, scratch: str
) -> None:
    """API connections are autocommit at the driver; the impersonation statement opens the
    transaction: everything after it shares one transaction id, and an error undoes it all."""
    with database.service_session() as s:
        s.execute(text(f"grant insert, select on {scratch} to authenticated"))
    claims = user_claims(user_id=uuid.uuid4())
    with database.user_session(claims=claims) as s:
        first = s.execute(text("select pg_current_xact_id()::text")).scalar_one()
        s.execute(text(f"insert into {scratch} values (1)"))
        again = s.execute(text("select pg_current_xact_id()::text")).scalar_one()
        status = s.execute(text("select current_user")).scalar_one()
    assert first == again and status == "authenticated"
    assert _count(database, scratch) == 1

    def fail_after_a_write() -> None:
        with database.user_session(claims=claims) as s:
            s.execute(text(f"insert into {scratch} values (2)"))
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        fail_after_a_write()
    assert _count(database, scratch) == 1


@pytest.mark.parametrize(
    "value", ["it's", "back\\slash", "100% %s %(x)s", "'); select pg_sleep(10); --", "ünï ☃"]
)
def test_claims_reach_the_database_verbatim(database: Database, value: str) -> None:
    """The impersonation is sent as text (one simple query): quotes, backslashes and percent
    signs in a claim are data, never SQL or placeholders."""
    claims = user_claims(user_id=uuid.uuid4(), email="a@example.test", note=value)
    with database.user_session(claims=claims) as s:
        seen = s.execute(text("select auth.jwt() ->> 'note'")).scalar_one()
    assert seen == value


def test_the_api_login_role_does_nothing_without_an_impersonation(database: Database) -> None:
    """A connection of the API engine used without a session's impersonation runs as the
    NOINHERIT login role: it reads no table."""
    with (
        database.api_engine.connect() as conn,
        pytest.raises(ProgrammingError, match="permission denied"),
    ):
        conn.execute(text("select count(*) from public.whale_transactions"))


def test_anon_session(database: Database) -> None:
    with database.anon_session() as s:
        row = s.execute(IDENTITY).one()
    assert (row.role, row.uid, row.auth_role) == ("anon", None, "anon")


@pytest.mark.parametrize(
    ("claims", "rule"),
    [
        ({"role": "authenticated"}, "claims.sub"),
        ({"sub": "not-a-uuid"}, "claims.sub"),
        ({"sub": str(uuid.uuid4()), "role": "service_role"}, "claims.role"),
    ],
)
def test_user_session_rejects_bad_claims_before_any_io(
    database: Database, claims: dict[str, str], rule: str
) -> None:
    with pytest.raises(ValueError, match=rule):
        database.user_session(claims=claims)


async def test_async_sessions(database: Database) -> None:
    uid = uuid.uuid4()
    async with database.async_user_session(claims=user_claims(user_id=uid)) as s:
        row = (await (await s.connection()).execute(IDENTITY)).one()
    assert (row.role, row.uid) == ("authenticated", uid)
    async with database.async_anon_session() as s:
        assert (await (await s.connection()).execute(IDENTITY)).one().role == "anon"
    async with database.async_service_session() as s:
        assert (await (await s.connection()).execute(IDENTITY)).one().role == database.url.username
    health = await database.ahealth_check()
    assert health.database == database.url.database
    await database.adispose()


def test_health_check_reports_version_latency_and_pool(database: Database) -> None:
    health = database.health_check()
    assert health.server_version.split(".")[0].isdigit()
    assert 0 < health.latency_ms < 5_000
    assert health.database == database.url.database
    assert health.pool.size == 5


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def stopped() -> Iterator[Database]:
    url = URL.create(
        "postgresql+psycopg",
        username="app",
        password="pw",
        host="127.0.0.1",
        port=_closed_port(),
        database="postgres",
    )
    db = Database(settings=load_settings(), url=url)
    yield db
    db.dispose()


def _assert_clear(exc: DatabaseUnavailableError, db: Database) -> None:
    message = str(exc)
    assert f"127.0.0.1:{db.url.port}" in message
    assert "refused" in message.lower()
    assert "DATABASE_URL" in message  # what to try
    assert "pw" not in message
    assert exc.__cause__ is None and exc.__suppress_context__


def test_stopped_database_gives_one_clear_error_from_health_check(stopped: Database) -> None:
    with pytest.raises(DatabaseUnavailableError) as caught:
        stopped.health_check()
    _assert_clear(caught.value, stopped)


def test_stopped_database_gives_one_clear_error_from_a_session(stopped: Database) -> None:
    with pytest.raises(DatabaseUnavailableError) as caught, stopped.service_session() as s:
        s.execute(text("select 1"))
    _assert_clear(caught.value, stopped)


async def test_stopped_database_async(stopped: Database) -> None:
    with pytest.raises(DatabaseUnavailableError) as caught:
        await stopped.ahealth_check()
    _assert_clear(caught.value, stopped)


def test_transaction_pooler_port_turns_prepared_statements_off(database: Database) -> None:
    """Through a real connection on port 6543: psycopg never prepares, even hot queries."""
    target = database.url
    assert target.host is not None and target.port is not None
    with tcp_forwarder(
        listen_port=TRANSACTION_POOLER_PORT, target_host=target.host, target_port=target.port
    ):
        pooled = Database(settings=load_settings(), url=target.set(port=TRANSACTION_POOLER_PORT))
        direct = Database(settings=load_settings(), url=target)
        try:
            counts = {}
            for name, db in (("pooler", pooled), ("direct", direct)):
                with db.service_session() as s:
                    raw = s.connection().connection.dbapi_connection
                    assert raw is not None
                    for _ in range(10):  # psycopg prepares after 5 runs by default
                        s.execute(text("select 1 where 1 = :x"), {"x": 1})
                    counts[name] = s.execute(
                        text("select count(*) from pg_prepared_statements")
                    ).scalar_one()
                    counts[name + "_threshold"] = raw.prepare_threshold
        finally:
            pooled.dispose()
            direct.dispose()
    assert counts["pooler_threshold"] is None and counts["pooler"] == 0
    assert counts["direct_threshold"] == 5 and counts["direct"] >= 1


def _terminate_idle(database: Database, application: str) -> int:
    """Terminate the idle backends of this database opened for `application` (a pool's)."""
    with database.service_session() as s:
        return len(
            s.execute(
                text(
                    "select pg_terminate_backend(pid) from pg_stat_activity"
                    " where datname = current_database() and application_name = :app"
                    " and state = 'idle' and pid <> pg_backend_pid()"
                ),
                {"app": application},
            ).all()
        )


def _wait_closed(database: Database, application: str) -> None:
    for _ in range(100):
        with database.service_session() as s:
            left = s.execute(
                text(
                    "select count(*) from pg_stat_activity"
                    " where datname = current_database() and application_name = :app"
                ),
                {"app": application},
            ).scalar_one()
        if not left:
            return
        time.sleep(0.02)
    raise AssertionError("terminated backends are still there")


def test_a_connection_the_server_closed_is_replaced_without_an_error(database: Database) -> None:
    """Without pre-ping, the socket check finds connections the server dropped (a restart, a
    pooler's idle timeout) and the pool hands out a fresh one: no request sees the failure."""
    assert database.settings.db_pool_pre_ping is False
    application = f"{database.settings.db_application_name}:api"
    # Fill the pool with several idle connections, then have the server kill all of them.
    sessions = [database.anon_session() for _ in range(3)]
    for session in sessions:
        session.__enter__().execute(text("select 1"))
    for session in sessions:
        session.__exit__(None, None, None)
    assert _terminate_idle(database, application) >= 3
    _wait_closed(database, application)
    for _ in range(4):
        with database.anon_session() as s:
            assert s.execute(text("select current_user")).scalar_one() == "anon"


async def test_the_async_pool_replaces_closed_connections_too(database: Database) -> None:
    application = f"{database.settings.db_application_name}:api"
    async with database.async_anon_session() as s:
        await s.execute(text("select 1"))
    assert _terminate_idle(database, application) >= 1
    _wait_closed(database, application)
    async with database.async_anon_session() as s:
        assert (await s.execute(text("select current_user"))).scalar_one() == "anon"
    await database.adispose()
