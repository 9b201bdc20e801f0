"""Alembic environment: the package's metadata, its own schemas only, a private version table.

The URL comes from `alembic_config(url=…)` (tests, the CLI), else from the package settings
(DATABASE_URL, or the embedded server `database up` started). Migrations need a direct or
session connection: the transaction pooler (port 6543) is refused. The connection carries the
migration lock and statement timeouts (`database.connect`, Purpose.MIGRATE); the offline SQL
sets the same ones, so `make migrate-sql` run through psql behaves alike.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import URL

import database.migrations.autogen
import database.schema  # noqa: F401 - registers every table on the metadata
from database.connect import Purpose, create_engine_for, require_session_connection
from database.migrations.locks import BlockerWatch
from database.migrations.rewrite import safe_forms
from database.schema.base import MANAGED_SCHEMAS, VERSION_TABLE_SCHEMA, metadata
from database.settings import Settings, get_settings

config = context.config

# Serializes concurrent `migrate` runs against one database (two deploys, two terminals).
_MIGRATION_LOCK_KEY = 7_245_100_914


def _settings() -> Settings:
    settings: Settings | None = config.attributes.get("settings")
    return settings or get_settings()


def _url() -> URL:
    url: URL | None = config.attributes.get("url")
    return require_session_connection(url or _settings().resolved_url())


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    if type_ == "schema":
        return name in MANAGED_SCHEMAS
    return True


#: Partitions in the database (read when autogenerate connects): their parent is the model;
#: the partitions themselves are made by `database maintain` or pg_partman, never by a revision.
_PARTITIONS: set[str] = set()


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    # Keep stubs of other schemas' tables (auth.users) and views out of table autogenerate;
    # views, policies and grants are compared by database.migrations.autogen instead.
    if type_ == "table":
        if reflected and compare_to is None and name in _PARTITIONS:
            return False
        return obj.schema in MANAGED_SCHEMAS and not obj.info.get("view")
    # A generated column present on both sides is left out: Alembic cannot compare its
    # expression, and its server-default comparison breaks on one (1.20); column_drift checks
    # its type.
    return not (type_ == "column" and compare_to is not None and obj.computed is not None)


def compare_server_default(
    context: Any,
    inspected_column: Any,
    metadata_column: Any,
    inspected_default: str | None,
    metadata_default: Any,
    rendered_metadata_default: str | None,
) -> bool | None:
    """Defaults that call our own functions are compared as text: Alembic would otherwise run
    them to compare, before the revision that creates them has."""
    rendered = (rendered_metadata_default or "").strip("'\"")
    if "private." in rendered or "private." in (inspected_default or ""):
        return rendered.replace(" ", "") != (inspected_default or "").replace(" ", "")
    return None  # Alembic's own comparison


_OPTIONS: dict[str, Any] = {
    "target_metadata": metadata,
    "version_table_schema": VERSION_TABLE_SCHEMA,
    "include_schemas": True,
    "include_name": include_name,
    "include_object": include_object,
    "compare_type": True,
    "compare_server_default": compare_server_default,
    # One transaction per revision: a failing revision leaves the previous one applied.
    "transaction_per_migration": True,
    # `make revision`: an index, CHECK or foreign key on a table that exists already is
    # written in its safe form (database.migrations.safe).
    "process_revision_directives": safe_forms,
}


def run_migrations_offline() -> None:
    settings = _settings()
    context.configure(
        url=_url().render_as_string(hide_password=True),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **_OPTIONS,
    )
    with context.begin_transaction():
        context.execute(f"set lock_timeout = {settings.db_migration_lock_timeout_ms}")
        context.execute(f"set statement_timeout = {settings.db_migration_statement_timeout_ms}")
        context.execute(f"create schema if not exists {VERSION_TABLE_SCHEMA}")
        context.run_migrations()


def run_migrations_online() -> None:
    url = _url()
    settings = _settings()
    engine = create_engine_for(url, purpose=Purpose.MIGRATE, settings=settings)
    try:
        with engine.connect() as connection:
            # Another `migrate` run may hold the advisory lock for long: wait for it, since
            # lock_timeout is meant for DDL on busy tables, not for this queue.
            connection.execute(text("set local lock_timeout = 0"))
            connection.execute(text("select pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            connection.execute(text(f"create schema if not exists {VERSION_TABLE_SCHEMA}"))
            pid = connection.execute(text("select pg_backend_pid()")).scalar_one()
            _PARTITIONS.update(
                connection.execute(
                    text(
                        "select c.relname from pg_class c"
                        " join pg_namespace n on n.oid = c.relnamespace"
                        " where c.relispartition and n.nspname = 'public'"
                    )
                ).scalars()
            )
            connection.commit()
            watch = BlockerWatch(url, pid=pid, settings=settings)
            config.attributes["lock_watch"] = watch
            try:
                with watch:
                    context.configure(connection=connection, **_OPTIONS)
                    with context.begin_transaction():
                        context.run_migrations()
                    connection.commit()
            finally:
                connection.rollback()
                connection.execute(
                    text("select pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_KEY}
                )
                connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
