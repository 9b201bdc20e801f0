"""Every knob of the package, read once from the environment and `.env`.

Connection URLs are secrets (they carry a password), so they are kept as `SecretStr` and only
turned into SQLAlchemy `URL` objects, whose `repr` hides the password, when an engine is built.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from database.errors import ConfigurationError

#: Supabase's transaction pooler (Supavisor) listens here; it cannot keep prepared statements.
TRANSACTION_POOLER_PORT = 6543

_POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"}


def normalize_database_url(raw: str, *, variable: str) -> URL:
    """Parse a PostgreSQL URL and point it at the psycopg 3 driver.

    `postgres://` and `postgresql://` (what Supabase's dashboard shows) both become
    `postgresql+psycopg://`. Anything else fails with an error naming `variable`.
    """
    try:
        url = make_url(raw.strip())
    except (ArgumentError, ValueError) as exc:
        raise ValueError(f"{variable} is not a valid database URL ({exc})") from None
    if url.drivername not in _POSTGRES_SCHEMES:
        raise ValueError(
            f"{variable} must start with postgresql:// or postgres://, got {url.drivername}://"
        )
    port = url.port
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"{variable} has port {port}, outside 1-65535")
    if not url.host and "host" not in url.query:
        raise ValueError(f"{variable} has no host")
    if not url.database:
        raise ValueError(f"{variable} names no database (…/postgres at the end)")
    return url.set(drivername="postgresql+psycopg")


def is_transaction_pooler(url: URL) -> bool:
    """True for Supabase's transaction-mode pooler, which needs prepared statements off."""
    return url.port == TRANSACTION_POOLER_PORT


def _repo_root() -> Path:
    """The workspace root: where `uv.lock` lives above this file or the working directory."""
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for folder in (start, *start.parents):
            if (folder / "uv.lock").exists() and (folder / "packages").is_dir():
                return folder
    return Path.cwd().resolve()


PositiveInt = Annotated[int, Field(gt=0)]


class Settings(BaseSettings):
    """Read from environment variables (upper-case names) and a `.env` file in the working dir."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    # Direct (5432) or session-pooler connection: migrations, workers, bulk writes.
    # Unset: the embedded PostgreSQL in LOCAL_DB_DIR is started and used.
    database_url: SecretStr | None = None
    # Transaction pooler (6543): request-serving apps. Unset: DATABASE_URL is used.
    database_pooler_url: SecretStr | None = None

    supabase_url: AnyHttpUrl | None = None
    supabase_anon_key: SecretStr | None = None
    supabase_service_role_key: SecretStr | None = None
    supabase_jwt_secret: SecretStr | None = None

    db_pool_size: PositiveInt = 5
    db_max_overflow: Annotated[int, Field(ge=0)] = 10
    db_pool_timeout: Annotated[float, Field(gt=0)] = 30.0
    db_pool_recycle: PositiveInt = 1800
    db_pool_pre_ping: bool = True
    # Milliseconds; 0 turns the limit off. Migrations always run without one.
    db_statement_timeout_ms: Annotated[int, Field(ge=0)] = 30_000
    db_application_name: Annotated[str, Field(min_length=1, max_length=63)] = "crypto-intel"

    local_db_dir: Path = Field(default_factory=lambda: _repo_root() / ".local-db")
    # Preferred port of the embedded server; a free one is picked when it is taken.
    local_db_port: Annotated[int, Field(gt=0, lt=65536)] = 54329

    @field_validator("database_url", "database_pooler_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("database_url", "database_pooler_url")
    @classmethod
    def _valid_url(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None:
            variable = (info.field_name or "database_url").upper()
            normalize_database_url(value.get_secret_value(), variable=variable)
        return value

    def direct_url(self) -> URL | None:
        """DATABASE_URL as a psycopg URL, or None when the embedded server should be used."""
        if self.database_url is None:
            return None
        return normalize_database_url(self.database_url.get_secret_value(), variable="DATABASE_URL")

    def pooler_url(self) -> URL | None:
        if self.database_pooler_url is None:
            return None
        return normalize_database_url(
            self.database_pooler_url.get_secret_value(), variable="DATABASE_POOLER_URL"
        )


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning validation errors into one message that names each variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            variable = ".".join(str(part) for part in error["loc"]).upper() or "settings"
            message = str(error["msg"]).removeprefix("Value error, ")
            if variable not in message:
                message = f"{variable}: {message}"
            problems.append(message)
        raise ConfigurationError("Invalid settings:\n  " + "\n  ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once). Tests build their own with `load_settings`."""
    return load_settings()
