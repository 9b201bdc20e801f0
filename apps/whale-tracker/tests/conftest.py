"""The whale-tracker's tests run against the package's migrated test database (its pytest
plugin); they commit for real, so every table they touch is emptied after each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from database.engine import Database, get_database
from database.settings import get_settings


@pytest.fixture(autouse=True)
def _settings_name_the_test_database(
    monkeypatch: pytest.MonkeyPatch, database_url: URL
) -> Iterator[None]:
    """Commands build their own Database from the settings: point those at the test database."""
    monkeypatch.setenv("DATABASE_URL", database_url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    get_database.cache_clear()
    yield
    get_settings.cache_clear()
    get_database.cache_clear()


@pytest.fixture(autouse=True)
def _clean(database: Database) -> Iterator[None]:
    yield
    with database.service_session() as s:
        s.execute(
            text("truncate whale_transactions, market_data, collection_runs, system_events cascade")
        )
