"""Safe forms of the operations that block a busy table, for use in revisions.

    from database.migrations import safe

    def upgrade() -> None:
        safe.create_index_concurrently("ix_alerts_name", "alerts", ["name"])
        safe.add_check_constraint("ck_alerts_name_short", "alerts", "char_length(name) < 200")
        safe.add_foreign_key("fk_x_user_id_profiles", "x", "profiles", ["user_id"], ["id"])
        safe.set_not_null("alerts", "name")

* An index is built `CONCURRENTLY`, outside the revision's transaction (reads and writes go
  on); on a partitioned table with the partition-safe recipe: `CREATE INDEX ON ONLY` the
  parent (metadata only), each partition's index concurrently, then `ALTER INDEX … ATTACH
  PARTITION`, after which the parent's index is valid.
* A constraint is added `NOT VALID` (a short lock, no scan) and validated in a separate
  transaction (`VALIDATE CONSTRAINT` takes SHARE UPDATE EXCLUSIVE: reads and writes go on).
* NOT NULL goes through a validated `CHECK (col is not null)`, so `SET NOT NULL` needs no scan.

These steps commit on their own, so a revision that uses them is not atomic: every step is
idempotent instead (an index left invalid by a failed concurrent build is dropped and rebuilt),
and running the revision again finishes the job. Keep such operations in a revision of their
own. Offline (`make migrate-sql`, the linter) the same statements are written out; the
partitions of a partitioned table are only known at run time, so offline SQL lists the parent's
step and says so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

#: Identifier length limit of PostgreSQL (NAMEDATALEN - 1).
_MAX_NAME = 63


def _offline() -> bool:
    return bool(op.get_context().as_sql)


def _quote(name: str) -> str:
    preparer = op.get_context().dialect.identifier_preparer
    return str(preparer.quote(name))


def _table(schema: str, name: str) -> str:
    return f"{_quote(schema)}.{_quote(name)}"


def _scalar(sql: str, **params: object) -> object:
    return op.get_bind().execute(sa.text(sql), params).scalar()


def _comment(text: str) -> None:
    """A comment in the offline SQL (nothing is sent to a server)."""
    if _offline():
        op.get_context().impl.static_output(f"-- {text}")


def _ignore(rules: str, statement: str) -> str:
    """`statement` preceded by squawk's per-statement ignore comment for `rules`."""
    return f"-- squawk-ignore {rules}\n{statement}"


@contextmanager
def _outside_transaction() -> Iterator[None]:
    # Commits what the revision did so far; each statement inside commits on its own.
    with op.get_context().autocommit_block():
        yield


def _relkind(schema: str, table: str) -> str | None:
    kind = _scalar(
        "select c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = :s and c.relname = :t",
        s=schema,
        t=table,
    )
    return None if kind is None else str(kind)


def _index_state(schema: str, name: str) -> tuple[bool, str] | None:
    """(valid, relkind) of index `name`, or None when there is none."""
    row = (
        op.get_bind()
        .execute(
            sa.text(
                "select i.indisvalid, c.relkind from pg_class c"
                " join pg_namespace n on n.oid = c.relnamespace"
                " join pg_index i on i.indexrelid = c.oid"
                " where n.nspname = :s and c.relname = :i"
            ),
            {"s": schema, "i": name},
        )
        .one_or_none()
    )
    return None if row is None else (bool(row[0]), str(row[1]))


def _partitions(schema: str, table: str) -> list[tuple[str, str, str]]:
    """(schema, name, relkind) of the direct partitions of `schema.table`."""
    rows = op.get_bind().execute(
        sa.text(
            "select n.nspname, c.relname, c.relkind from pg_inherits i"
            " join pg_class c on c.oid = i.inhrelid"
            " join pg_namespace n on n.oid = c.relnamespace"
            " where i.inhparent = cast(:t as regclass) order by c.relname"
        ),
        {"t": f"{_table(schema, table)}"},
    )
    return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]


def _index_attached(*, parent: str, child: str) -> bool:
    return bool(
        _scalar(
            "select exists (select from pg_inherits"
            " where inhparent = cast(:p as regclass) and inhrelid = cast(:c as regclass))",
            p=parent,
            c=child,
        )
    )


