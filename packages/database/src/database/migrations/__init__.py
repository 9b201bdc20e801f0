"""The package's Alembic migrations, run from Python (the tools' CLI, tests and the demo).

The Alembic configuration is built in code, so it works the same from a checkout and from an
installed wheel; `alembic.ini` at the package root is only for the `alembic` command itself.

Every revision runs with `lock_timeout` and `statement_timeout` (DB_MIGRATION_*, set on the
connection by `database.connect`); a revision that times out waiting for a lock is retried
DB_MIGRATION_LOCK_RETRIES times, then fails with a MigrationError that names the session in
its way. Safe forms of the risky operations are in `database.migrations.safe`.
"""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path
from typing import TextIO

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import to_tuple
from sqlalchemy.engine import URL, make_url

from database.connect import Purpose, create_engine_for, require_session_connection
from database.errors import DatabasePackageError, MigrationError
from database.migrations.locks import Blocker, BlockerWatch, is_lock_timeout
from database.schema.base import VERSION_TABLE_SCHEMA
from database.settings import Settings, get_settings

MIGRATIONS_DIR = Path(__file__).resolve().parent

#: Offline SQL needs a dialect, not a server: this URL is never connected to.
OFFLINE_URL = make_url("postgresql+psycopg://offline@localhost/offline")

log = logging.getLogger(__name__)

#: Kept for callers of the earlier name.
require_migration_url = require_session_connection


def alembic_config(
    *,
    url: URL | None = None,
    script_location: Path | None = None,
    settings: Settings | None = None,
) -> Config:
    """An Alembic config for this package; `url` overrides the settings/embedded default."""
    config = Config()
    config.set_main_option("script_location", str(script_location or MIGRATIONS_DIR))
    config.attributes["url"] = url
    config.attributes["settings"] = settings
    return config


def scripts(script_location: Path | None = None) -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(script_location=script_location))


def upgrade(
    *,
    url: URL | None = None,
    revision: str = "head",
    script_location: Path | None = None,
    settings: Settings | None = None,
) -> None:
    """Upgrade to `revision`. Each revision runs in its own transaction, so a failure leaves
    the database at the last revision that succeeded; MigrationError says which."""
    s = settings or get_settings()
    url = url or s.resolved_url()
    attempts = s.db_migration_lock_retries + 1
    for attempt in range(1, attempts + 1):
        config = alembic_config(url=url, script_location=script_location, settings=s)
        try:
            command.upgrade(config, revision)
            return
        except DatabasePackageError:
            raise
        except Exception as exc:
            if is_lock_timeout(exc) and attempt < attempts:
                # The revision was rolled back; whoever held the lock may be gone soon.
                log.warning(
                    "migration: lock timeout (attempt %d of %d), retrying: %s",
                    attempt,
                    attempts,
                    _blocked_by(config) or "blocker not seen",
                )
                time.sleep(s.db_migration_retry_delay_ms / 1000 * attempt)
                continue
            raise _failure(exc, config=config, url=url, attempts=attempt) from exc


def _blocked_by(config: Config) -> str:
    watch: BlockerWatch | None = config.attributes.get("lock_watch")
    blockers: list[Blocker] = watch.blockers if watch is not None else []
    return "; ".join(b.describe() for b in blockers)


def _failure(exc: Exception, *, config: Config, url: URL | None, attempts: int) -> MigrationError:
    at = current_revision(url=url) if url is not None else "unknown"
    still = (
        f"The database is still at revision {at or '(empty)'}: the failing revision ran in "
        "its own transaction and was rolled back entirely."
    )
    if is_lock_timeout(exc):
        settings: Settings = config.attributes["settings"]
        statement = " ".join(str(getattr(exc, "statement", "") or "").split())[:200]
        blockers = _blocked_by(config) or "no blocking session was seen"
        return MigrationError(
            f"migration failed: a statement waited longer than "
            f"{settings.db_migration_lock_timeout_ms} ms for a lock, {attempts} attempt(s): "
            f"{statement!r} was blocked by {blockers}. {still} End or wait for that session "
            "(pg_terminate_backend(pid) if it is stuck), or raise DB_MIGRATION_LOCK_TIMEOUT_MS."
        )
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    return MigrationError(f"migration failed: {reason}. {still}")


def revision_sql(
    *, revision: str, script_location: Path | None = None, settings: Settings | None = None
) -> str:
    """The SQL of one revision alone (offline mode, from its parent), as `make migrate-sql`
    would print it: what the migration linter reads, one file per revision."""
    script = scripts(script_location).get_revision(revision)
    if script is None:
        raise MigrationError(f"no revision {revision!r}")
    parents = to_tuple(script.down_revision, default=())
    if len(parents) > 1:
        raise MigrationError(f"revision {revision} merges {parents}: lint its parents instead")
    target = f"{parents[0]}:{revision}" if parents else revision
    config = alembic_config(url=OFFLINE_URL, script_location=script_location, settings=settings)
    buffer = io.StringIO()
    config.output_buffer = buffer
    command.upgrade(config, target, sql=True)
    return buffer.getvalue()


def upgrade_sql(*, url: URL | None, from_revision: str | None, output: TextIO) -> None:
    """Write the SQL that `upgrade` would run from `from_revision` to head (offline mode)."""
    config = alembic_config(url=url)
    config.output_buffer = output
    target = f"{from_revision}:head" if from_revision else "head"
    command.upgrade(config, target, sql=True)


def downgrade(*, url: URL | None = None, revision: str) -> None:
    command.downgrade(alembic_config(url=url), revision)


def head_revision(script_location: Path | None = None) -> str | None:
    return scripts(script_location).get_current_head()


def current_revision(*, url: URL) -> str | None:
    engine = create_engine_for(require_session_connection(url), purpose=Purpose.MIGRATE)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"version_table_schema": VERSION_TABLE_SCHEMA}
            )
            return context.get_current_revision()
    finally:
        engine.dispose()
