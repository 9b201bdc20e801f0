"""Access classes: who may do what to which rows, declared once and rendered to SQL.

Every table in `public` belongs to exactly one class (ARCHITECTURE decision 5); the class
decides its grants and its row-level-security policies, so a new table cannot be forgotten:

* PUBLIC_DATA   - anon and authenticated may select every row; only the service writes;
* USER_OWNED    - authenticated may select/insert/update/delete rows whose owner column is
                  `(select auth.uid())`, nothing else; anon nothing;
* USER_SUBMITTED - authenticated may select own rows, insert own rows (the client's columns
                  only: everything else takes its server default) and file the table's one
                  declared request (an OwnerRequest: one column, once, on own rows in the
                  declared state); never delete. The service writes everything else (orders:
                  the owner submits and asks to cancel, the service fills and closes);
* USER_READABLE - written by the service, selectable by its owner only;
* INTERNAL      - no access at all for anon/authenticated.

service_role (the secret key) bypasses RLS and gets exactly select/insert/update/delete.
Grants are explicit and exclusive: the rendered SQL first revokes everything from the API
roles, because Supabase projects created before 2026 granted new tables to them by default.

Policies name their role, wrap auth calls as `(select auth.uid())` so they are evaluated once
per statement (an InitPlan), and the owner column must lead an index (checked by tests).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa

import database.schema  # noqa: F401 - registers every table and view on the metadata
from database.schema.base import AccessClass, OwnerRequest, access_info, metadata
from database.schema.registry import SCHEMAS

__all__ = ["AccessClass", "TableAccess", "access_info", "declared", "diff"]

API_ROLES = ("anon", "authenticated", "service_role")
WRITE = ("select", "insert", "update", "delete")


@dataclass(frozen=True)
class Policy:
    name: str
    table: str
    command: str
    roles: tuple[str, ...]
    using: str | None = None
    check: str | None = None

    def create_sql(self, *, name: str | None = None) -> str:
        sql = (
            f"create policy {name or self.name} on public.{self.table} as permissive"
            f" for {self.command} to {', '.join(self.roles)}"
        )
        if self.using is not None:
            sql += f" using ({self.using})"
        if self.check is not None:
            sql += f" with check ({self.check})"
        return sql

    def drop_sql(self) -> str:
        return f"drop policy if exists {self.name} on public.{self.table}"


@dataclass(frozen=True)
class TableAccess:
    """The access a table (or view) is declared to have."""

    table: str
    access: AccessClass
    owner: str | None = None
    is_view: bool = False
    # User-owned tables: the columns a user may set when inserting (its Create schema's fields
    # and the owner) and when updating (its Update schema's); ids, timestamps and the owner
    # after insert are the server's.
    insert_columns: tuple[str, ...] = ()
    update_columns: tuple[str, ...] = ()
    # User-submitted tables: the one thing an owner may ask of a row after submitting it.
    request: OwnerRequest | None = None

    def policies(self) -> list[Policy]:
        if self.is_view:  # a security_invoker view is filtered by its tables' policies
            return []
        t = self.table
        if self.access is AccessClass.PUBLIC_DATA:
            return [Policy(f"{t}_select_public", t, "select", ("anon", "authenticated"), "true")]
        if self.access is AccessClass.INTERNAL:
            return []
        mine = f"(select auth.uid()) = {self.owner}"
        if self.access is AccessClass.USER_READABLE:
            return [Policy(f"{t}_select_own", t, "select", ("authenticated",), mine)]
        if self.access is AccessClass.USER_SUBMITTED:
            assert self.request is not None
            column, when = self.request.column, self.request.when
            return [
                Policy(f"{t}_select_own", t, "select", ("authenticated",), using=mine),
                Policy(f"{t}_insert_own", t, "insert", ("authenticated",), check=mine),
                # Filed once (the column is still null), in the declared state only.
                Policy(
                    f"{t}_request_own",
                    t,
                    "update",
                    ("authenticated",),
                    using=f"{mine} and {column} is null and ({when})",
                    check=f"{mine} and {column} is not null",
                ),
            ]
        return [
            Policy(f"{t}_select_own", t, "select", ("authenticated",), using=mine),
            Policy(f"{t}_insert_own", t, "insert", ("authenticated",), check=mine),
            Policy(f"{t}_update_own", t, "update", ("authenticated",), using=mine, check=mine),
            Policy(f"{t}_delete_own", t, "delete", ("authenticated",), using=mine),
        ]

    def grants(self) -> dict[str, frozenset[str]]:
        service = frozenset(("select",) if self.is_view else WRITE)
        readers = frozenset({"select"})
        by_class = {
            AccessClass.PUBLIC_DATA: {"anon": readers, "authenticated": readers},
            AccessClass.USER_OWNED: {"authenticated": frozenset({"select", "delete"})},
            AccessClass.USER_SUBMITTED: {"authenticated": readers},
            AccessClass.USER_READABLE: {"authenticated": readers},
            AccessClass.INTERNAL: {},
        }[self.access]
        return {
            "anon": frozenset(),
            "authenticated": frozenset(),
            **by_class,
            "service_role": service,
        }

    def column_grants(self) -> dict[str, dict[str, frozenset[str]]]:
        """Column-level privileges: role -> privilege -> columns (tables users write)."""
        if self.access not in (AccessClass.USER_OWNED, AccessClass.USER_SUBMITTED):
            return {}
        return {
            "authenticated": {
                "insert": frozenset(self.insert_columns),
                "update": frozenset(self.update_columns),
            }
        }

    def apply_sql(self, *, existing_policies: Iterable[str] = ()) -> list[str]:
        """Statements that make the database match this declaration, from any prior state."""
        target = f"public.{self.table}"
        sql = [f"drop policy if exists {name} on {target}" for name in sorted(existing_policies)]
        if not self.is_view:
            sql.append(f"alter table {target} enable row level security")
        sql.append(f"revoke all on {target} from {', '.join(API_ROLES)}")
        for role, privileges in self.grants().items():
            if privileges:
                sql.append(
                    f"grant {', '.join(p for p in WRITE if p in privileges)} on {target} to {role}"
                )
        for role, by_privilege in self.column_grants().items():
            for privilege, columns in sorted(by_privilege.items()):
                if columns:
                    listed = ", ".join(sorted(columns))
                    sql.append(f"grant {privilege} ({listed}) on {target} to {role}")
        sql.extend(p.create_sql() for p in self.policies())
        return sql

    def remove_sql(self) -> list[str]:
        """Statements that take the declaration away again (a downgrade)."""
        target = f"public.{self.table}"
        sql = [p.drop_sql() for p in self.policies()]
        sql.append(f"revoke all on {target} from {', '.join(API_ROLES)}")
        return sql


@dataclass
class ActualAccess:
    """What the database has for a table: RLS flag, policies (deparsed), grants."""

    exists: bool
    rls: bool = False
    policies: dict[str, tuple[str, tuple[str, ...], str | None, str | None]] = field(
        default_factory=dict
    )
    grants: dict[str, frozenset[str]] = field(default_factory=dict)
    # role -> privilege -> columns granted on the column level only
    column_grants: dict[str, dict[str, frozenset[str]]] = field(default_factory=dict)


def declared() -> list[TableAccess]:
    """Every table and view of the package's metadata with its declared access class."""
    result = []
    for table in metadata.sorted_tables:
        if table.schema is not None:
            continue
        info = table.info
        if "access" not in info:
            raise LookupError(f"table {table.name} declares no access class (access_info)")
        access = AccessClass(info["access"])
        insert: tuple[str, ...] = ()
        update: tuple[str, ...] = ()
        if access is AccessClass.USER_OWNED:
            insert, update = _client_columns(table, info["owner"])
        elif access is AccessClass.USER_SUBMITTED:
            insert, _ = _client_columns(table, info["owner"])
            update = (info["request"]["column"],)
        result.append(
            TableAccess(
                table=table.name,
                access=access,
                owner=info.get("owner"),
                is_view=bool(info.get("view")),
                insert_columns=insert,
                update_columns=update,
                request=OwnerRequest(**info["request"]) if info.get("request") else None,
            )
        )
    return result


