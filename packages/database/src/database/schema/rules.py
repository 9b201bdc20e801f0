"""Rules as types: one declaration, rendered to Pydantic validation and to SQL CHECKs.

A rule is ordinary Pydantic metadata inside an `Annotated` type — bounds (`Ge`, `Le`,
`Interval`), lengths, `StringConstraints` patterns and case folding, closed sets (a `StrEnum`
annotation) — so validation runs inside pydantic-core with no per-row Python callbacks. The
same metadata is read back here and rendered to the table's CHECK constraints, named
`ck_<table>_<column>_<kind>`:

    kind         from                                   SQL
    nonnegative  Ge(0)                                  col >= 0
    positive     Gt(0)                                  col > 0
    range        other bounds (int bounds that are      col >= a and col <= b
                 the SQL type's own are left out)
    length       min/max length of a string             char_length(col) >= a and … <= b
    format       a pattern (other than NUL-free)        col ~ '<pattern>'
    lowercase    to_lower without a pattern             col = lower(col)
    trimmed      strip_whitespace without a pattern     col = btrim(col)
    valid        a StrEnum                              col in ('a', 'b', …)

A list field (a `text[]` column) renders its length as `cardinality(col)` and its items' rules
(the same table, over each element) as one function, `private.valid_<table>_<col>(text[])`,
called by the CHECK `ck_<table>_<col>_items` (a CHECK cannot hold a subquery; a function can).

Every text type excludes NUL: PostgreSQL cannot store it, so without the rule a NUL would be a
server error instead of a validation error naming the field.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args, get_origin

import annotated_types as at
import sqlalchemy as sa
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler, StringConstraints
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema
from sqlmodel import SQLModel

from database.errors import describe_pattern

#: Text that PostgreSQL can store (no NUL). Not rendered to SQL: the database enforces it itself.
NO_NUL = r"^[^\x00]*$"
describe_pattern(NO_NUL, "must not contain NUL characters")

INT16 = (-(2**15), 2**15 - 1)
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
_INT_RANGES = {sa.SmallInteger: INT16, sa.Integer: INT32, sa.BigInteger: INT64}


@dataclass(frozen=True)
class TextRule:
    """String rules checked inside pydantic-core, in order: fold (strip, case), then check
    (lengths, pattern). Pydantic's own StringConstraints would match the pattern before folding,
    so a hash pasted in upper case or with a trailing space would be refused, not normalized.
    """

    min_length: int | None = None
    max_length: int | None = None
    pattern: str = NO_NUL
    lower: bool = False
    upper: bool = False
    strip: bool = False

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        base = handler(source)
        check = core_schema.str_schema(
            pattern=self.pattern, min_length=self.min_length, max_length=self.max_length
        )
        if not (self.lower or self.upper or self.strip):
            if base.get("type") == "str":  # one schema: the base's strictness plus the rules
                return {**base, **check}
            return core_schema.chain_schema([base, check])
        fold = core_schema.str_schema(
            strip_whitespace=self.strip or None,
            to_lower=self.lower or None,
            to_upper=self.upper or None,
        )
        return core_schema.chain_schema([base, fold, check])

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out: dict[str, Any] = {"type": "string"}
        if self.pattern != NO_NUL:
            out["pattern"] = self.pattern
        if self.min_length is not None:
            out["minLength"] = self.min_length
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        return out


def Text(  # noqa: N802 - reads as a type in annotations: Annotated[str, Text(max_length=100)]
    *,
    min_length: int | None = None,
    max_length: int | None = None,
    pattern: str | None = None,
    lower: bool = False,
    upper: bool = False,
    strip: bool = False,
) -> TextRule:
    """String rules (checked by pydantic-core) that also render CHECKs. Without a pattern, NUL
    characters are still refused."""
    return TextRule(min_length, max_length, pattern or NO_NUL, lower, upper, strip)


def _bounds(
    limits: tuple[int, int], ge: int | None, le: int | None, gt: int | None, lt: int | None
) -> at.Interval:
    low, high = limits
    return at.Interval(
        ge=low if ge is None and gt is None else ge,
        gt=gt,
        le=high if le is None and lt is None else le,
        lt=lt,
    )


def SmallInt(  # noqa: N802
    *, ge: int | None = None, le: int | None = None, gt: int | None = None, lt: int | None = None
) -> at.Interval:
    """Bounds of a smallint column: the type's own range unless narrower ones are given."""
    return _bounds(INT16, ge, le, gt, lt)