def partition_index_name(index: str, partition: str) -> str:
    """The name of `index`'s counterpart on `partition`, within PostgreSQL's 63 bytes."""
    name = f"{partition}_{index}"
    if len(name.encode()) <= _MAX_NAME:
        return name
    digest = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:8]
    return f"{name.encode()[: _MAX_NAME - 9].decode(errors='ignore')}_{digest}"


def _index_body(
    columns: Sequence[str | sa.TextClause], *, using: str | None, where: str | None
) -> str:
    keys = ", ".join(c.text if isinstance(c, sa.TextClause) else _quote(c) for c in columns)
    method = f" USING {using}" if using else ""
    predicate = f" WHERE {where}" if where else ""
    return f"{method} ({keys}){predicate}"


def create_index_concurrently(
    name: str,
    table: str,
    columns: Sequence[str | sa.TextClause],
    *,
    schema: str = "public",
    unique: bool = False,
    where: str | None = None,
    using: str | None = None,
    partitioned: bool = False,
) -> None:
    """Build an index without blocking writes (partition-safe on partitioned tables).

    `columns` are column names or `sa.text("lower(email)")` expressions. `partitioned` is what
    offline SQL assumes; on a live database the catalog decides.
    """
    body = _index_body(columns, using=using, where=where)
    kind = "UNIQUE INDEX" if unique else "INDEX"
    if not _offline():
        partitioned = _relkind(schema, table) == "p"
    if partitioned:
        _create_partitioned_index(name, table, schema=schema, kind=kind, body=body)
        return
    with _outside_transaction():
        if not _offline():
            state = _index_state(schema, name)
            if state is not None and not state[0]:
                # Left INVALID by a concurrent build that failed: IF NOT EXISTS would keep it.
                op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_table(schema, name)}")
        op.execute(
            f"CREATE {kind} CONCURRENTLY IF NOT EXISTS {_quote(name)}"
            f" ON {_table(schema, table)}{body}"
        )


def _create_partitioned_index(name: str, table: str, *, schema: str, kind: str, body: str) -> None:
    # PostgreSQL cannot build an index on a partitioned table concurrently. ON ONLY creates
    # the parent's index (invalid, empty: no partition is touched), then each partition's is
    # built concurrently and attached; the last attach makes the parent's valid.
    op.execute(
        _ignore(
            "require-concurrent-index-creation",
            f"CREATE {kind} IF NOT EXISTS {_quote(name)} ON ONLY {_table(schema, table)}{body}",
        )
    )
    if _offline():
        _comment(
            f"then, for every partition of {schema}.{table} at run time: CREATE {kind} "
            f"CONCURRENTLY …, ALTER INDEX {name} ATTACH PARTITION … (offline SQL cannot "
            "list partitions)"
        )
        return
    with _outside_transaction():
        _attach_partitions(name, table, schema=schema, kind=kind, body=body)


def _attach_partitions(name: str, table: str, *, schema: str, kind: str, body: str) -> None:
    for child_schema, child, relkind in _partitions(schema, table):
        child_index = partition_index_name(name, child)
        if relkind == "p":  # a sub-partitioned partition: the same recipe one level down
            op.execute(
                f"CREATE {kind} IF NOT EXISTS {_quote(child_index)}"
                f" ON ONLY {_table(child_schema, child)}{body}"
            )
            _attach_partitions(child_index, child, schema=child_schema, kind=kind, body=body)
        else:
            state = _index_state(child_schema, child_index)
            if state is not None and not state[0]:
                op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_table(child_schema, child_index)}")
            op.execute(
                f"CREATE {kind} CONCURRENTLY IF NOT EXISTS {_quote(child_index)}"
                f" ON {_table(child_schema, child)}{body}"
            )
        if not _index_attached(
            parent=_table(schema, name), child=_table(child_schema, child_index)
        ):
            op.execute(
                f"ALTER INDEX {_table(schema, name)}"
                f" ATTACH PARTITION {_table(child_schema, child_index)}"
            )


