"""Engines and sessions (sync and async, both psycopg 3).

Two kinds of session (ARCHITECTURE decision 6):

* a **service session** connects as the owner and bypasses RLS: ingest, evaluation, workers;
* a **user session** starts every transaction with the caller's role and JWT claims set
  *locally* (`set_config(..., true)`), exactly as Supabase's Data API does, so row-level
  security decides what the user sees. Being transaction-local it is safe behind the
  transaction pooler; an **anon session** is the same with role `anon`.

All of them commit when the block ends normally and roll back on any exception.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from dataclasses import asdict, dataclass
from functools import cached_property, lru_cache
from typing import Any

import psycopg
from sqlalchemy import Engine, event, text
from sqlalchemy.engine import URL, Connection, ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import Pool
from sqlmodel import Session, create_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from database.errors import DatabaseUnavailableError
from database.settings import Settings, get_settings, is_transaction_pooler

Claims = Mapping[str, Any]

# One round trip per transaction: role and claims, both transaction-local.
_IMPERSONATE = text(
    "select set_config('role', :role, true), set_config('request.jwt.claims', :claims, true)"
)
_API_ROLES = {"anon", "authenticated"}


def user_claims(
    *, user_id: uuid.UUID | str, email: str | None = None, **extra: Any
) -> dict[str, Any]:
    """The claims Supabase Auth puts in a signed-in user's access token (the parts RLS reads)."""
    claims: dict[str, Any] = {"sub": str(uuid.UUID(str(user_id))), "role": "authenticated"}
    claims["aud"] = "authenticated"
    if email is not None:
        claims["email"] = email
    claims.update(extra)
    return claims


def _identity(claims: Claims) -> tuple[str, str]:
    """Validate claims for a user session; return (database role, claims as JSON)."""
    role = str(claims.get("role", "authenticated"))
    if role not in _API_ROLES:
        raise ValueError(f"claims.role must be one of {sorted(_API_ROLES)}, got {role!r}")
    if role == "authenticated":
        try:
            uuid.UUID(str(claims["sub"]))
        except (KeyError, ValueError):
            raise ValueError("claims.sub must be the user's UUID (auth.users.id)") from None
    return role, json.dumps({**claims, "role": role}, default=str, separators=(",", ":"))


@dataclass(frozen=True)
class PoolStatus:
    size: int
    checked_out: int
    checked_in: int
    overflow: int


@dataclass(frozen=True)
class Health:
    server_version: str
    latency_ms: float
    database: str
    user: str
    pool: PoolStatus

    def report(self) -> dict[str, Any]:
        """What a /health endpoint shows (no names of databases or users)."""
        return {
            "status": "ok",
            "database": {
                "server_version": self.server_version,
                "latency_ms": self.latency_ms,
                "pool": asdict(self.pool),
            },
        }


def _pool_status(pool: Pool) -> PoolStatus:
    return PoolStatus(
        size=int(getattr(pool, "size", lambda: 0)()),
        checked_out=int(getattr(pool, "checkedout", lambda: 0)()),
        checked_in=int(getattr(pool, "checkedin", lambda: 0)()),
        overflow=int(getattr(pool, "overflow", lambda: 0)()),
    )


def _unavailable(url: URL, exc: BaseException) -> DatabaseUnavailableError:
    # libpq says 'connection to server at "h", port p failed: Connection refused' and then a
    # generic second line; the words after the last "failed:" are the actual reason.
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = next((ln.rsplit("failed: ", 1)[1] for ln in lines if "failed: " in ln), None)
    reason = reason or (lines[0] if lines else type(exc).__name__)
    if url.host == "127.0.0.1" and url.username == "postgres" and not url.password:
        hint = (
            "The embedded database is not running: start it with `make db-up` "
            "(or `uv run database local up`)."
        )
    else:
        hint = (
            "Check that the server is up and reachable from here, and that DATABASE_URL "
            "(or DATABASE_POOLER_URL) has the right host, port, user and password."
        )
    return DatabaseUnavailableError(host=url.host or "?", port=url.port, reason=reason, hint=hint)


def guard_connect_errors(engine: Engine, url: URL) -> None:
    """Turn a failure to connect into one DatabaseUnavailableError naming host and port."""

    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        # No connection yet means the failure happened while connecting.
        original = context.original_exception
        if context.connection is None and isinstance(original, psycopg.OperationalError):
            raise _unavailable(url, original) from None


