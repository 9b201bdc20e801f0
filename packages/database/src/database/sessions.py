"""Engines and sessions (sync and async, both psycopg 3).

Two kinds of session (ARCHITECTURE decision 6):

* a **service session** connects as the owner and bypasses RLS: ingest, evaluation, workers;
* a **user session** starts every transaction with the caller's role and JWT claims set
  *locally* (`set_config(..., true)`), exactly as Supabase's Data API does, so row-level
  security decides what the user sees. Being transaction-local it is safe behind the
  transaction pooler; an **anon session** is the same with role `anon`.

Each has a **read** variant (`read_session()`, `read_user_session()`, `read_anon_session()`):
the same, on a read replica (DATABASE_READ_URL, several used in turn; unset: the primary),
every transaction read-only, and a write refused before it is sent (ReadOnlySessionError);
`async_read_session()`, `async_read_user_session()`, `async_read_anon_session()` are their
async twins. `health_check()` reports each replica's lag (database.health).

All of them commit when the block ends normally and roll back on any exception.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from functools import cached_property, lru_cache
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg.sql
from sqlalchemy import Engine, event, text
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import ORMExecuteState, UOWTransaction
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from database.connect import Purpose, create_async_engine_for, create_engine_for
from database.errors import DatabaseUnavailableError, ReadOnlySessionError, UnknownUserError
from database.health import (
    PRIMARY_SQL,
    REPLICA_SQL,
    Health,
    PoolStatus,
    ReplicaHealth,
    pool_status,
    replica_health,
    unreachable,
)
from database.settings import Settings, get_settings

Claims = Mapping[str, Any]
E = TypeVar("E", Engine, AsyncEngine)

# Role and claims, both transaction-local, and whether a signed-in user still exists (a
# primary-key probe): a token outlives a deleted user, and one signed for another project names
# nobody here. The probe's privileges are checked when the statement starts, before `role`
# changes: the login role must be able to read auth.users(id).
_IMPERSONATE = (
    "select set_config('role', {role}, true), set_config('request.jwt.claims', {claims}, true),"
    " {known} as known"
)
_KNOWN = (
    "{role} <> 'authenticated'"
    " or private.user_exists(cast(cast({claims} as jsonb) ->> 'sub' as uuid))"
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


def identity_for(claims: Claims) -> tuple[str, str]:
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


class Database:
    """The engines and session factories for one database. Build once per process.

    `url` is the direct/session connection (migrations, service sessions, owner); `api_url` is
    what user and anon sessions log in with: the API role, which can only become anon or
    authenticated (DATABASE_API_URL; on Supabase through the transaction pooler).
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        url: URL | None = None,
        api_url: URL | None = None,
        read_urls: Sequence[URL] | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        # Only looked up, never started: `database up` (or the test plugin) starts a local one.
        self.url = url or self.settings.resolved_url()
        # User and anon sessions: the NOINHERIT API role, never the owner (decision 13).
        self.api_url = api_url or self.settings.api_url(self.url)
        # Read sessions: the replicas in turn (DATABASE_READ_URL), else the primary.
        self.read_urls = list(read_urls) if read_urls is not None else self.settings.read_urls()
        self._turn = itertools.count()

    # -- engines (built on first use) ------------------------------------------------------

    @cached_property
    def engine(self) -> Engine:
        return create_engine_for(self.url, purpose=Purpose.SERVICE, settings=self.settings)

    @cached_property
    def api_engine(self) -> Engine:
        return create_engine_for(self.api_url, purpose=Purpose.API, settings=self.settings)

    @cached_property
    def async_engine(self) -> AsyncEngine:
        return create_async_engine_for(self.url, purpose=Purpose.SERVICE, settings=self.settings)

    @cached_property
    def async_api_engine(self) -> AsyncEngine:
        """User and anon sessions of request handlers: `serving`, a request beyond the pool
        waits for a connection (sync code, e.g. a user's BulkWriter thread beside a session,
        takes the sync engines, which may overflow)."""
        return create_async_engine_for(
            self.api_url, purpose=Purpose.API, settings=self.settings, serving=True
        )

    @cached_property
    def read_engines(self) -> list[Engine]:
        """Read-only engines: one per replica, or the primary's when there is none."""
        return [
            create_engine_for(url, purpose=Purpose.READ, settings=self.settings)
            for url in self.read_urls or [self.url]
        ]

    @cached_property
    def read_api_engines(self) -> list[Engine]:
        """Read user/anon sessions: the API role (DATABASE_API_URL's user and password) on each
        replica, or the API URL itself when there is none; autocommit at the driver like the
        API engine (the impersonation opens the transaction)."""
        return [
            create_engine_for(
                url, purpose=Purpose.READ, settings=self.settings, isolation_level="AUTOCOMMIT"
            )
            for url in self._read_api_urls()
        ]

    @cached_property
    def async_read_engines(self) -> list[AsyncEngine]:
        """`read_engines`, async."""
        return [
            create_async_engine_for(url, purpose=Purpose.READ, settings=self.settings)
            for url in self.read_urls or [self.url]
        ]

    @cached_property
    def async_read_api_engines(self) -> list[AsyncEngine]:
        """`read_api_engines`, async."""
        return [
            create_async_engine_for(
                url,
                purpose=Purpose.READ,
                settings=self.settings,
                serving=True,
                isolation_level="AUTOCOMMIT",
            )
            for url in self._read_api_urls()
        ]

    def _read_api_urls(self) -> list[URL]:
        api = self.api_url
        urls = [u.set(username=api.username, password=api.password) for u in self.read_urls]
        return urls or [api]

    def _next(self, engines: list[E]) -> E:
        return engines[next(self._turn) % len(engines)]

    def next_async_read_api_engine(self) -> AsyncEngine:
        """The async read engine of the API role whose turn it is (replicas in turn; the
        primary's API URL when there is none): for reads made without a session."""
        return self._next(self.async_read_api_engines)

    def dispose(self) -> None:
        for name in ("engine", "api_engine"):
            if name in self.__dict__:
                self.__dict__.pop(name).dispose()
        for name in ("read_engines", "read_api_engines"):
            for engine in self.__dict__.pop(name, []):
                engine.dispose()

    async def adispose(self) -> None:
        for name in ("async_engine", "async_api_engine"):
            if name in self.__dict__:
                await self.__dict__.pop(name).dispose()
        for name in ("async_read_engines", "async_read_api_engines"):
            for engine in self.__dict__.pop(name, []):
                await engine.dispose()
        self.dispose()

    # -- sync sessions ---------------------------------------------------------------------

    @contextmanager
    def _session(
        self,
        engine: Engine,
        identity: tuple[str, str] | None,
        *,
        verify_user: bool = False,
        read_only: bool = False,
        primary: Engine | None = None,
    ) -> Iterator[Session]:
        """`primary`: where to ask for a user the replica `engine` does not know (yet)."""

        def make(on: Engine, *, read_only_tx: bool = False) -> Session:
            if identity is None:
                return (_ReadSession if read_only else Session)(on, expire_on_commit=False)
            return (_ReadCallerSession if read_only else _CallerSession)(
                on, expire_on_commit=False, info={_IDENTITY: (identity, verify_user, read_only_tx)}
            )

        session = make(engine)
        try:
            if primary is not None:
                try:
                    session.connection()  # begins: impersonates, looks the user up
                except UnknownUserError:
                    session.close()  # not replayed yet, or no such user: the primary says
                    # The primary's API role is not read-only by itself: every transaction of
                    # this session is made so where it starts.
                    session = make(primary, read_only_tx=True)
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

    def user_session(
        self, *, claims: Claims, verify_user: bool = False
    ) -> AbstractContextManager[Session]:
        """Runs as `authenticated` with `claims` (must carry `sub`): RLS applies. With
        `verify_user` (request-serving apps), a `sub` not in auth.users is UnknownUserError
        at the first statement — checked in the same round trip that sets the role."""
        return self._session(self.api_engine, identity_for(claims), verify_user=verify_user)

    def anon_session(self) -> AbstractContextManager[Session]:
        """Runs as `anon`, the role of a request without a user token."""
        return self._session(self.api_engine, identity_for({"role": "anon"}))

    def read_session(self) -> AbstractContextManager[Session]:
        """A service session on a replica (or the primary), read-only: RLS bypassed."""
        return self._session(self._next(self.read_engines), None, read_only=True)

    def read_user_session(
        self, *, claims: Claims, verify_user: bool = False
    ) -> AbstractContextManager[Session]:
        """`user_session()` on a replica (or the primary), read-only: RLS applies there too.
        With `verify_user`, a user the replica does not know yet (created a moment ago, not
        replayed) is looked up on the primary, and the session reads there."""
        return self._session(
            self._next(self.read_api_engines),
            identity_for(claims),
            verify_user=verify_user,
            read_only=True,
            primary=self.api_engine if verify_user and self.read_urls else None,
        )

    def read_anon_session(self) -> AbstractContextManager[Session]:
        """`anon_session()` on a replica (or the primary), read-only."""
        return self._session(
            self._next(self.read_api_engines), identity_for({"role": "anon"}), read_only=True
        )

    # -- async sessions --------------------------------------------------------------------

    @asynccontextmanager
    async def _async_session(
        self,
        engine: AsyncEngine,
        identity: tuple[str, str] | None,
        *,
        verify_user: bool = False,
        read_only: bool = False,
        primary: AsyncEngine | None = None,
    ) -> AsyncIterator[AsyncSession]:
        """`primary`: where to ask for a user the replica `engine` does not know (yet)."""

        # The async session drives a sync one: its class carries the impersonation and the
        # refusal of writes, exactly as for the sync sessions.
        def make(on: AsyncEngine, *, read_only_tx: bool = False) -> AsyncSession:
            if identity is None:
                return AsyncSession(
                    on,
                    expire_on_commit=False,
                    sync_session_class=_ReadSession if read_only else Session,
                )
            return AsyncSession(
                on,
                expire_on_commit=False,
                sync_session_class=_ReadCallerSession if read_only else _CallerSession,
                info={_IDENTITY: (identity, verify_user, read_only_tx)},
            )

        session = make(engine)
        try:
            if primary is not None:
                try:
                    await session.connection()  # begins: impersonates, looks the user up
                except UnknownUserError:
                    await session.close()  # not replayed yet, or no such user: the primary says
                    session = make(primary, read_only_tx=True)
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

    def async_user_session(
        self, *, claims: Claims, verify_user: bool = False
    ) -> AbstractAsyncContextManager[AsyncSession]:
        return self._async_session(
            self.async_api_engine, identity_for(claims), verify_user=verify_user
        )

    def async_anon_session(self) -> AbstractAsyncContextManager[AsyncSession]:
        return self._async_session(self.async_api_engine, identity_for({"role": "anon"}))

    def async_read_session(self) -> AbstractAsyncContextManager[AsyncSession]:
        """`read_session()`, async: a replica (or the primary), read-only, RLS bypassed."""
        return self._async_session(self._next(self.async_read_engines), None, read_only=True)

    def async_read_user_session(
        self, *, claims: Claims, verify_user: bool = False
    ) -> AbstractAsyncContextManager[AsyncSession]:
        """`read_user_session()`, async: RLS applies on the replica too; a user the replica
        does not know yet is looked up on the primary, and the session reads there."""
        return self._async_session(
            self._next(self.async_read_api_engines),
            identity_for(claims),
            verify_user=verify_user,
            read_only=True,
            primary=self.async_api_engine if verify_user and self.read_urls else None,
        )

    def async_read_anon_session(self) -> AbstractAsyncContextManager[AsyncSession]:
        """`read_anon_session()`, async."""
        return self._async_session(
            self._next(self.async_read_api_engines),
            identity_for({"role": "anon"}),
            read_only=True,
        )

    # -- health ----------------------------------------------------------------------------

    def health_check(self, *, replicas: bool = True) -> Health:
        """Server version, round-trip latency of `select 1`, pool status and, with `replicas`,
        each read URL's standby state and lag (database.health). Raises
        DatabaseUnavailableError (host, port, what to try) when the primary cannot be reached;
        a replica that cannot be is reported, not raised."""
        try:
            with self.engine.connect() as conn:
                row = conn.execute(PRIMARY_SQL).one()
                started = time.perf_counter()
                conn.execute(text("select 1"))
                latency_ms = (time.perf_counter() - started) * 1000
        except DatabaseUnavailableError as exc:
            raise exc from None
        found = []
        if replicas and self.read_urls:
            for url, engine in zip(self.read_urls, self.read_engines, strict=True):
                try:
                    with engine.connect() as replica:
                        lag = replica.execute(REPLICA_SQL, {"lsn": row.lsn}).one()
                    found.append(replica_health(url=url, row=lag))
                except (DatabaseUnavailableError, DBAPIError) as error:
                    found.append(unreachable(url=url, exc=error))
        return self._health(row, latency_ms, pool_status(self.engine.pool), found)

    async def ahealth_check(self, *, replicas: bool = True) -> Health:
        """`health_check()`, async."""
        try:
            async with self.async_engine.connect() as conn:
                row = (await conn.execute(PRIMARY_SQL)).one()
                started = time.perf_counter()
                await conn.execute(text("select 1"))
                latency_ms = (time.perf_counter() - started) * 1000
        except DatabaseUnavailableError as exc:
            raise exc from None
        found = []
        if replicas and self.read_urls:
            for url, engine in zip(self.read_urls, self.async_read_engines, strict=True):
                try:
                    async with engine.connect() as replica:
                        lag = (await replica.execute(REPLICA_SQL, {"lsn": row.lsn})).one()
                    found.append(replica_health(url=url, row=lag))
                except (DatabaseUnavailableError, DBAPIError) as error:
                    found.append(unreachable(url=url, exc=error))
        return self._health(row, latency_ms, pool_status(self.async_engine.pool), found)

    def _health(
        self, row: Any, latency_ms: float, pool: PoolStatus, replicas: list[ReplicaHealth]
    ) -> Health:
        return Health(
            server_version=row.server_version,
            latency_ms=round(latency_ms, 3),
            database=row.database,
            user=row.user,
            pool=pool,
            reads="replicas" if self.read_urls else "primary",
            replicas=tuple(replicas),
        )


