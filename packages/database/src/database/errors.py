"""The package's vocabulary of failures: one base class, each subclass says what went wrong and
what to do. Apps map these to their own answers in one place (the service kit maps them to
HTTP); nothing above the data layer ever sees a driver's IntegrityError.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


class DatabasePackageError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigurationError(DatabasePackageError):
    """A setting is missing or malformed; the message names the environment variable."""


class DatabaseUnavailableError(DatabasePackageError):
    """The server could not be reached. Carries host and port so callers can report them."""

    def __init__(self, *, host: str, port: int | None, reason: str, hint: str) -> None:
        self.host = host
        self.port = port
        self.reason = reason
        self.hint = hint
        where = f"{host}:{port}" if port else host
        super().__init__(f"Cannot connect to PostgreSQL at {where}: {reason}. {hint}")


class ReadOnlySessionError(DatabasePackageError):
    """A write on a read session (a replica, or the primary read-only): refused before it is
    sent. Write through service_session(), user_session() or anon_session()."""

    def __init__(self) -> None:
        super().__init__(
            "this is a read session (a replica, or the primary read-only): nothing can be"
            " written through it; use service_session(), user_session() or anon_session()"
        )


class MigrationError(DatabasePackageError):
    """A revision failed. The message says which revision the database is left at."""


class InvalidInputError(DatabasePackageError, ValueError):
    """Input that breaks a rule. `field` and `rule` say which and why; `errors` lists every
    problem when there were several (pydantic's list, for an API to return)."""

    def __init__(
        self,
        *,
        field: str,
        rule: str,
        position: int | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        self.field = field
        self.rule = rule
        self.position = position
        self.errors = errors or [{"loc": field.split("."), "msg": rule, "type": "value_error"}]
        where = f"row {position}: " if position is not None else ""
        super().__init__(f"{where}{field}: {rule}")


class NotFoundError(DatabasePackageError, LookupError):
    """No such row (or none this caller may see: RLS makes both look the same)."""

    def __init__(self, *, what: str, key: object = None) -> None:
        self.what = what
        self.key = key
        super().__init__(f"no such {what}" + (f": {key}" if key is not None else ""))


class ConflictError(DatabasePackageError):
    """The write contradicts what is stored: a duplicate key, a missing referenced row, a row
    changed or deleted by someone else meanwhile. `field` and `rule` say which."""

    def __init__(self, *, field: str, rule: str, constraint: str | None = None) -> None:
        self.field = field
        self.rule = rule
        self.constraint = constraint
        super().__init__(f"{field}: {rule}")


class UnknownUserError(DatabasePackageError):
    """A user session's claims name no user in auth.users (deleted since the token was issued,
    or a token of another project): an API answers as for an invalid token."""

    def __init__(self) -> None:
        super().__init__("the token's user does not exist")


class BulkWriteError(DatabasePackageError):
    """A bulk write stopped part-way. `committed` counts what earlier chunks wrote for good."""

    def __init__(self, message: str, *, committed: object) -> None:
        self.committed = committed
        super().__init__(f"{message} (already committed: {committed})")


#: What a pattern means, for people: "String should match pattern '^0x[0-9a-f]{64}$'" becomes
#: "must be 0x followed by 64 hex digits". Registered beside each pattern's declaration.
_PATTERN_MEANINGS: dict[str, str] = {}


def describe_pattern(pattern: str, meaning: str) -> str:
    """Register what `pattern` means (shown instead of the regex); returns the pattern."""
    _PATTERN_MEANINGS[pattern] = meaning
    return pattern


def rule_message(error: Mapping[str, Any]) -> str:
    """One pydantic error's message, with a registered pattern's meaning when there is one."""
    ctx = error.get("ctx") or {}
    if error.get("type") == "string_pattern_mismatch" and ctx.get("pattern") in _PATTERN_MEANINGS:
        return _PATTERN_MEANINGS[ctx["pattern"]]
    return str(error["msg"]).removeprefix("Value error, ")


def invalid_input(exc: ValidationError, *, position: int | None = None) -> InvalidInputError:
    """A pydantic error as "field: rule" (its first problem), every problem kept in `errors`.

    The one translation used by repositories, ingest and APIs alike.
    """
    problems = exc.errors(include_url=False, include_input=False)
    first = problems[0] if problems else {"loc": (), "msg": str(exc)}
    field = ".".join(str(part) for part in first["loc"]) or "value"
    errors = [
        {"loc": [str(p) for p in e["loc"]], "msg": rule_message(e), "type": e.get("type")}
        for e in problems
    ]
    return InvalidInputError(
        field=field, rule=rule_message(first), position=position, errors=errors
    )