class Database:
    """The engines and session factories for one database. Build once per process.

    `url` is the direct/session connection (migrations, service sessions); `api_url` is what
    user and anon sessions use: the transaction pooler when DATABASE_POOLER_URL is set.
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        url: URL | None = None,
        api_url: URL | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.url = url or self.settings.direct_url() or ensure_local_database(self.settings)
        self.api_url = api_url or self.settings.pooler_url() or self.url

    # -- engines ---------------------------------------------------------------------------

    def _engine_options(self, url: URL) -> dict[str, Any]:
        s = self.settings
        connect_args: dict[str, Any] = {
            "application_name": s.db_application_name,
            "connect_timeout": 10,
        }
        if is_transaction_pooler(url):
            # Supavisor in transaction mode hands each transaction to any server connection:
            # named prepared statements would not be there next time.
            connect_args["prepare_threshold"] = None
        elif s.db_statement_timeout_ms:
            connect_args["options"] = f"-c statement_timeout={s.db_statement_timeout_ms}"
        return {
            "pool_size": s.db_pool_size,
            "max_overflow": s.db_max_overflow,
            "pool_timeout": s.db_pool_timeout,
            "pool_recycle": s.db_pool_recycle,
            "pool_pre_ping": s.db_pool_pre_ping,
            "connect_args": connect_args,
        }

    def _make_engine(self, url: URL) -> Engine:
        engine = create_engine(url, **self._engine_options(url))
        guard_connect_errors(engine, url)
        return engine

    def _make_async_engine(self, url: URL) -> AsyncEngine:
        engine = create_async_engine(url, **self._engine_options(url))
        guard_connect_errors(engine.sync_engine, url)
        return engine

    @cached_property
    def engine(self) -> Engine:
        return self._make_engine(self.url)

    @cached_property
    def api_engine(self) -> Engine:
        return self.engine if self.api_url == self.url else self._make_engine(self.api_url)

    @cached_property
    def async_engine(self) -> AsyncEngine:
        return self._make_async_engine(self.url)

    @cached_property
    def async_api_engine(self) -> AsyncEngine:
        if self.api_url == self.url:
            return self.async_engine
        return self._make_async_engine(self.api_url)

    def dispose(self) -> None:
        for name in ("engine", "api_engine"):
            if name in self.__dict__:
                self.__dict__.pop(name).dispose()

    async def adispose(self) -> None:
        for name in ("async_engine", "async_api_engine"):
            if name in self.__dict__:
                await self.__dict__.pop(name).dispose()
        self.dispose()

    # -- sync sessions ---------------------------------------------------------------------

    @contextmanager
    def _session(self, engine: Engine, identity: tuple[str, str] | None) -> Iterator[Session]:
        session = Session(engine, expire_on_commit=False)
        if identity is not None:
            _impersonate_on_begin(session, identity)
        try:
            yield session
            session.commit()
        except DatabaseUnavailableError as exc:
            raise exc from None  # one clear error, not SQLAlchemy's chain of driver errors
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def service_session(self) -> AbstractContextManager[Session]:
        """Owner connection, RLS bypassed. Commits on success, rolls back on error."""
        return self._session(self.engine, None)

    def user_session(self, *, claims: Claims) -> AbstractContextManager[Session]:
        """Runs as `authenticated` with `claims` (must carry `sub`): RLS applies."""
        return self._session(self.api_engine, _identity(claims))

    def anon_session(self) -> AbstractContextManager[Session]:
        """Runs as `anon`, the role of a request without a user token."""
        return self._session(self.api_engine, _identity({"role": "anon"}))

    # -- async sessions --------------------------------------------------------------------

    @asynccontextmanager
    async def _async_session(
        self, engine: AsyncEngine, identity: tuple[str, str] | None
    ) -> AsyncIterator[AsyncSession]:
        session = AsyncSession(engine, expire_on_commit=False)
        if identity is not None:
            _impersonate_on_begin(session.sync_session, identity)
        try:
            yield session
            await session.commit()
        except DatabaseUnavailableError as exc:
            raise exc from None
        except BaseException:
            await session.rollback()
            raise
        finally:
            await session.close()

    def async_service_session(self) -> AbstractAsyncContextManager[AsyncSession]:
        return self._async_session(self.async_engine, None)

    def async_user_session(self, *, claims: Claims) -> AbstractAsyncContextManager[AsyncSession]:
        return self._async_session(self.async_api_engine, _identity(claims))

    def async_anon_session(self) -> AbstractAsyncContextManager[AsyncSession]:
        return self._async_session(self.async_api_engine, _identity({"role": "anon"}))

    # -- health ----------------------------------------------------------------------------

    def health_check(self) -> Health:
        """Server version, round-trip latency of `select 1`, pool status. Raises
        DatabaseUnavailableError (host, port, what to try) when the server cannot be reached."""
        try:
            with self.engine.connect() as conn:
                row = conn.execute(_HEALTH_SQL).one()
                started = time.perf_counter()
                conn.execute(text("select 1"))
                latency_ms = (time.perf_counter() - started) * 1000
        except DatabaseUnavailableError as exc:
            raise exc from None
        return Health(
            server_version=row.server_version,
            latency_ms=round(latency_ms, 3),
            database=row.database,
            user=row.user,
            pool=_pool_status(self.engine.pool),
        )

    async def ahealth_check(self) -> Health:
        try:
            async with self.async_engine.connect() as conn:
                row = (await conn.execute(_HEALTH_SQL)).one()
                started = time.perf_counter()
                await conn.execute(text("select 1"))
                latency_ms = (time.perf_counter() - started) * 1000
        except DatabaseUnavailableError as exc:
            raise exc from None
        return Health(
            server_version=row.server_version,
            latency_ms=round(latency_ms, 3),
            database=row.database,
            user=row.user,
            pool=_pool_status(self.async_engine.pool),
        )


_HEALTH_SQL = text(
    "select current_setting('server_version') as server_version,"
    " current_database() as database, current_user as user"
)


def _impersonate_on_begin(session: Session, identity: tuple[str, str]) -> None:
    role, claims_json = identity

    def _after_begin(_session: Session, _transaction: object, connection: Connection) -> None:
        connection.execute(_IMPERSONATE, {"role": role, "claims": claims_json})

    event.listen(session, "after_begin", _after_begin)


def ensure_local_database(settings: Settings) -> URL:
    """Start (or reuse) the embedded server and bootstrap its `postgres` database."""
    from database.bootstrap import apply_bootstrap
    from database.local import LocalServer

    url = LocalServer(settings.local_db_dir, preferred_port=settings.local_db_port).up()
    apply_bootstrap(url)
    return url


@lru_cache(maxsize=1)
def get_database() -> Database:
    """The process-wide `Database` built from `get_settings()`."""
    return Database()