def impersonate(
    connection: Connection,
    identity: tuple[str, str],
    *,
    verify_user: bool = False,
    read_only: bool = False,
) -> None:
    """Make the rest of the connection's transaction run as `identity` (role + claims). With
    `verify_user`, UnknownUserError when the claims name a user that is not in auth.users;
    with `read_only`, the transaction is read-only too (same round trip).

    On an API connection (autocommit at the driver: its login role can do nothing by itself)
    this statement opens the transaction too: `…; begin` in one simple query turns the
    statement's implicit transaction into the request's, one round trip instead of two."""
    driver = connection.connection.driver_connection
    opens = bool(getattr(driver, "autocommit", False))
    statement = _impersonation(*identity, verify_user=verify_user, opens=opens, read_only=read_only)
    # No parameters at all, so the driver sends a simple query (a '%' in claims stays text).
    result = connection.exec_driver_sql(statement, execution_options={"no_parameters": True})
    if not result.one().known:
        raise UnknownUserError()


def impersonation_sql(
    identity: tuple[str, str], *, verify_user: bool = False, read_only: bool = False
) -> str:
    """The statements that make the rest of a transaction run as `identity`, as text. The
    first's one row's last column is whether the claims name a known user (always true without
    `verify_user`); with `read_only`, a second makes the transaction read-only."""
    return _impersonation(*identity, verify_user=verify_user, opens=False, read_only=read_only)


