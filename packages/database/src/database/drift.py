"""One drift report: does the database hold exactly what the code declares?

Columns (name, type as PostgreSQL formats it, nullability), access (RLS, policies, grants) and
views are compared; a hand-edited revision or a hand-run ALTER shows up here. `alembic check`
covers the same ground through the autogenerate comparators; tests call `drift_report`.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from database import access
from database.ddl import declared_views, view_definition_differs
from database.schema.base import metadata

_SYNONYMS = {"varchar": "charactervarying", "timestamptz": "timestampwithtimezone"}

_COLUMNS = sa.text(
    "select a.attname as name, format_type(a.atttypid, a.atttypmod) as type,"
    " not a.attnotnull as nullable"
    " from pg_attribute a where a.attrelid = cast(:t as regclass)"
    " and a.attnum > 0 and not a.attisdropped"
)


def _normalize(type_name: str) -> str:
    compact = type_name.lower().replace(" ", "")
    return _SYNONYMS.get(compact, compact)


def column_drift(connection: sa.Connection) -> list[str]:
    """One line per column that differs between the models and the database."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    problems = []
    for table in metadata.sorted_tables:
        if table.schema is not None or table.info.get("view"):
            continue
        exists = connection.execute(
            sa.text("select to_regclass(:t)"), {"t": f"public.{table.name}"}
        ).scalar()
        if exists is None:
            problems.append(f"{table.name}: missing")
            continue
        actual = {
            row.name: (_normalize(row.type), row.nullable)
            for row in connection.execute(_COLUMNS, {"t": f"public.{table.name}"})
        }
        for column in table.columns:
            declared = (_normalize(column.type.compile(dialect=dialect)), bool(column.nullable))
            found = actual.pop(column.name, None)
            if found is None:
                problems.append(f"{table.name}.{column.name}: missing in the database")
            elif found != declared:
                problems.append(
                    f"{table.name}.{column.name}: database has {found[0]}"
                    f"{' null' if found[1] else ' not null'}, model declares {declared[0]}"
                    f"{' null' if declared[1] else ' not null'}"
                )
        problems.extend(f"{table.name}.{name}: not in the model" for name in sorted(actual))
    return problems


def drift_report(connection: sa.Connection) -> list[str]:
    """Every difference between the declared schema and the database, one line each."""
    problems = column_drift(connection)
    problems += [str(d) for d in access.diff(connection)]
    for name in declared_views():
        why = view_definition_differs(connection, name)
        if why is not None:
            problems.append(f"view {name}: {why}")
    return problems
