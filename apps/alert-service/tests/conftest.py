"""The alert service's tests run on the package's migrated test database. They commit for
real (API requests, workers), so every table they write is emptied after each test."""

from __future__ import annotations

from collections.abc import Callable

import pytest


@pytest.fixture(autouse=True)
def _isolated(settings_use_test_database: None, truncate_after: Callable[..., None]) -> None:
    truncate_after(
        "alert_events", "alerts", "profiles", "whale_transactions", "evaluator_cursors",
        "auth.users",
    )  # fmt: skip