@lru_cache(maxsize=4096)
def _impersonation(
    role: str, claims: str, *, verify_user: bool, opens: bool, read_only: bool = False
) -> str:
    """The statement as text, literals quoted by the driver (no parameters: a simple query may
    hold several statements); cached, as most callers repeat an identity (anon, a busy user)."""
    values = {"role": _literal(role), "claims": _literal(claims)}
    known = _KNOWN.format(**values) if verify_user else "true"
    statement = _IMPERSONATE.format(known=known, **values)
    if opens:
        statement += "; begin"
    # Allowed after the first statement: only a switch to read-write must come before any.
    return f"{statement}; {_READ_ONLY}" if read_only else statement


def _literal(value: str) -> str:
    return psycopg.sql.Literal(value).as_string(None)


_IDENTITY = "database.identity"
_READ_ONLY = "set transaction read only"


class _CallerSession(Session):
    """A user or anon session: every transaction starts as the caller (`info[_IDENTITY]`)."""


@event.listens_for(_CallerSession, "after_begin")
def _impersonate_on_begin(session: Session, _transaction: object, connection: Connection) -> None:
    # One listener for the class, not one registered per session: cheaper per request.
    identity, verify_user, read_only = session.info[_IDENTITY]
    impersonate(connection, identity, verify_user=verify_user, read_only=read_only)


class _ReadSession(Session):
    """A read session: writes are refused before they are sent (the server would refuse them
    too, later and less clearly)."""


class _ReadCallerSession(_CallerSession):
    """A read user or anon session."""


def _refuse_flush(session: Session, _flush: UOWTransaction, _instances: object) -> None:
    if session.new or session.dirty or session.deleted:
        raise ReadOnlySessionError()


def _refuse_writes(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        raise ReadOnlySessionError()


for _read_class in (_ReadSession, _ReadCallerSession):
    event.listen(_read_class, "before_flush", _refuse_flush)
    event.listen(_read_class, "do_orm_execute", _refuse_writes)


@lru_cache(maxsize=1)
def get_database() -> Database:
    """The process-wide `Database` built from `get_settings()`."""
    return Database()


P = ParamSpec("P")
T = TypeVar("T")


async def run_in(
    session: AsyncSession,
    function: Callable[Concatenate[Session, P], T],
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Run a sync data function (`function(session, …)`) on an async session's connection:
    one implementation of every query serves sync and async callers alike."""

    def call(sync_session: Any, /) -> T:
        return function(sync_session, *args, **kwargs)

    return await session.run_sync(call)
