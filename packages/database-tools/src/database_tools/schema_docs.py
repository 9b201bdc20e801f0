"""The schema reference, generated from the code (`make docs` writes `docs/schema.md`; CI checks it
is current): a Mermaid ER diagram, then per table its columns, constraints, indexes, access
class, policies and grants — all read from the metadata and the access declarations, so the
page cannot say something the migrations do not do.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from database.access import TableAccess, declared
from database.schema.base import metadata
from database.schema.partitions import partitioning_of

_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]
_ACCESS_TEXT = {
    "public_data": "public data: anon and authenticated read every row; only the service writes",
    "user_owned": "user-owned: the owner reads and writes own rows; anon nothing",
    "user_submitted": "user-submitted: the owner inserts (the client's columns) and reads own rows"
    " and may file the declared request; the service writes everything else; anon nothing",
    "user_readable": "user-readable: written by the service; the owner reads own rows",
    "internal": "internal: no access for anon or authenticated",
}


def _type(column: sa.Column[object]) -> str:
    return str(column.type.compile(dialect=_DIALECT)).lower()


def _mermaid_name(table: sa.Table) -> str:
    return f"{table.schema}_{table.name}" if table.schema else table.name


def _mermaid() -> list[str]:
    lines = ["```mermaid", "erDiagram"]
    tables = [t for t in metadata.sorted_tables if not t.info.get("view")]
    for table in tables:
        if table.schema is not None:
            lines.append(f"    {_mermaid_name(table)} {{")
            lines.append("        uuid id PK")
            lines.append("    }")
            continue
        lines.append(f"    {table.name} {{")
        unique = {c.name for u in table.constraints if isinstance(u, sa.UniqueConstraint)
                  for c in u.columns if len(u.columns) == 1}  # fmt: skip
        for column in table.columns:
            kind = re.sub(r"\(.*\)", "", _type(column)).replace(
                "timestamp with time zone", "timestamptz"
            )
            kind = kind.replace(" ", "_")
            keys = []
            if column.primary_key:
                keys.append("PK")
            if column.foreign_keys:
                keys.append("FK")
            if column.name in unique:
                keys.append("UK")
            lines.append(f"        {kind} {column.name} {','.join(keys)}".rstrip())
        lines.append("    }")
    for table in tables:
        for fk in sorted(table.foreign_keys, key=lambda f: f.parent.name):
            parent = _mermaid_name(fk.column.table)
            optional = "o" if fk.parent.nullable else "|"
            lines.append(f'    {parent} |{optional}--o{{ {table.name} : "{fk.parent.name}"')
    lines.append("```")
    return lines


def _columns(table: sa.Table) -> list[str]:
    lines = ["| column | type | null | default |", "|---|---|---|---|"]
    for column in table.columns:
        default = getattr(column.server_default, "arg", None)
        shown = "" if default is None else str(getattr(default, "text", default))
        pk = " (PK)" if column.primary_key else ""
        fk = "".join(f" → {f.target_fullname}" for f in column.foreign_keys)
        null = "yes" if column.nullable else "no"
        lines.append(f"| `{column.name}`{pk}{fk} | {_type(column)} | {null} | {shown} |")
    return lines


def _constraints(table: sa.Table) -> list[str]:
    lines = []
    for constraint in sorted(table.constraints, key=lambda c: str(c.name)):
        if isinstance(constraint, sa.CheckConstraint):
            lines.append(f"- `{constraint.name}`: CHECK ({constraint.sqltext})")
        elif isinstance(constraint, sa.UniqueConstraint):
            cols = ", ".join(c.name for c in constraint.columns)
            lines.append(f"- `{constraint.name}`: UNIQUE ({cols})")
        elif isinstance(constraint, sa.ForeignKeyConstraint):
            target = constraint.elements[0].column.table.fullname
            cols = ", ".join(c.name for c in constraint.columns)
            ondelete = f" ON DELETE {constraint.ondelete.upper()}" if constraint.ondelete else ""
            lines.append(f"- `{constraint.name}`: FOREIGN KEY ({cols}) → {target}{ondelete}")
    for column in table.columns:
        if column.unique:
            lines.append(f"- `uq_{table.name}_{column.name}`: UNIQUE ({column.name})")
    return lines


def _indexes(table: sa.Table) -> list[str]:
    lines = []
    for index in sorted(table.indexes, key=lambda i: str(i.name)):
        cols = ", ".join(c.name for c in index.columns) or ", ".join(
            str(e) for e in index.expressions
        )
        where = index.dialect_options["postgresql"].get("where")
        suffix = f" WHERE {where}" if where is not None else ""
        unique = "UNIQUE " if index.unique else ""
        lines.append(f"- `{index.name}`: {unique}({cols}){suffix}")
    return lines


def _access(spec: TableAccess) -> list[str]:
    lines = [f"Access: **{_ACCESS_TEXT[spec.access.value]}**"]
    if spec.owner:
        lines[0] += f" (owner column `{spec.owner}`)"
    grants = [
        f"`{role}`: {', '.join(sorted(p)) if p else 'nothing'}" for role, p in spec.grants().items()
    ]
    lines += ["", "Grants: " + "; ".join(grants)]
    for role, by_privilege in spec.column_grants().items():
        for privilege, columns in sorted(by_privilege.items()):
            if columns:
                listed = ", ".join(f"`{c}`" for c in sorted(columns))
                lines += ["", f"Column grants: `{role}` may {privilege} {listed}"]
    if spec.request is not None:
        lines += [
            "",
            f"Owner request: `{spec.request.column}` (set once, stamped with now() by the"
            f" database) on own rows where `{spec.request.when}`",
        ]
    policies = spec.policies()
    if policies:
        lines += ["", "Policies:", ""]
        lines += [f"- `{p.create_sql()}`" for p in policies]
    return lines


def render() -> str:
    """The whole reference as Markdown."""
    specs = {spec.table: spec for spec in declared()}
    out = [
        "# Schema reference",
        "",
        "Generated from `packages/database` by `make docs`; do not edit by hand (CI fails when",
        "it is stale). Every table lives in `public`, has row-level security on, and belongs to",
        "exactly one access class, which decides its grants and policies.",
        "",
        "Time series are range-partitioned by time (declared on the model: interval, partitions",
        "made ahead, retention, drop or archive); pg_partman maintains them where installed,",
        "`database maintain` elsewhere. `whale_transactions` stays one plain table: its hash is",
        "unique across all time (a partitioned table can only enforce keys that hold the",
        "partition key) and it grows by a few thousand rows a day.",
        "",
        *_mermaid(),
        "",
    ]
    for table in sorted(metadata.tables.values(), key=lambda t: t.name):
        if table.schema is not None:
            continue
        spec = specs[table.name]
        kind = "view" if spec.is_view else "table"
        out += [f"## `{table.name}` ({kind})", ""]
        if table.comment:
            out += [table.comment, ""]
        if spec.is_view:
            definition = " ".join(str(table.info["definition"]).split())
            out += ["Definition (`security_invoker`):", "", f"```sql\n{definition}\n```", ""]
        out += [*_columns(table), ""]
        partitioning = partitioning_of(table)
        if partitioning is not None:
            kept = (
                "moved to schema `archive`"
                if partitioning.retired.value == "archive"
                else "dropped"
            )
            out += [
                f"Partitioned: **range on `{partitioning.column}`**, one partition per"
                f" {partitioning.interval.value}, {partitioning.premake} made ahead, a default"
                f" partition for strays; partitions older than {partitioning.retention} are"
                f" detached and {kept}.",
                "",
            ]
        for title, lines in (("Constraints", _constraints(table)), ("Indexes", _indexes(table))):
            if lines:
                out += [f"{title}:", "", *lines, ""]
        out += [*_access(spec), ""]
    return "\n".join(out).rstrip() + "\n"