def drop_index_concurrently(
    name: str, *, schema: str = "public", partitioned: bool = False
) -> None:
    """Drop an index without blocking reads and writes (where PostgreSQL allows it).

    An index on a partitioned table cannot be dropped concurrently (PostgreSQL refuses): it
    is dropped in the revision's transaction, which locks the table for the drop only.
    """
    if not _offline():
        state = _index_state(schema, name)
        if state is None:
            return
        partitioned = state[1] == "I"
    if partitioned:
        op.execute(
            _ignore(
                "require-concurrent-index-deletion",
                f"DROP INDEX IF EXISTS {_table(schema, name)}",
            )
        )
        return
    with _outside_transaction():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_table(schema, name)}")


def _constraint_validated(schema: str, table: str, name: str) -> bool | None:
    """None when there is no such constraint, else whether it is validated."""
    found = _scalar(
        "select convalidated from pg_constraint"
        " where conrelid = cast(:t as regclass) and conname = :c",
        t=_table(schema, table),
        c=name,
    )
    return None if found is None else bool(found)


def _add_then_validate(name: str, table: str, *, schema: str, definition: str) -> None:
    target = _table(schema, table)
    state = None if _offline() else _constraint_validated(schema, table, name)
    if state is True:
        return
    if state is None:
        # Rerunnable although squawk cannot see it: online, it is only added when absent.
        op.execute(
            _ignore(
                "prefer-robust-stmts",
                f"ALTER TABLE {target} ADD CONSTRAINT {_quote(name)} {definition} NOT VALID",
            )
        )
    with _outside_transaction():
        # Idempotent, so rerunning it after a failure is harmless.
        op.execute(
            _ignore(
                "prefer-robust-stmts",
                f"ALTER TABLE {target} VALIDATE CONSTRAINT {_quote(name)}",
            )
        )


def add_check_constraint(name: str, table: str, condition: str, *, schema: str = "public") -> None:
    """`CHECK (condition)` added NOT VALID, then validated in a separate transaction."""
    _add_then_validate(name, table, schema=schema, definition=f"CHECK ({condition})")


def add_foreign_key(
    name: str,
    source: str,
    referent: str,
    local_cols: Sequence[str],
    remote_cols: Sequence[str],
    *,
    source_schema: str = "public",
    referent_schema: str = "public",
    ondelete: str | None = None,
    onupdate: str | None = None,
) -> None:
    """A foreign key added NOT VALID, then validated in a separate transaction."""
    local = ", ".join(_quote(c) for c in local_cols)
    remote = ", ".join(_quote(c) for c in remote_cols)
    definition = f"FOREIGN KEY ({local}) REFERENCES {_table(referent_schema, referent)} ({remote})"
    if ondelete:
        definition += f" ON DELETE {ondelete.upper()}"
    if onupdate:
        definition += f" ON UPDATE {onupdate.upper()}"
    _add_then_validate(name, source, schema=source_schema, definition=definition)


def not_null_check_name(table: str, column: str) -> str:
    return f"ck_{table}_{column}_not_null"[:_MAX_NAME]


def set_not_null(table: str, column: str, *, schema: str = "public") -> None:
    """NOT NULL without a long ACCESS EXCLUSIVE scan: a CHECK (col is not null) added NOT
    VALID and validated, then SET NOT NULL (PostgreSQL 12+ uses the valid CHECK instead of
    scanning) and the CHECK dropped, in the next transaction."""
    if not _offline():
        nullable = _scalar(
            "select not attnotnull from pg_attribute"
            " where attrelid = cast(:t as regclass) and attname = :c",
            t=_table(schema, table),
            c=column,
        )
        if nullable is False:
            return
    check = not_null_check_name(table, column)
    _add_then_validate(
        check, table, schema=schema, definition=f"CHECK ({_quote(column)} IS NOT NULL)"
    )
    target = _table(schema, table)
    op.execute(f"ALTER TABLE {target} ALTER COLUMN {_quote(column)} SET NOT NULL")
    op.execute(f"ALTER TABLE {target} DROP CONSTRAINT IF EXISTS {_quote(check)}")