def _client_columns(table: sa.Table, owner: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    schemas = SCHEMAS[table.name]
    mapper = sa.inspect(schemas.table)
    column_of = {attr.key: attr.columns[0].name for attr in mapper.column_attrs}
    insert = {column_of[f] for f in schemas.create.model_fields if f in column_of} | {owner}
    update = set()
    if schemas.update is not None:
        update = {column_of[f] for f in schemas.update.model_fields if f in column_of} - {owner}
    return tuple(sorted(insert)), tuple(sorted(update))


_POLICIES_SQL = sa.text(
    "select policyname, cmd, roles::text[] as roles, qual, with_check, permissive"
    " from pg_policies where schemaname = 'public' and tablename = :t"
)
_GRANTS_SQL = sa.text(
    "select grantee, lower(privilege_type) as privilege from information_schema.role_table_grants"
    " where table_schema = 'public' and table_name = :t and grantee = any(:roles)"
)
# Privileges granted column by column (attacl), which role_table_grants does not show.
_COLUMN_GRANTS_SQL = sa.text(
    "select r.rolname as grantee, lower(acl.privilege_type) as privilege,"
    " array_agg(a.attname::text order by a.attname) as columns"
    " from pg_attribute a cross join lateral aclexplode(a.attacl) acl"
    " join pg_roles r on r.oid = acl.grantee"
    " where a.attrelid = to_regclass('public.' || :t) and a.attnum > 0 and not a.attisdropped"
    " and r.rolname = any(:roles) group by 1, 2"
)
_RELATION_SQL = sa.text(
    "select c.relrowsecurity from pg_class c join pg_namespace n on n.oid = c.relnamespace"
    " where n.nspname = 'public' and c.relname = :t"
)


def inspect_actual(connection: sa.Connection, table: str) -> ActualAccess:
    rls = connection.execute(_RELATION_SQL, {"t": table}).scalar_one_or_none()
    if rls is None:
        return ActualAccess(exists=False)
    policies = {
        row.policyname: (
            row.cmd.lower() if row.permissive == "PERMISSIVE" else f"restrictive {row.cmd.lower()}",
            tuple(sorted(row.roles)),
            row.qual,
            row.with_check,
        )
        for row in connection.execute(_POLICIES_SQL, {"t": table})
    }
    grants: dict[str, set[str]] = {role: set() for role in API_ROLES}
    for row in connection.execute(_GRANTS_SQL, {"t": table, "roles": list(API_ROLES)}):
        grants[row.grantee].add(row.privilege)
    columns: dict[str, dict[str, frozenset[str]]] = {}
    for row in connection.execute(_COLUMN_GRANTS_SQL, {"t": table, "roles": list(API_ROLES)}):
        columns.setdefault(row.grantee, {})[row.privilege] = frozenset(row.columns)
    return ActualAccess(
        exists=True,
        rls=bool(rls),
        policies=policies,
        grants={role: frozenset(p) for role, p in grants.items()},
        column_grants=columns,
    )


def canonical_policies(
    connection: sa.Connection, spec: TableAccess
) -> dict[str, tuple[str, tuple[str, ...], str | None, str | None]]:
    """The declared policies as PostgreSQL would store them.

    Each is created under a probe name inside a savepoint that is rolled back, so the
    comparison is between PostgreSQL's own deparsed forms, not between spellings of SQL.
    """
    policies = spec.policies()
    if not policies:
        return {}
    savepoint = connection.begin_nested()
    try:
        for i, policy in enumerate(policies):
            connection.exec_driver_sql(policy.create_sql(name=f"zz_probe_{i}"))
        probed = inspect_actual(connection, spec.table).policies
    finally:
        savepoint.rollback()
    return {policy.name: probed[f"zz_probe_{i}"] for i, policy in enumerate(policies)}


@dataclass(frozen=True)
class Drift:
    table: str
    problems: tuple[str, ...]
    actual: ActualAccess

    def __str__(self) -> str:
        return f"{self.table}: " + "; ".join(self.problems)


def diff_table(connection: sa.Connection, spec: TableAccess) -> Drift | None:
    """How the database differs from `spec` (None when it matches)."""
    actual = inspect_actual(connection, spec.table)
    if not actual.exists:
        return Drift(spec.table, ("missing",), actual)
    problems = []
    if not spec.is_view and not actual.rls:
        problems.append("row level security is off")
    expected_policies = canonical_policies(connection, spec)
    for name in sorted(expected_policies.keys() - actual.policies.keys()):
        problems.append(f"policy {name} missing")
    for name in sorted(actual.policies.keys() - expected_policies.keys()):
        problems.append(f"policy {name} not declared")
    for name in sorted(expected_policies.keys() & actual.policies.keys()):
        if expected_policies[name] != actual.policies[name]:
            problems.append(
                f"policy {name} is {actual.policies[name]}, declared {expected_policies[name]}"
            )
    for role, privileges in spec.grants().items():
        have = actual.grants.get(role, frozenset())
        if have != privileges:
            problems.append(f"{role} has {sorted(have)}, declared {sorted(privileges)}")
    declared_columns = spec.column_grants()
    for role in sorted(set(declared_columns) | set(actual.column_grants)):
        want = {k: v for k, v in declared_columns.get(role, {}).items() if v}
        have_columns = actual.column_grants.get(role, {})
        for privilege in sorted(set(want) | set(have_columns)):
            w, h = want.get(privilege, frozenset()), have_columns.get(privilege, frozenset())
            if w != h:
                problems.append(f"{role} may {privilege} columns {sorted(h)}, declared {sorted(w)}")
    return Drift(spec.table, tuple(problems), actual) if problems else None


def diff(connection: sa.Connection) -> list[Drift]:
    """Every difference between the declared access classes and the database."""
    drifts = [d for spec in declared() if (d := diff_table(connection, spec)) is not None]
    public_tables = connection.execute(
        sa.text(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm', 'f')"
            # Partitions are their parent's (drift.partition_findings keeps them closed).
            " and not c.relispartition"
        )
    ).scalars()
    known = {spec.table for spec in declared()}
    for name in sorted(set(public_tables) - known):
        drifts.append(Drift(name, ("in public but has no access class",), ActualAccess(True)))
    return drifts
