"""pytest plugin (`-p database_tools.pytest_plugin`): a migrated database per test session and a
transaction per test that is rolled back at the end, even when the code under test commits.

Fixtures: `database_url` (session), `db_engine` (session), `db_connection`, `db_session`,
`identity` (as_user / as_anon / as_service), `auth_user` (creates auth.users rows),
`database` (the package's `Database` on the test database; its commits are real),
`standby_url` (module: the test database on a streaming standby of its server, else a skip).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL
from sqlmodel import Session

from database.connect import Purpose, create_engine_for
from database.sessions import Database, get_database
from database.settings import get_settings, load_settings
from database_tools.embedded import server_url
from database_tools.factories import current_session
from database_tools.identities import Identity, create_auth_user
from database_tools.testdb import create_test_database, drop_test_database


@pytest.fixture(scope="session")
def database_server_url() -> URL:
    # The explicit start of the embedded server when DATABASE_URL is unset.
    return server_url(load_settings())


@pytest.fixture(scope="session")
def database_url(database_server_url: URL) -> Iterator[URL]:
    url = create_test_database(database_server_url)
    yield url
    drop_test_database(url)


@pytest.fixture(scope="session")
def db_engine(database_url: URL) -> Iterator[Engine]:
    engine = create_engine_for(database_url, purpose=Purpose.SERVICE, settings=load_settings())
    yield engine
    engine.dispose()


@pytest.fixture
def db_connection(db_engine: Engine) -> Iterator[Connection]:
    connection = db_engine.connect()
    transaction = connection.begin()
    try:
        yield connection
    finally:
        if transaction.is_active:
            transaction.rollback()
        connection.close()


@pytest.fixture
def db_session(db_connection: Connection) -> Iterator[Session]:
    # commit() inside the code under test only releases a savepoint of the test's transaction.
    session = Session(bind=db_connection, join_transaction_mode="create_savepoint")
    token = current_session.set(session)
    try:
        yield session
    finally:
        current_session.reset(token)
        session.close()


@pytest.fixture
def identity(db_connection: Connection) -> Identity:
    return Identity(db_connection)


@pytest.fixture
def auth_user(db_connection: Connection) -> Callable[..., Any]:
    def make(**kwargs: Any) -> Any:
        return create_auth_user(db_connection, **kwargs)

    return make


@pytest.fixture(scope="session")
def database(database_url: URL) -> Iterator[Database]:
    db = Database(settings=load_settings(), url=database_url)
    yield db
    db.dispose()


@pytest.fixture
def settings_use_test_database(
    monkeypatch: pytest.MonkeyPatch, database_url: URL
) -> Iterator[None]:
    """Code that builds its own Database from the settings (CLIs, apps) gets the test database."""
    monkeypatch.setenv("DATABASE_URL", database_url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    get_database.cache_clear()
    yield
    get_settings.cache_clear()
    get_database.cache_clear()


@pytest.fixture
def truncate_after(database: Database) -> Iterator[Callable[..., None]]:
    """`truncate_after("t1", "t2")`: empty those tables when the test ends (for tests whose
    code under test commits for real, on its own connections)."""
    tables: list[str] = []

    def register(*names: str) -> None:
        tables.extend(names)

    yield register
    if tables:
        with database.service_session() as session:
            session.execute(text(f"truncate {', '.join(dict.fromkeys(tables))} cascade"))


@pytest.fixture(scope="module")
def standby_url(database_url: URL) -> Iterator[URL]:
    """The test database on a streaming standby of its server (database_tools.standby)."""
    from database_tools.standby import NoStandbyError, standby_binaries, streaming_standby

    try:
        binaries = standby_binaries(database_url)
    except NoStandbyError as exc:
        pytest.skip(str(exc))
    with streaming_standby(database_url, binaries=binaries) as url:
        yield url
