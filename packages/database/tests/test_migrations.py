"""The Alembic chain on a fresh database: up, down to base, version table placement."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from database.migrate import current_revision, downgrade, head_revision, upgrade
from database.models.base import VERSION_TABLE_SCHEMA
from database.testing.databases import create_test_database, drop_test_database
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL


@pytest.fixture
def fresh_database(database_server_url: URL) -> Iterator[URL]:
    url = create_test_database(database_server_url, prefix="migr")
    yield url
    drop_test_database(url)


def _version_table_schemas(url: URL) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    text(
                        "select table_schema from information_schema.tables"
                        " where table_name = 'alembic_version'"
                    )
                ).scalars()
            )
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(fresh_database: URL) -> None:
    assert current_revision(url=fresh_database) == head_revision()
    downgrade(url=fresh_database, revision="base")
    assert current_revision(url=fresh_database) is None
    upgrade(url=fresh_database)
    assert current_revision(url=fresh_database) == head_revision()


def test_version_table_is_private(fresh_database: URL) -> None:
    assert _version_table_schemas(fresh_database) == [VERSION_TABLE_SCHEMA]
