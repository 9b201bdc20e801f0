"""The package's Alembic migrations, run from Python (the tools' CLI, tests and the demo).

The Alembic configuration is built in code, so it works the same from a checkout and from an
installed wheel; `alembic.ini` at the package root is only for the `alembic` command itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from database.connect import Purpose, create_engine_for, require_session_connection
from database.errors import DatabasePackageError, MigrationError
from database.schema.base import VERSION_TABLE_SCHEMA

MIGRATIONS_DIR = Path(__file__).resolve().parent


#: Kept for callers of the earlier name.
require_migration_url = require_session_connection


def alembic_config(*, url: URL | None = None, script_location: Path | None = None) -> Config:
    """An Alembic config for this package; `url` overrides the settings/embedded default."""
    config = Config()
    config.set_main_option("script_location", str(script_location or MIGRATIONS_DIR))
    config.attributes["url"] = url
    return config


def upgrade(
    *, url: URL | None = None, revision: str = "head", script_location: Path | None = None
) -> None:
    """Upgrade to `revision`. Each revision runs in its own transaction, so a failure leaves
    the database at the last revision that succeeded; MigrationError says which."""
    try:
        command.upgrade(alembic_config(url=url, script_location=script_location), revision)
    except DatabasePackageError:
        raise
    except Exception as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        at = current_revision(url=url) if url is not None else "unknown"
        raise MigrationError(
            f"migration failed: {reason}. The database is still at revision {at or '(empty)'}: "
            "the failing revision ran in its own transaction and was rolled back entirely."
        ) from exc


def upgrade_sql(*, url: URL | None, from_revision: str | None, output: TextIO) -> None:
    """Write the SQL that `upgrade` would run from `from_revision` to head (offline mode)."""
    config = alembic_config(url=url)
    config.output_buffer = output
    target = f"{from_revision}:head" if from_revision else "head"
    command.upgrade(config, target, sql=True)


def downgrade(*, url: URL | None = None, revision: str) -> None:
    command.downgrade(alembic_config(url=url), revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


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