def Int(  # noqa: N802
    *, ge: int | None = None, le: int | None = None, gt: int | None = None, lt: int | None = None
) -> at.Interval:
    """Bounds of an integer column (±2^31): a value outside is a validation error."""
    return _bounds(INT32, ge, le, gt, lt)


def BigInt(  # noqa: N802
    *, ge: int | None = None, le: int | None = None, gt: int | None = None, lt: int | None = None
) -> at.Interval:
    """Bounds of a bigint column (±2^63): a gas price above it is a validation error naming
    the field, not a failed write."""
    return _bounds(INT64, ge, le, gt, lt)


# -- reading rules back from a field ---------------------------------------------------------


def unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """(base type, metadata) of an annotation, through `Annotated` and `X | None`."""
    metadata: list[Any] = []
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            base, *extra = get_args(annotation)
            metadata.extend(extra)
            annotation = base
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return annotation, metadata
            annotation = options[0]
        else:
            return annotation, metadata


def flatten(metadata: list[Any]) -> Iterator[Any]:
    """Metadata items one by one, through Field(...) and grouped constraints."""
    for item in metadata:
        if isinstance(item, FieldInfo):  # Field(...) inside an Annotated type
            yield from flatten(list(item.metadata))
        elif isinstance(item, at.GroupedMetadata) and not isinstance(item, StringConstraints):
            yield from item
        else:
            yield item


class FieldRules:
    """The rules one field carries, gathered from its metadata."""

    def __init__(self, annotation: Any, metadata: list[Any]) -> None:
        base, inner = unwrap(annotation)
        self.base = base
        self.ge: Any = None
        self.gt: Any = None
        self.le: Any = None
        self.lt: Any = None
        self.min_length: int | None = None
        self.max_length: int | None = None
        self.pattern: str | None = None
        self.lower = self.upper = self.strip = False
        for item in flatten([*inner, *metadata]):
            self._read(item)

    def _read(self, item: Any) -> None:
        for name in ("ge", "gt", "le", "lt"):
            value = getattr(item, name, None)
            if value is not None and isinstance(item, at.BaseMetadata | at.Interval):
                setattr(self, name, value)
        if isinstance(item, at.MinLen):
            self.min_length = item.min_length
        elif isinstance(item, at.MaxLen):
            self.max_length = item.max_length
        elif isinstance(item, TextRule):
            self.min_length = item.min_length if item.min_length is not None else self.min_length
            self.max_length = item.max_length if item.max_length is not None else self.max_length
            self.pattern = item.pattern
            self.lower, self.upper, self.strip = item.lower, item.upper, item.strip
        elif isinstance(item, StringConstraints):
            self.min_length = item.min_length if item.min_length is not None else self.min_length
            self.max_length = item.max_length if item.max_length is not None else self.max_length
            self.pattern = item.pattern if isinstance(item.pattern, str) else self.pattern
            self.lower = self.lower or bool(item.to_lower)
            self.upper = self.upper or bool(item.to_upper)
            self.strip = self.strip or bool(item.strip_whitespace)
        elif type(item).__name__ == "_PydanticGeneralMetadata":  # Field(pattern=…)
            pattern = getattr(item, "pattern", None)
            if isinstance(pattern, str):
                self.pattern = pattern

    @property
    def closed_set(self) -> list[str] | None:
        if isinstance(self.base, type) and issubclass(self.base, StrEnum):
            return [member.value for member in self.base]
        if get_origin(self.base) is Literal:
            return [str(v) for v in get_args(self.base)]
        return None


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def sql_checks(column: str, rules: FieldRules, sql_type: Any) -> list[tuple[str, str]]:
    """(name, SQL) of every CHECK the field's rules render to, for `column` of `sql_type`."""
    checks: list[tuple[str, str]] = []
    ge, gt, le, lt = rules.ge, rules.gt, rules.le, rules.lt
    for integer_type, limits in _INT_RANGES.items():
        if isinstance(sql_type, integer_type):  # the column's type enforces its own range
            ge = None if ge == limits[0] else ge
            le = None if le == limits[1] else le
    bounds = [
        f"{column} {op} {_literal(value)}"
        for op, value in ((">=", ge), (">", gt), ("<=", le), ("<", lt))
        if value is not None
    ]
    if bounds:
        if (le, lt) == (None, None) and (ge, gt) in ((0, None), (None, 0)):
            kind = "nonnegative" if ge == 0 else "positive"
        else:
            kind = "range"
        checks.append((f"{column}_{kind}", " and ".join(bounds)))
    if rules.base is str:
        lengths = []
        if rules.min_length:
            lengths.append(f"char_length({column}) >= {rules.min_length}")
        if rules.max_length is not None:
            lengths.append(f"char_length({column}) <= {rules.max_length}")
        if lengths:
            checks.append((f"{column}_length", " and ".join(lengths)))
        if rules.pattern is not None and rules.pattern != NO_NUL:
            checks.append((f"{column}_format", f"{column} ~ {_literal(rules.pattern)}"))
        elif rules.lower or rules.upper:
            fold = "lower" if rules.lower else "upper"
            checks.append((f"{column}_{fold}case", f"{column} = {fold}({column})"))
        if rules.strip and (rules.pattern is None or rules.pattern == NO_NUL):
            checks.append((f"{column}_trimmed", f"{column} = btrim({column})"))
    values = rules.closed_set
    if values is not None:
        listed = ", ".join(_literal(v) for v in values)
        checks.append((f"{column}_valid", f"{column} in ({listed})"))
    return checks


