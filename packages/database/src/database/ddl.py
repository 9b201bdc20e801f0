"""Database objects beyond tables, declared in code and rendered to SQL by migrations.

Views are declared as `sa.Table(..., info={"view": True, "definition": …})` beside their
tables in `database.schema`, and created with `security_invoker` so the caller's RLS applies.
"""

from __future__ import annotations

import sqlalchemy as sa

import database.schema  # noqa: F401 - registers the views
from database.schema.base import metadata


def declared_views() -> list[str]:
    """Names of the views declared on the metadata."""
    return sorted(t.name for t in metadata.tables.values() if t.info.get("view"))


def _definition(name: str) -> str:
    table = metadata.tables[name]
    return str(table.info["definition"]).strip()


def view_sql(name: str, definition: str | None = None) -> tuple[str, str]:
    """(create or replace, drop) statements for view `name`."""
    body = (definition or _definition(name)).strip().rstrip(";")
    create = f"create or replace view public.{name} with (security_invoker = true) as {body}"
    return create, f"drop view if exists public.{name}"


_VIEWDEF = sa.text(
    "select pg_get_viewdef(c.oid, true) as definition, c.reloptions"
    " from pg_class c join pg_namespace n on n.oid = c.relnamespace"
    " where n.nspname = 'public' and c.relname = :name and c.relkind = 'v'"
)


def view_definition_differs(connection: sa.Connection, name: str) -> str | None:
    """Why the database's view differs from the declared one, or None when it matches.

    The declared definition is created under a probe name in a rolled-back savepoint, so both
    sides are compared as PostgreSQL deparses them.
    """
    actual = connection.execute(_VIEWDEF, {"name": name}).one_or_none()
    if actual is None:
        return "missing"
    if "security_invoker=true" not in (actual.reloptions or []):
        return "security_invoker is off"
    savepoint = connection.begin_nested()
    try:
        create, _ = view_sql(f"zz_probe_{name}", _definition(name))
        connection.exec_driver_sql(create)
        expected = connection.execute(_VIEWDEF, {"name": f"zz_probe_{name}"}).one()
    finally:
        savepoint.rollback()
    if expected.definition != actual.definition:
        return "definition differs from the declared one"
    return None
