"""`make revision` writes the safe form of an operation on a table that already exists.

Alembic's `process_revision_directives` hook (set in env.py) walks the generated operations;
on a table the database already has, it turns

* `op.create_index` / `op.drop_index` into `safe.create_index_concurrently` /
  `safe.drop_index_concurrently`,
* `op.create_check_constraint` / `op.create_foreign_key` into `safe.add_check_constraint` /
  `safe.add_foreign_key` (NOT VALID, then VALIDATE in a separate transaction).

Tables created by the same revision are left alone: nobody can be using them yet. An operation
with options the helpers do not cover stays as generated, and the migration linter
(`make migration-lint`) then says what to do about it.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import renderers
from alembic.operations import MigrateOperation, ops
from sqlalchemy.dialects import postgresql

_HELPERS = "from database.migrations import safe"
_INDEX_OPTIONS = {"postgresql_where", "postgresql_using"}


class SafeOp(MigrateOperation):
    """An operation rewritten to a call of `database.migrations.safe`; `original` is what
    autogenerate produced (it keeps `alembic check`'s diff output unchanged)."""

    def __init__(self, original: MigrateOperation, call: str) -> None:
        self.original = original
        self.call = call

    def to_diff_tuple(self) -> Any:
        return self.original.to_diff_tuple()


@renderers.dispatch_for(SafeOp)
def _render(autogen_context: Any, op: SafeOp) -> str:
    autogen_context.imports.add(_HELPERS)
    return op.call


def _sql(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, sa.TextClause):
        return value.text
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    return str(value.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def _call(helper: str, *positional: str, **keywords: Any) -> str:
    """`safe.<helper>(...)`: `positional` already rendered, keywords rendered with repr."""
    parts = [*positional, *(f"{k}={v!r}" for k, v in keywords.items() if v not in (None, False))]
    return f"safe.{helper}({', '.join(parts)})"


def _schema(schema: str | None) -> str | None:
    return None if schema in (None, "public") else schema


def _columns(columns: list[Any]) -> str:
    rendered = [repr(c) if isinstance(c, str) else f"sa.text({_sql(c)!r})" for c in columns]
    return f"[{', '.join(rendered)}]"


def _create_index(op: ops.CreateIndexOp, relkind: str) -> SafeOp | None:
    if set(op.kw) - _INDEX_OPTIONS or not op.index_name:
        return None
    columns = [c.name if isinstance(c, sa.Column) else c for c in op.columns]
    where = op.kw.get("postgresql_where")
    call = _call(
        "create_index_concurrently",
        repr(str(op.index_name)),
        repr(op.table_name),
        _columns(columns),
        schema=_schema(op.schema),
        unique=bool(op.unique),
        where=_sql(where) if where is not None else None,
        using=op.kw.get("postgresql_using"),
        partitioned=relkind == "p",
    )
    return SafeOp(op, call)


def _drop_index(op: ops.DropIndexOp, relkind: str) -> SafeOp | None:
    if not op.index_name:
        return None
    call = _call(
        "drop_index_concurrently",
        repr(str(op.index_name)),
        schema=_schema(op.schema),
        partitioned=relkind == "p",
    )
    return SafeOp(op, call)


def _create_check(op: ops.CreateCheckConstraintOp) -> SafeOp | None:
    if not op.constraint_name:
        return None
    call = _call(
        "add_check_constraint",
        repr(str(op.constraint_name)),
        repr(op.table_name),
        repr(_sql(op.condition)),
        schema=_schema(op.schema),
    )
    return SafeOp(op, call)


def _create_foreign_key(op: ops.CreateForeignKeyOp) -> SafeOp | None:
    options = dict(op.kw)
    source_schema = options.pop("source_schema", None)
    referent_schema = options.pop("referent_schema", None)
    ondelete, onupdate = options.pop("ondelete", None), options.pop("onupdate", None)
    if options or not op.constraint_name:
        return None  # deferrable, match, …: left as generated
    call = _call(
        "add_foreign_key",
        repr(str(op.constraint_name)),
        repr(op.source_table),
        repr(op.referent_table),
        repr(list(op.local_cols)),
        repr(list(op.remote_cols)),
        source_schema=_schema(source_schema),
        referent_schema=_schema(referent_schema),
        ondelete=ondelete,
        onupdate=onupdate,
    )
    return SafeOp(op, call)


def _table_of(op: MigrateOperation) -> tuple[str | None, str] | None:
    if isinstance(op, ops.CreateIndexOp | ops.DropIndexOp):
        return op.schema, str(op.table_name)
    if isinstance(op, ops.CreateCheckConstraintOp):
        return op.schema, str(op.table_name)
    if isinstance(op, ops.CreateForeignKeyOp):
        return op.kw.get("source_schema"), str(op.source_table)
    return None


def _rewrite(op: MigrateOperation, relkind: str) -> SafeOp | None:
    if isinstance(op, ops.CreateIndexOp):
        return _create_index(op, relkind)
    if isinstance(op, ops.DropIndexOp):
        return _drop_index(op, relkind)
    if isinstance(op, ops.CreateCheckConstraintOp):
        return _create_check(op)
    if isinstance(op, ops.CreateForeignKeyOp):
        return _create_foreign_key(op)
    return None


def _relkind(connection: sa.Connection, schema: str | None, table: str) -> str | None:
    kind = connection.execute(
        sa.text(
            "select c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = :s and c.relname = :t"
        ),
        {"s": schema or "public", "t": table},
    ).scalar()
    return None if kind is None else str(kind)


def _walk(connection: sa.Connection, container: Any) -> None:
    for position, op in enumerate(list(container.ops)):
        if isinstance(op, ops.OpContainer):
            _walk(connection, op)
            continue
        table = _table_of(op)
        if table is None:
            continue
        relkind = _relkind(connection, *table)
        if relkind not in ("r", "p"):
            continue  # new in this revision (or not a table)
        replacement = _rewrite(op, relkind)
        if replacement is not None:
            container.ops[position] = replacement


def safe_forms(context: Any, revision: Any, directives: list[Any]) -> None:
    """The `process_revision_directives` hook: rewrite operations on existing tables."""
    connection = context.connection
    if connection is None:
        return
    for script in directives:
        if not isinstance(script, ops.MigrationScript):
            continue
        for container in (*script.upgrade_ops_list, *script.downgrade_ops_list):
            _walk(connection, container)