@dataclass(frozen=True)
class ItemsFunction:
    """The function a list column's CHECK calls: every element obeys the item type's rules."""

    name: str  # schema-qualified
    signature: str
    create: str


def items_function(table: str, column: str, item: Any) -> ItemsFunction:
    """`private.valid_<table>_<column>(text[])`, rendered from the item type's rules."""
    name = f"private.valid_{table}_{column}"
    if len(name.split(".")[1]) > 63:
        raise ValueError(f"{name}: longer than PostgreSQL's 63-character names")
    rules = [sql for _, sql in sql_checks("e", FieldRules(item, []), sa.Text())]
    bad = " or ".join(["e is null", *(f"not ({sql})" for sql in rules)])
    create = (
        f"create or replace function {name}(v text[]) returns boolean\n"
        "language sql immutable parallel safe set search_path = '' as $$\n"
        f"  select not exists (select from unnest(v) as e where {bad})\n$$"
    )
    return ItemsFunction(name, f"{name}(text[])", create)


def _array_checks(
    table: str, column: str, rules: FieldRules
) -> list[tuple[str, str, dict[str, Any]]]:
    (item,) = get_args(rules.base)
    checks: list[tuple[str, str, dict[str, Any]]] = []
    lengths = []
    if rules.min_length:
        lengths.append(f"cardinality({column}) >= {rules.min_length}")
    if rules.max_length is not None:
        lengths.append(f"cardinality({column}) <= {rules.max_length}")
    if lengths:
        checks.append((f"{column}_length", " and ".join(lengths), {}))
    function = items_function(table, column, item)
    checks.append((f"{column}_items", f"{function.name}({column})", {"function": function}))
    return checks


_APPLIED: set[str] = set()


def apply_rules(model: type[SQLModel]) -> None:
    """Add the CHECKs its fields' rules render to `model`'s table (once per table)."""
    table: sa.Table = model.__table__  # type: ignore[attr-defined]
    if table.name in _APPLIED:
        return
    _APPLIED.add(table.name)
    columns = {attr.key: attr.columns[0] for attr in sa.inspect(model).column_attrs}
    existing = {c.name for c in table.constraints if isinstance(c, sa.CheckConstraint)}
    for name, field in model.model_fields.items():
        column = columns.get(name)
        if column is None:
            continue
        rules = FieldRules(field.annotation, list(field.metadata))
        if isinstance(column.type, sa.ARRAY) and get_origin(rules.base) is list:
            checks = _array_checks(table.name, column.name, rules)
        else:
            checks = [(n, sql, {}) for n, sql in sql_checks(column.name, rules, column.type)]
        for check_name, sql, info in checks:
            full = f"ck_{table.name}_{check_name}"
            if check_name in existing or full in existing:
                raise ValueError(f"{table.name}: CHECK {check_name} is rendered from the field's "
                                 "type; remove the hand-written one")  # fmt: skip
            table.append_constraint(sa.CheckConstraint(sql, name=check_name, info=info))
