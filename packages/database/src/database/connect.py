"""The one place a URL becomes a connection: SQLAlchemy engines (sync and async) and raw psycopg
connections, each shaped by what it is for.

* `SERVICE` - the owner connection of workers, ingest and bulk writes: statement timeout on.
* `API`     - user and anon sessions of request-serving apps; on Supabase's transaction pooler
              (port 6543) prepared statements are off, since every transaction may land on
              another server connection.
* `READ`    - read replicas: every transaction read-only.
* `MIGRATE` - DDL: its own lock and statement timeouts (DB_MIGRATION_*), never through the
              transaction pooler, no pool.

Sessions, Alembic's env.py, the tools' CLI and the test plugin all come here, so a setting
(application name, timeouts, TLS) means the same thing everywhere.
"""

from __future__ import annotations

import select
from enum import StrEnum
from typing import Any

import psycopg
from psycopg import pq
from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import URL, ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from database.errors import ConfigurationError, DatabaseUnavailableError
from database.settings import Settings, get_settings, is_transaction_pooler


class Purpose(StrEnum):
    SERVICE = "service"
    API = "api"
    READ = "read"
    MIGRATE = "migrate"


def conninfo(url: URL) -> str:
    """A libpq connection string for `url` (SQLAlchemy's driver prefix removed). It carries the
    password: pass it to a driver, never to a log."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def display_url(url: URL) -> str:
    """The URL as psql and other libpq tools take it, password hidden: safe to print."""
    return url.set(drivername="postgresql").render_as_string(hide_password=True)


def require_session_connection(url: URL) -> URL:
    """Refuse Supabase's transaction pooler for work that needs one session throughout."""
    if is_transaction_pooler(url):
        raise ConfigurationError(
            f"Refusing to migrate through the transaction pooler ({url.host}:{url.port}): "
            "DDL needs a session that lasts. Set DATABASE_URL to the direct connection "
            "(db.<ref>.supabase.co:5432) or the session pooler (…pooler.supabase.com:5432)."
        )
    return url


def _server_options(purpose: Purpose, settings: Settings) -> list[str]:
    options = []
    if purpose is not Purpose.MIGRATE and settings.db_statement_timeout_ms:
        options.append(f"-c statement_timeout={settings.db_statement_timeout_ms}")
    if purpose is Purpose.MIGRATE:
        # A DDL statement waiting for its lock queues every later query on that table behind
        # it: give up soon (the migration retries), and bound how long a statement may run.
        options.append(f"-c lock_timeout={settings.db_migration_lock_timeout_ms}")
        options.append(f"-c statement_timeout={settings.db_migration_statement_timeout_ms}")
    if purpose is Purpose.READ:
        options.append("-c default_transaction_read_only=on")
    return options


def connect_args(url: URL, *, purpose: Purpose, settings: Settings | None = None) -> dict[str, Any]:
    """psycopg connection arguments for `purpose` (what every engine and raw connection uses)."""
    s = settings or get_settings()
    args: dict[str, Any] = {
        "application_name": f"{s.db_application_name}:{purpose.value}"[:63],
        "connect_timeout": 10,
    }
    if is_transaction_pooler(url):
        if purpose is Purpose.MIGRATE:
            require_session_connection(url)
        # Supavisor in transaction mode hands each transaction to any server connection:
        # named prepared statements would not be there next time, nor would startup options.
        args["prepare_threshold"] = None
    else:
        options = _server_options(purpose, s)
        if options:
            args["options"] = " ".join(options)
    return args


def _pool_options(purpose: Purpose, settings: Settings, *, serving: bool) -> dict[str, Any]:
    if purpose is Purpose.MIGRATE:
        return {"poolclass": NullPool}
    if purpose is Purpose.API:
        # The API login role can do nothing until a session impersonates anon or a user, and
        # that statement opens the transaction itself (`sessions.impersonate`): no separate
        # BEGIN round trip per request.
        return {"isolation_level": "AUTOCOMMIT", **_pool_sizes(settings, serving=serving)}
    return _pool_sizes(settings, serving=serving)


def _pool_sizes(settings: Settings, *, serving: bool) -> dict[str, Any]:
    return {
        "pool_size": settings.db_pool_size,
        # A request holds its connection for a round trip or three: requests beyond the pool
        # wait for one (DB_POOL_TIMEOUT) rather than each opening and closing its own, which
        # cost a worker half its throughput at 16 concurrent requests (`make bench`, api).
        "max_overflow": settings.db_api_max_overflow if serving else settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout,
        "pool_recycle": settings.db_pool_recycle,
        "pool_pre_ping": settings.db_pool_pre_ping,
    }


