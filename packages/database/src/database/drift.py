"""One drift report: does the database hold exactly what the code declares?

Compared, object by object: columns (name, type as PostgreSQL formats it, nullability), CHECK
constraints (as PostgreSQL deparses them), access (RLS, policies, table and column grants),
views, functions (body, attributes and who may execute them), triggers, publication
membership and partitioning (key, default partition, partitions closed to the API roles).
A hand-edited revision, a hand-run ALTER or a function body changed in code
without a revision shows up here. `alembic check` goes through the same findings (the
autogenerate comparators in `database.migrations.autogen` turn each into SQL); tests call
`drift_report`.

Declared objects are compared as PostgreSQL itself stores them: each is created under a probe
name inside a savepoint that is rolled back, and the deparsed forms are compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from database import access
from database.ddl import (
    PRIVATE,
    REALTIME_PUBLICATION,
    REALTIME_TABLES,
    Function,
    Trigger,
    declared_functions,
    declared_triggers,
    declared_views,
    private_schema_sql,
    view_definition_differs,
)
from database.schema.base import metadata
from database.schema.partitions import partitioning_of


@dataclass(frozen=True)
class Finding:
    """One difference, with the SQL that fixes it and the SQL that puts it back."""

    subject: str
    problem: str
    upgrade: tuple[str, ...]
    downgrade: tuple[str, ...]
    # (table, constraint) pairs added NOT VALID, to VALIDATE after the revision's transaction
    # commits (the scan must not hold the ADD's exclusive lock meanwhile).
    validate: tuple[tuple[str, str], ...] = ()
    # Applied after the revision's tables are created (a trigger on a table the same revision
    # creates); everything else goes first (functions: CHECKs and triggers call them).
    after_tables: bool = False

    def __str__(self) -> str:
        return f"{self.subject}: {self.problem}"


def _new_columns(connection: sa.Connection, table: sa.Table) -> list[str]:
    """Statements adding the declared columns the live table lacks yet (inside a probe's
    savepoint), so CHECKs and triggers on columns a revision adds can be probed."""
    target = f"public.{table.name}"
    live = {r.name for r in connection.execute(_COLUMNS, {"t": target})}
    dialect = connection.dialect
    return [
        f"alter table {target} add column {dialect.identifier_preparer.quote(c.name)}"
        f" {c.type.compile(dialect=dialect)}"
        for c in table.columns
        if c.name not in live
    ]


def _functions_first() -> list[str]:
    """Statements that make every declared function exist (inside a probe's savepoint), so
    CHECKs and triggers that call them can be probed before a revision creates them."""
    return [*private_schema_sql(), *(f.create for f in declared_functions())]


def _probe(
    connection: sa.Connection, statements: list[str], read: sa.TextClause, params: dict[str, object]
) -> list[sa.Row[object]]:
    savepoint = connection.begin_nested()
    try:
        # Function bodies may name tables a revision creates after them (as pg_dump allows).
        connection.exec_driver_sql("set local check_function_bodies = off")
        for statement in statements:
            # Bodies use format()'s %I: not a driver placeholder.
            connection.exec_driver_sql(statement.replace("%", "%%"))
        return list(connection.execute(read, params))
    finally:
        savepoint.rollback()


# -- columns -------------------------------------------------------------------------------

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


def _tables() -> list[sa.Table]:
    return [t for t in metadata.sorted_tables if t.schema is None and not t.info.get("view")]


def _exists(connection: sa.Connection, table: str) -> bool:
    found = connection.execute(sa.text("select to_regclass(:t)"), {"t": f"public.{table}"})
    return found.scalar() is not None


def column_drift(connection: sa.Connection) -> list[str]:
    """One line per column that differs between the models and the database."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    problems = []
    for table in _tables():
        if not _exists(connection, table.name):
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


# -- CHECK constraints ---------------------------------------------------------------------

_CHECKS = sa.text(
    "select conname as name, pg_get_constraintdef(oid) as definition, convalidated"
    " from pg_constraint where conrelid = to_regclass(:t) and contype = 'c'"
)


def check_name(table: sa.Table, constraint: sa.CheckConstraint) -> str:
    """The constraint's name in the database (the naming convention applied)."""
    name = str(constraint.name)
    prefix = f"ck_{table.name}_"
    return name if name.startswith(prefix) else prefix + name


def declared_checks(table: sa.Table) -> dict[str, str]:
    return {
        check_name(table, c): str(c.sqltext)
        for c in table.constraints
        if isinstance(c, sa.CheckConstraint)
    }


def _deparsed(definition: str) -> str:
    return definition.removesuffix(" NOT VALID")


def check_findings(connection: sa.Connection) -> list[Finding]:
    findings: list[Finding] = []
    for table in _tables():
        if not _exists(connection, table.name):
            continue  # created with its CHECKs by the table's own revision
        target = f"public.{table.name}"
        declared = declared_checks(table)
        actual = {
            r.name: _deparsed(r.definition) for r in connection.execute(_CHECKS, {"t": target})
        }
        # Only CHECKs that exist are compared (a missing one may name a column its revision
        # has yet to add, which a probe could not).
        compared = [name for name in declared if name in actual]
        probes = [
            f"alter table {target} add constraint zz_probe_{i} check ({declared[name]}) not valid"
            for i, name in enumerate(compared)
        ]
        probed = {
            r.name: _deparsed(r.definition)
            for r in _probe(
                connection,
                [*_functions_first(), *_new_columns(connection, table), *probes],
                _CHECKS,
                {"t": target},
            )
        }
        expected = {name: probed[f"zz_probe_{i}"] for i, name in enumerate(compared)}
        for name, sql in declared.items():
            add = f"alter table {target} add constraint {name} check ({sql}) not valid"
            validate = ((table.name, name),)
            drop = f"alter table {target} drop constraint {name}"
            if name not in actual:
                findings.append(Finding(f"check {name}", "missing", (add,), (drop,), validate))
            elif actual[name] != expected[name]:
                restore = f"alter table {target} add constraint {name} {actual[name]} not valid"
                findings.append(
                    Finding(
                        f"check {name}",
                        f"is {actual[name]}, declared {expected[name]}",
                        (drop, add),
                        (drop, restore),
                        validate,
                    )
                )
        for name in sorted(actual.keys() - declared.keys()):
            restore = f"alter table {target} add constraint {name} {actual[name]} not valid"
            drop = f"alter table {target} drop constraint {name}"
            findings.append(Finding(f"check {name}", "not declared", (drop,), (restore,)))
    return findings


# -- functions -----------------------------------------------------------------------------

_FUNCTION = sa.text(
    "select pg_get_functiondef(p.oid) as definition,"
    " coalesce((select array_agg(coalesce(r.rolname::text, 'public') order by 1)"
    "           from aclexplode(p.proacl) a left join pg_roles r on r.oid = a.grantee"
    "           where a.privilege_type = 'EXECUTE' and a.grantee <> p.proowner), '{}')"
    " as executors,"
    " p.proacl is null as default_acl"
    " from pg_proc p where p.oid = to_regprocedure(:f)"
)
_PRIVATE_FUNCTIONS = sa.text(
    "select p.oid::regprocedure::text as signature, pg_get_functiondef(p.oid) as definition"
    " from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = :schema"
)


def _probe_name(function: Function) -> str:
    return function.name.replace(f"{PRIVATE}.", f"{PRIVATE}.zz_probe_", 1)


def function_findings(connection: sa.Connection) -> list[Finding]:
    findings: list[Finding] = []
    has_private = connection.execute(
        sa.text("select exists (select from pg_namespace where nspname = :s)"), {"s": PRIVATE}
    ).scalar()
    declared = declared_functions()
    for function in declared:
        actual = (
            connection.execute(_FUNCTION, {"f": function.signature}).one_or_none()
            if (has_private)
            else None
        )
        if actual is None:
            findings.append(
                Finding(
                    f"function {function.signature}",
                    "missing",
                    tuple(function.apply_sql()),
                    (function.drop_sql(),),
                )
            )
            continue
        probe = _probe_name(function)
        create = function.create.replace(f"function {function.name}(", f"function {probe}(", 1)
        (expected,) = _probe(
            connection, [create], _FUNCTION, {"f": function.signature.replace(function.name, probe)}
        )
        problems = []
        if expected.definition.replace(probe, function.name) != actual.definition:
            problems.append("its definition differs from the declared one")
        executors = sorted(function.execute)
        if actual.default_acl or sorted(actual.executors) != executors:
            have = "everyone" if actual.default_acl else sorted(actual.executors)
            problems.append(f"may be executed by {have}, declared {executors}")
        if problems:
            previous = [
                actual.definition,
                f"revoke all on function {function.signature} from public",
            ]
            if actual.executors:
                previous.append(
                    f"grant execute on function {function.signature}"
                    f" to {', '.join(actual.executors)}"
                )
            findings.append(
                Finding(
                    f"function {function.signature}",
                    "; ".join(problems),
                    tuple(function.apply_sql()),
                    tuple(previous),
                )
            )
    if has_private:
        known = {f.signature.replace(" ", "") for f in declared}
        for row in connection.execute(_PRIVATE_FUNCTIONS, {"schema": PRIVATE}):
            if row.signature.replace(" ", "") not in known:
                findings.append(
                    Finding(
                        f"function {row.signature}",
                        "not declared",
                        (f"drop function {row.signature}",),
                        (row.definition,),
                    )
                )
    return findings


# -- triggers ------------------------------------------------------------------------------

_TRIGGERS = sa.text(
    "select t.tgname as name, c.relname as table, pg_get_triggerdef(t.oid) as definition"
    " from pg_trigger t join pg_class c on c.oid = t.tgrelid"
    " join pg_namespace n on n.oid = c.relnamespace"
    " where n.nspname = 'public' and not t.tgisinternal"
    # A partition's clone of its parent's row trigger is the parent's, not one of its own.
    " and t.tgparentid = 0"
)


def trigger_findings(connection: sa.Connection) -> list[Finding]:
    actual = {(r.table, r.name): r.definition for r in connection.execute(_TRIGGERS)}
    declared = [t for t in declared_triggers() if _exists(connection, t.table)]
    findings: list[Finding] = [
        Finding(f"trigger {t.name}", "missing (on a new table)", (t.create,), (t.drop_sql(),),
                after_tables=True)
        for t in declared_triggers()
        if not _exists(connection, t.table)
    ]  # fmt: skip
    by_key: dict[tuple[str, str], Trigger] = {(t.table, t.name): t for t in declared}
    probes = [
        t.create.replace(f"create trigger {t.name} ", f"create trigger zz_probe_{i} ", 1)
        for i, t in enumerate(declared)
    ]
    tables = {t.name: t for t in _tables()}
    columns = [
        sql
        for name in {t.table for t in declared}
        for sql in _new_columns(connection, tables[name])
    ]
    statements = [*_functions_first(), *columns, *probes]
    probed = {
        (r.table, r.name): r.definition for r in _probe(connection, statements, _TRIGGERS, {})
    }
    for i, trigger in enumerate(declared):
        key = (trigger.table, trigger.name)
        expected = probed.get((trigger.table, f"zz_probe_{i}"))
        if expected is not None:
            expected = expected.replace(f"zz_probe_{i}", trigger.name, 1)
        if key not in actual:
            findings.append(
                Finding(
                    f"trigger {trigger.name}", "missing", (trigger.create,), (trigger.drop_sql(),)
                )
            )
        elif expected is not None and actual[key] != expected:
            findings.append(
                Finding(
                    f"trigger {trigger.name}",
                    "its definition differs from the declared one",
                    (trigger.drop_sql(), trigger.create),
                    (trigger.drop_sql(), actual[key]),
                )
            )
    for (table, name), definition in sorted(actual.items()):
        if (table, name) not in by_key:
            drop = f"drop trigger if exists {name} on public.{table}"
            findings.append(Finding(f"trigger {name}", "not declared", (drop,), (definition,)))
    return findings


# -- publication ---------------------------------------------------------------------------

_PUBLICATION = sa.text(
    "select exists (select from pg_publication where pubname = :p) as present,"
    " coalesce((select array_agg(tablename::text) from pg_publication_tables"
    "           where pubname = :p and schemaname = 'public'), '{}') as tables"
)


def publication_findings(connection: sa.Connection) -> list[Finding]:
    row = connection.execute(_PUBLICATION, {"p": REALTIME_PUBLICATION}).one()
    if not row.present:  # a plain PostgreSQL without the bootstrap: nothing to publish to
        return []
    findings = []
    have = set(row.tables)
    for table in REALTIME_TABLES:
        if table not in have and _exists(connection, table):
            add = f"alter publication {REALTIME_PUBLICATION} add table public.{table}"
            drop = f"alter publication {REALTIME_PUBLICATION} drop table public.{table}"
            findings.append(
                Finding(f"publication {REALTIME_PUBLICATION}", f"lacks {table}", (add,), (drop,))
            )
    for table in sorted(have - set(REALTIME_TABLES)):
        add = f"alter publication {REALTIME_PUBLICATION} add table public.{table}"
        drop = f"alter publication {REALTIME_PUBLICATION} drop table public.{table}"
        findings.append(
            Finding(
                f"publication {REALTIME_PUBLICATION}",
                f"publishes {table}, not declared",
                (drop,),
                (add,),
            )
        )
    return findings


# -- partitioning ----------------------------------------------------------------------------

_PARTITIONING = sa.text(
    "select c.relkind::text as kind, pg_get_partkeydef(c.oid) as key,"
    " exists (select from pg_inherits i join pg_class p on p.oid = i.inhrelid"
    "         where i.inhparent = c.oid and pg_get_expr(p.relpartbound, p.oid) = 'DEFAULT')"
    " as has_default,"
    " (select count(*) from pg_partition_tree(c.oid) t join pg_class p on p.oid = t.relid"
    "   where t.relid <> c.oid and (not p.relrowsecurity or exists ("
    "     select from pg_roles r where r.rolname in ('anon', 'authenticated', 'service_role')"
    "        and has_table_privilege(r.oid, p.oid, 'select, insert, update, delete'))))"
    " as open_partitions"
    " from pg_class c where c.oid = to_regclass(:t)"
)


def partition_findings(connection: sa.Connection) -> list[Finding]:
    """Declared partitioning against the catalog: partitioned or not, by which key, with a
    default partition, every partition closed to the API roles. (Partitions ahead of now are
    time's business: `database maintain` and `inspect partitions`.)"""
    findings: list[Finding] = []
    for table in _tables():
        row = connection.execute(_PARTITIONING, {"t": f"public.{table.name}"}).one_or_none()
        if row is None:
            continue
        spec = partitioning_of(table)
        target = f"public.{table.name}"
        convert = (f"-- {target}: a conversion revision (database.migrations.partitions)",)
        if spec is None:
            if row.kind == "p":
                problem = "partitioned, declared plain"
                findings.append(Finding(f"partitioning {table.name}", problem, convert, ()))
            continue
        declared = f"RANGE ({spec.column})"
        if row.kind != "p" or row.key != declared:
            have = "not partitioned" if row.kind != "p" else f"partitioned by {row.key}"
            findings.append(
                Finding(f"partitioning {table.name}", f"{have}, declared {declared}", convert, ())
            )
            continue
        if not row.has_default:
            create = f"create table {target}_default partition of {target} default"
            drop = f"drop table {target}_default"
            findings.append(
                Finding(f"partitioning {table.name}", "no default partition", (create,), (drop,))
            )
        if row.open_partitions:
            secure = (f"select private.secure_partitions('{target}')",)
            findings.append(
                Finding(
                    f"partitioning {table.name}",
                    f"{row.open_partitions} partition(s) open to the API roles (no RLS, a grant)",
                    secure,
                    (),
                )
            )
    return findings


def object_findings(connection: sa.Connection) -> list[Finding]:
    """Functions, triggers, CHECKs and publication membership, in the order a revision must
    apply them (functions first: CHECKs and triggers call them)."""
    return [
        *function_findings(connection),
        *trigger_findings(connection),
        *check_findings(connection),
        *publication_findings(connection),
        *partition_findings(connection),
    ]


def drift_report(connection: sa.Connection) -> list[str]:
    """Every difference between the declared schema and the database, one line each."""
    problems = column_drift(connection)
    problems += [str(f) for f in object_findings(connection)]
    problems += [str(d) for d in access.diff(connection)]
    for name in declared_views():
        why = view_definition_differs(connection, name)
        if why is not None:
            problems.append(f"view {name}: {why}")
    return problems


__all__ = ["Finding", "column_drift", "drift_report", "object_findings", "partition_findings"]
