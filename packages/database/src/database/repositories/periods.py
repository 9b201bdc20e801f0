"""Time ranges as the queries take them: [since, until), timezone-aware, checked before any I/O."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from database.errors import InvalidInputError


def aware(field: str, value: datetime) -> datetime:
    if value.tzinfo is None:
        raise InvalidInputError(field=field, rule="must be timezone-aware")
    return value


def period(
    since: datetime, until: datetime, *, names: tuple[str, str] = ("since", "until")
) -> dict[str, datetime]:
    """{since, until} for [since, until): both timezone-aware, until after since."""
    first, last = names
    aware(first, since)
    aware(last, until)
    if until <= since:
        raise InvalidInputError(field=last, rule=f"must be after {first}")
    return {"since": since, "until": until}


def time_filters(column: Any, since: datetime | None, until: datetime | None) -> list[Any]:
    """`column >= since` and `column < until` for the bounds given (either may be open)."""
    if since is not None and until is not None:
        period(since, until)
    where = []
    if since is not None:
        where.append(column >= aware("since", since))
    if until is not None:
        where.append(column < aware("until", until))
    return where
