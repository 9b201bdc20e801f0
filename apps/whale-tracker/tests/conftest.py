"""The whale-tracker's tests run on the package's migrated test database (its pytest plugin).
The code under test commits for real, so the tables it writes are emptied after each test."""

from __future__ import annotations

from collections.abc import Callable

import pytest


@pytest.fixture(autouse=True)
def _isolated(settings_use_test_database: None, truncate_after: Callable[..., None]) -> None:
    truncate_after(
        "whale_transactions", "market_data", "collection_runs", "system_events", "auth.users"
    )
