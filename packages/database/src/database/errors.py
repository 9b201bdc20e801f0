"""The package's exceptions: one base class, each subclass says what went wrong and what to do."""

from __future__ import annotations


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


class SupabaseDatabaseRefusedError(DatabasePackageError):
    """The compatibility bootstrap was pointed at a real Supabase database and refused to run."""


class MigrationError(DatabasePackageError):
    """A revision failed. The message says which revision the database is left at."""


class LocalDatabaseError(DatabasePackageError):
    """The embedded development server could not be set up, started or stopped."""


class InvalidInputError(DatabasePackageError, ValueError):
    """Input that breaks a rule, caught before any I/O. `field` and `rule` say which and why."""

    def __init__(self, *, field: str, rule: str, position: int | None = None) -> None:
        self.field = field
        self.rule = rule
        self.position = position
        where = f"row {position}: " if position is not None else ""
        super().__init__(f"{where}{field}: {rule}")


class BulkWriteError(DatabasePackageError):
    """A bulk write stopped part-way. `committed` counts what earlier chunks wrote for good."""

    def __init__(self, message: str, *, committed: object) -> None:
        self.committed = committed
        super().__init__(f"{message} (already committed: {committed})")