def create_engine_for(
    url: URL,
    *,
    purpose: Purpose,
    settings: Settings | None = None,
    serving: bool = False,
    **overrides: Any,
) -> Engine:
    """A sync engine for `purpose`; `serving`: its connections serve requests, each held for
    a round trip or three (no overflow); `overrides` go to SQLAlchemy (e.g. a test's pool
    size)."""
    s = settings or get_settings()
    options = {
        **_pool_options(purpose, s, serving=serving),
        "connect_args": connect_args(url, purpose=purpose, settings=s),
        **overrides,
    }
    engine = create_engine(url, **options)
    guard_connect_errors(engine, url)
    check_on_checkout(engine)
    return engine


def create_async_engine_for(
    url: URL,
    *,
    purpose: Purpose,
    settings: Settings | None = None,
    serving: bool = False,
    **overrides: Any,
) -> AsyncEngine:
    s = settings or get_settings()
    options = {
        **_pool_options(purpose, s, serving=serving),
        "connect_args": connect_args(url, purpose=purpose, settings=s),
        **overrides,
    }
    engine = create_async_engine(url, **options)
    guard_connect_errors(engine.sync_engine, url)
    check_on_checkout(engine.sync_engine)
    return engine


def connect_raw(
    url: URL,
    *,
    purpose: Purpose,
    settings: Settings | None = None,
    autocommit: bool = False,
) -> psycopg.Connection[Any]:
    """A plain psycopg connection (LISTEN, COPY tools, admin statements) for `purpose`."""
    try:
        return psycopg.connect(
            conninfo(url),
            autocommit=autocommit,
            **connect_args(url, purpose=purpose, settings=settings),
        )
    except psycopg.OperationalError as exc:
        raise unavailable(url, exc) from None


def unavailable(url: URL, exc: BaseException) -> DatabaseUnavailableError:
    """One clear error for a failure to connect, naming host and port and what to try."""
    # libpq says 'connection to server at "h", port p failed: Connection refused' and then a
    # generic second line; the words after the last "failed:" are the actual reason.
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = next((ln.rsplit("failed: ", 1)[1] for ln in lines if "failed: " in ln), None)
    reason = reason or (lines[0] if lines else type(exc).__name__)
    if url.host == "127.0.0.1" and url.username == "postgres" and not url.password:
        hint = (
            "The embedded database is not running: start it with `make db-up` "
            "(or `uv run database up`)."
        )
    else:
        hint = (
            "Check that the server is up and reachable from here, and that DATABASE_URL "
            "(or DATABASE_POOLER_URL) has the right host, port, user and password."
        )
    return DatabaseUnavailableError(host=url.host or "?", port=url.port, reason=reason, hint=hint)


def is_dead(connection: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """True when an idle pooled connection can no longer be used, found without a round trip:
    a server that restarted, a pooler that closed an idle client, or `pg_terminate_backend`
    all leave bytes (an error, then EOF) on a socket that should be silent."""
    pgconn = connection.pgconn
    if pgconn.status != pq.ConnStatus.OK or pgconn.transaction_status != pq.TransactionStatus.IDLE:
        return True
    readable, _, _ = select.select([pgconn.socket], [], [], 0)
    return bool(readable)


def check_on_checkout(engine: Engine) -> None:
    """Hand out only live connections. A dead one is discarded and the pool tries another,
    so a restarted server costs no request an error. It replaces SQLAlchemy's pre-ping
    (`select 1` per checkout: a round trip and a quarter of a small request's CPU), which
    `DB_POOL_PRE_PING` still turns on for networks that drop connections silently."""

    @event.listens_for(engine, "checkout")
    def _on_checkout(_dbapi: Any, _record: Any, proxy: Any) -> None:
        if is_dead(proxy.driver_connection):
            raise exc.DisconnectionError("the server closed this pooled connection")


def guard_connect_errors(engine: Engine, url: URL) -> None:
    """Turn a failure to connect into one DatabaseUnavailableError naming host and port."""

    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        # No connection yet means the failure happened while connecting.
        original = context.original_exception
        if context.connection is None and isinstance(original, psycopg.OperationalError):
            raise unavailable(url, original) from None
