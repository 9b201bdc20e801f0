"""Alembic autogenerate for what SQLAlchemy metadata does not compare: CHECK constraints,
functions, triggers, publication membership, access classes and views.

Imported by `migrations/env.py`. After the table comparison, every finding of the drift report
(`database.drift`) becomes `op.execute(...)` lines in the new revision, with the previous state
restored on downgrade. So `make revision` writes the SQL for a new table's access class or a
changed rule, and `alembic check` fails when code and database disagree. Functions go first
(CHECKs and triggers call them, including those of tables created in the same revision).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import comparators, renderers
from alembic.operations import MigrateOperation
from alembic.util import DispatchPriority, PriorityDispatchResult

from database.access import ActualAccess, Policy, TableAccess, declared, diff_table
from database.ddl import private_schema_sql, view_definition_differs, view_sql
from database.drift import object_findings


class ExecuteManyOp(MigrateOperation):
    """A named group of SQL statements with their inverse; renders as plain `op.execute`."""

    def __init__(self, subject: str, upgrade: list[str], downgrade: list[str], why: str) -> None:
        self.subject = subject
        self.upgrade = upgrade
        self.downgrade = downgrade
        self.why = why

    def reverse(self) -> ExecuteManyOp:
        return ExecuteManyOp(self.subject, self.downgrade, self.upgrade, f"revert ({self.why})")

    def to_diff_tuple(self) -> tuple[Any, ...]:
        return ("access_or_view", self.subject, self.why)


@renderers.dispatch_for(ExecuteManyOp)
def _render(autogen_context: Any, op: ExecuteManyOp) -> list[str]:
    lines = [f"# {op.subject}: {op.why}"]
    lines.extend(f"op.execute({statement!r})" for statement in op.upgrade)
    return lines


class ValidateOp(MigrateOperation):
    """VALIDATE CONSTRAINT for those added NOT VALID, after the revision's transaction."""

    def __init__(self, constraints: list[tuple[str, str]]) -> None:
        self.constraints = constraints

    def reverse(self) -> ExecuteManyOp:
        return ExecuteManyOp("validation", [], [], "nothing to undo")

    def to_diff_tuple(self) -> tuple[Any, ...]:
        return ("validate", tuple(self.constraints))


@renderers.dispatch_for(ValidateOp)
def _render_validate(autogen_context: Any, op: ValidateOp) -> list[str]:
    autogen_context.imports.add("from database.migrations.steps import validate_constraints")
    pairs = "".join(f"\n    ({t!r}, {c!r})," for t, c in op.constraints)
    return [
        "# the constraints added NOT VALID above, checked against stored rows",
        f"validate_constraints({pairs}\n)",
    ]


def _restore_sql(spec: TableAccess, actual: ActualAccess) -> list[str]:
    """SQL that puts back what the database had before (for the downgrade)."""
    target = f"public.{spec.table}"
    sql = [p.drop_sql() for p in spec.policies()]
    sql.append(f"alter table {target} {'enable' if actual.rls else 'disable'} row level security")
    sql.append(f"revoke all on {target} from anon, authenticated, service_role")
    for role, privileges in actual.grants.items():
        if privileges:
            sql.append(f"grant {', '.join(sorted(privileges))} on {target} to {role}")
    for role, by_privilege in actual.column_grants.items():
        for privilege, columns in sorted(by_privilege.items()):
            sql.append(f"grant {privilege} ({', '.join(sorted(columns))}) on {target} to {role}")
    for name, (command, roles, using, check) in actual.policies.items():
        restrictive = command.startswith("restrictive ")
        policy = Policy(name, spec.table, command.removeprefix("restrictive "), roles, using, check)
        create = policy.create_sql()
        sql.append(create.replace("as permissive", "as restrictive") if restrictive else create)
    return sql


@comparators.dispatch_for("schema", priority=DispatchPriority.LAST)
def compare_access_and_views(
    autogen_context: Any, upgrade_ops: Any, schemas: set[str | None]
) -> PriorityDispatchResult:
    connection: sa.Connection = autogen_context.connection
    findings = object_findings(connection)
    if findings:
        first = [ExecuteManyOp("schema private", private_schema_sql(), [], "functions live here")]
        first += [
            ExecuteManyOp(f.subject, list(f.upgrade), list(f.downgrade), f.problem)
            for f in findings
            if not f.after_tables
        ]
        upgrade_ops.ops[0:0] = first
        upgrade_ops.ops.extend(
            ExecuteManyOp(f.subject, list(f.upgrade), list(f.downgrade), f.problem)
            for f in findings
            if f.after_tables
        )
        later = [pair for f in findings for pair in f.validate]
        if later:
            upgrade_ops.ops.append(ValidateOp(later))
    for spec in declared():
        if spec.is_view:
            differs = view_definition_differs(connection, spec.table)
            if differs is not None:
                create, drop = view_sql(spec.table)
                previous = connection.execute(
                    sa.text("select pg_get_viewdef(to_regclass(:v), true)"),
                    {"v": f"public.{spec.table}"},
                ).scalar_one()
                downgrade = [drop] if previous is None else [view_sql(spec.table, previous)[0]]
                upgrade_ops.ops.append(
                    ExecuteManyOp(f"view {spec.table}", [create], downgrade, differs)
                )
        drift = diff_table(connection, spec)
        if drift is None:
            continue
        if not drift.actual.exists:  # created in this same revision
            upgrade, downgrade = spec.apply_sql(), spec.remove_sql()
        else:
            upgrade = spec.apply_sql(existing_policies=drift.actual.policies)
            downgrade = _restore_sql(spec, drift.actual)
        upgrade_ops.ops.append(
            ExecuteManyOp(f"access {spec.table} ({spec.access})", upgrade, downgrade, str(drift))
        )
    return PriorityDispatchResult.CONTINUE
