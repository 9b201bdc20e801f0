"""Every knob of the package, read once from the environment and `.env`.

Connection URLs are secrets (they carry a password), so they are kept as `SecretStr` and only
turned into SQLAlchemy `URL` objects, whose `repr` hides the password, when an engine is built.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import (
    AliasChoices,
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from database.errors import ConfigurationError

#: Supabase's transaction pooler (Supavisor) listens here; it cannot keep prepared statements.
TRANSACTION_POOLER_PORT = 6543

#: Written by `database up` beside the embedded server's data: its URL (no password).
LOCAL_URL_FILE = "url"
LOCAL_DB_DIR_VARIABLE = "LOCAL_DB_DIR"

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


LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def with_ssl_defaults(url: URL, *, root_cert: Path | None) -> URL:
    """Encrypt connections to other machines unless the URL says otherwise.

    Non-local hosts get `sslmode=require`; with a CA file (Supabase's `prod-ca-2021.crt`) they
    get `verify-full`, which also checks the server is who it claims to be. An explicit
    `sslmode` in the URL always wins; local hosts and Unix sockets are left alone.
    """
    if "sslmode" in url.query or not url.host or url.host in LOCAL_HOSTS:
        return url
    if root_cert is not None:
        return url.update_query_dict({"sslmode": "verify-full", "sslrootcert": str(root_cert)})
    return url.update_query_dict({"sslmode": "require"})


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

_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*\.?$"
)


def _host_or_network(value: str) -> str:
    """A host name (lower-cased) or an IP address / CIDR range (normalised)."""
    value = value.strip().lower()
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        pass
    if not _HOST_NAME.fullmatch(value):
        raise ValueError(
            f"WEBHOOK_ALLOWED_HOSTS: {value!r} is neither a host name nor a CIDR range"
        )
    return value.rstrip(".")


class Settings(BaseSettings):
    """Read from environment variables (upper-case names) and a `.env` file in the working dir."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    # Direct (5432) or session-pooler connection: migrations, workers, bulk writes.
    # Unset: the embedded PostgreSQL that `database up` started in LOCAL_DB_DIR is used.
    database_url: SecretStr | None = None
    # User and anon sessions of request-serving apps log in as the API role (NOINHERIT, a member
    # of anon and authenticated only), on Supabase through the transaction pooler (6543).
    # Unset: DATABASE_URL's server with DB_API_ROLE as the user (no password: local servers).
    # DATABASE_POOLER_URL is the older name of the same setting.
    database_api_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("database_api_url", "database_pooler_url")
    )
    db_api_role: Annotated[str, Field(pattern="^[a-z_][a-z0-9_]{0,62}$")] = "crypto_api"
    # Read replicas, comma-separated, used in turn: `read_session()` and the read user/anon
    # sessions (which log in there as DATABASE_API_URL's user). Unset: reads use the primary.
    database_read_url: SecretStr | None = None

    supabase_url: AnyHttpUrl | None = None
    supabase_anon_key: SecretStr | None = None
    supabase_service_role_key: SecretStr | None = None
    supabase_jwt_secret: SecretStr | None = None

    # CA certificate for `sslmode=verify-full` against hosted databases (Supabase dashboard:
    # Database settings -> SSL configuration). Unset: `sslmode=require`.
    database_ssl_root_cert: Path | None = None

    db_pool_size: PositiveInt = 5
    db_max_overflow: Annotated[int, Field(ge=0)] = 10
    # The async user/anon engines request handlers use: a request queues for a connection.
    db_api_max_overflow: Annotated[int, Field(ge=0)] = 0
    db_pool_timeout: Annotated[float, Field(gt=0)] = 30.0
    db_pool_recycle: PositiveInt = 1800
    # A round trip per checkout; off by default: a closed connection is found on its socket.
    db_pool_pre_ping: bool = False
    # Milliseconds; 0 turns the limit off. App connections only: migrations have their own.
    db_statement_timeout_ms: Annotated[int, Field(ge=0)] = 30_000
    # Migrations (Purpose.MIGRATE): how long one statement may wait for a lock before it gives
    # up (then the revision is retried, up to DB_MIGRATION_LOCK_RETRIES times), and how long
    # one statement may run (0 = no limit). Short lock waits keep a DDL statement from queueing
    # every other query on a busy table behind it.
    db_migration_lock_timeout_ms: Annotated[int, Field(ge=0)] = 5_000
    db_migration_statement_timeout_ms: Annotated[int, Field(ge=0)] = 900_000
    db_migration_lock_retries: Annotated[int, Field(ge=0, le=100)] = 3
    db_migration_retry_delay_ms: Annotated[int, Field(ge=0)] = 1_000
    db_application_name: Annotated[str, Field(min_length=1, max_length=63)] = "crypto-intel"

    # Keys keyset cursors' signatures (HMAC-SHA256), so a client cannot forge or alter one.
    # Unset: a random key per process — fine for one process, but every process behind one
    # load balancer (uvicorn --workers N, several hosts) must share a key, or a cursor issued by
    # one is refused by another.
    cursor_signing_key: SecretStr | None = None

    # Webhook targets exempt from the public-address rule: host names or IP / CIDR ranges,
    # comma-separated (`localhost,10.1.0.0/16`). For local development and tests only; empty
    # (the default) means every target must resolve to public addresses only.
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)

    local_db_dir: Path = Field(default_factory=lambda: _repo_root() / ".local-db")
    # Port of the embedded server, kept across restarts (another one only if this is taken).
    local_db_port: Annotated[int, Field(gt=0, lt=65536)] = 54329

    @field_validator("webhook_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [part for part in value.split(",") if part.strip()]
        return value

    @field_validator("webhook_allowed_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        return [_host_or_network(v) for v in value]

    @field_validator("database_ssl_root_cert")
    @classmethod
    def _cert_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"DATABASE_SSL_ROOT_CERT names no readable file: {value}")
        return value

    @field_validator(
        "database_url",
        "database_api_url",
        "database_read_url",
        "database_ssl_root_cert",
        "supabase_url",
        "supabase_anon_key",
        "supabase_service_role_key",
        "supabase_jwt_secret",
        "cursor_signing_key",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("database_read_url")
    @classmethod
    def _valid_read_urls(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            for part in value.get_secret_value().split(","):
                if part.strip():
                    normalize_database_url(part.strip(), variable="DATABASE_READ_URL")
        return value

    @field_validator("database_url", "database_api_url")
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
        url = normalize_database_url(self.database_url.get_secret_value(), variable="DATABASE_URL")
        return with_ssl_defaults(url, root_cert=self.database_ssl_root_cert)

    def read_urls(self) -> list[URL]:
        """DATABASE_READ_URL's replicas, in order; empty when reads use the primary."""
        if self.database_read_url is None:
            return []
        return [
            with_ssl_defaults(
                normalize_database_url(part.strip(), variable="DATABASE_READ_URL"),
                root_cert=self.database_ssl_root_cert,
            )
            for part in self.database_read_url.get_secret_value().split(",")
            if part.strip()
        ]

    def local_url(self) -> URL | None:
        """The embedded server's URL as `database up` recorded it in LOCAL_DB_DIR, if it did."""
        try:
            recorded = (self.local_db_dir / LOCAL_URL_FILE).read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return normalize_database_url(recorded, variable=f"{LOCAL_DB_DIR_VARIABLE}/url")

    def resolved_url(self) -> URL:
        """Where service work connects: DATABASE_URL, else the embedded server.

        Nothing is started here: with neither, the error says how to get a database.
        """
        url = self.direct_url() or self.local_url()
        if url is None:
            raise ConfigurationError(
                "DATABASE_URL is not set and no embedded database has been started: run "
                "`make db-up` (or `uv run database up`), or set DATABASE_URL."
            )
        return url

    def api_url(self, direct: URL) -> URL:
        """Where user and anon sessions connect: DATABASE_API_URL, else `direct`'s server with
        the API role as the user (what the bootstrap creates on local servers)."""
        if self.database_api_url is None:
            return direct.set(username=self.db_api_role, password=None)
        url = normalize_database_url(
            self.database_api_url.get_secret_value(), variable="DATABASE_API_URL"
        )
        return with_ssl_defaults(url, root_cert=self.database_ssl_root_cert)


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
