"""JSON documents users can write (alert conditions and channels, profile preferences), declared
once as Pydantic models and rendered to SQL validation functions that CHECKs call.

Through the Data API a signed-in user writes JSONB without our apps, so the database must
accept a document exactly when the model does (a hypothesis test holds both to that). To make
"exactly" achievable, document models use JSON-native, strict types:

* `StrictStr`/`StrictInt`/`StrictBool`: no coercion ("5" is not an int, 1 is not a bool);
* `DocDecimal`: a JSON number, or a string of plain digits ("1000.5"; no exponent, spaces or
  signs other than a leading "-"). A JSON number means what a double means, as in Python, so
  the database reads it through float8 (`private.doc_number`);
* text never changes case or whitespace (what is stored is what was sent);
* unknown keys are refused; lists and strings are bounded, so a valid document is small.

`render_functions(annotation, name)` returns the CREATE FUNCTION statements for one document
type; `database.ddl` declares them and `alembic check` compares them with the database.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel, BeforeValidator, ConfigDict, GetCoreSchemaHandler, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, core_schema

from database.errors import describe_pattern
from database.schema.rules import NO_NUL, FieldRules, flatten

# -- decimals as JSON carries them ---------------------------------------------------------------

DECIMAL_TEXT = describe_pattern(
    r"^-?[0-9]+(\.[0-9]+)?$", 'must be a number, or its digits in a string such as "1000.5"'
)
_DECIMAL_TEXT = re.compile(DECIMAL_TEXT)


def _json_decimal(value: object) -> object:
    # Before pydantic's own Decimal parsing: only the forms the database reads the same way.
    if isinstance(value, bool) or (isinstance(value, str) and not _DECIMAL_TEXT.match(value)):
        raise ValueError('must be a number, or its digits in a string such as "1000.5"')
    return value


#: Use as `Annotated[Decimal, DocDecimal, Field(ge=0, decimal_places=18)]`.
DocDecimal = BeforeValidator(_json_decimal)


# -- rules across fields ------------------------------------------------------------------------


class DocumentRule:
    """A rule about a whole object or list, checked in Python and rendered to SQL."""

    message: str

    def holds(self, value: Any) -> bool:
        raise NotImplementedError

    def sql(self, value: str) -> str:
        """A boolean SQL expression over the jsonb expression `value` (never NULL)."""
        raise NotImplementedError


@dataclass(frozen=True)
class AtLeastOne(DocumentRule):
    """At least one of `fields` is present and not null (a list: not empty)."""

    fields: tuple[str, ...]

    @property
    def message(self) -> str:  # type: ignore[override]
        return f"set at least one of {', '.join(self.fields)}"

    def holds(self, value: Any) -> bool:
        return any(getattr(value, f) not in (None, [], ()) for f in self.fields)

    def sql(self, value: str) -> str:
        present = [
            f"coalesce({value} -> '{f}', 'null') not in ('null'::jsonb, '[]'::jsonb)"
            for f in self.fields
        ]
        return "(" + " or ".join(present) + ")"


@dataclass(frozen=True)
class AtMost(DocumentRule):
    """At most `limit` items of a list whose `key` is `equals` (e.g. one webhook channel)."""

    limit: int
    key: str
    equals: str

    @property
    def message(self) -> str:  # type: ignore[override]
        return f"at most {self.limit} with {self.key} {self.equals!r}"

    def holds(self, value: Any) -> bool:
        return (
            sum(1 for item in value if getattr(item, self.key, None) == self.equals) <= self.limit
        )

    def sql(self, value: str) -> str:
        return (
            f"(select count(*) from jsonb_array_elements({value}) as e"
            f" where e ->> '{self.key}' = '{self.equals}') <= {self.limit}"
        )

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def check(items: Any) -> Any:
            if not self.holds(items):
                raise ValueError(self.message)
            return items

        return core_schema.no_info_after_validator_function(check, handler(source))


class Document(BaseModel):
    """Base of every JSON document model: frozen, unknown keys refused, object-level rules in
    `document_rules` (checked here, rendered to SQL by `render_functions`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    document_rules: ClassVar[tuple[DocumentRule, ...]] = ()

    @model_validator(mode="after")
    def _rules(self) -> Self:
        for rule in type(self).document_rules:
            if not rule.holds(self):
                raise ValueError(rule.message)
        return self


# -- rendering to SQL -----------------------------------------------------------------------------

SCHEMA = "private"

#: A JSON number as a double means it (as Python's json does), a plain-digit string exactly;
#: anything else is NULL. Never raises, whatever the input.
DOC_NUMBER_FUNCTION = f"""create or replace function {SCHEMA}.doc_number(v jsonb) returns numeric
language sql immutable parallel safe set search_path = '' as $$
  select case jsonb_typeof(v)
    when 'number' then case
      when abs(v::text::numeric) >= 1.7976931348623157e308 then null
      when abs(v::text::numeric) <= 2.4703282292062327e-324 then 0::numeric
      else ((v::text)::float8)::text::numeric end
    when 'string' then case
      when (v #>> '{{}}') ~ '{DECIMAL_TEXT}' then (v #>> '{{}}')::numeric end
  end
$$"""


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _lit(value: Any) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _case(guard: str, then: str) -> str:
    # CASE fixes the evaluation order: `then` only runs on the type it was written for.
    return f"(case when {guard} then coalesce({then}, false) else false end)"


@dataclass
class _Renderer:
    functions: dict[str, str]

    def model_function(self, model: type[BaseModel]) -> str:
        name = f"{SCHEMA}.doc_{_snake(model.__name__)}"
        if name in self.functions:
            return name
        self.functions[name] = ""  # reserved: recursion stops here
        v = "v"
        keys = ", ".join(_lit(k) for k in model.model_fields)
        parts = [f"not exists (select from jsonb_object_keys({v}) as k where k not in ({keys}))"]
        for field_name, field in model.model_fields.items():
            parts.append(self._field(field_name, field, v))
        rules = getattr(model, "document_rules", ())
        parts.extend(rule.sql(v) for rule in rules)
        body = _case(f"jsonb_typeof({v}) = 'object'", "\n    and ".join(parts))
        del self.functions[name]  # re-inserted after the functions it calls
        self.functions[name] = (
            f"create or replace function {name}(v jsonb) returns boolean\n"
            f"language sql immutable parallel safe set search_path = '' as $$\n"
            f"  select {body}\n$$"
        )
        return name

    def _field(self, name: str, field: FieldInfo, parent: str) -> str:
        value = f"({parent} -> {_lit(name)})"
        check = self.value(field.annotation, list(field.metadata), value)
        required = field.default is PydanticUndefined and field.default_factory is None
        if required:
            return f"({parent} ? {_lit(name)} and {check})"
        return f"(not {parent} ? {_lit(name)} or {check})"

    def value(self, annotation: Any, metadata: list[Any], v: str) -> str:
        """A boolean SQL expression: does jsonb `v` validate as `annotation`?"""
        origin = get_origin(annotation)
        if origin is Annotated:
            base, *extra = get_args(annotation)
            return self.value(base, [*extra, *metadata], v)
        if origin in (typing.Union, types.UnionType):
            options = get_args(annotation)
            discriminator = next(
                (m.discriminator for m in metadata if isinstance(m, FieldInfo) and m.discriminator),
                None,
            )
            if discriminator is not None:
                return self._tagged(options, str(discriminator), v)
            if type(None) in options:
                rest = [o for o in options if o is not type(None)]
                inner = rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]  # noqa: UP007
                return f"({v} = 'null'::jsonb or {self.value(inner, metadata, v)})"
            raise TypeError(f"untagged union {annotation} has no SQL rendering")
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return f"{self.model_function(annotation)}({v})"
        rules = FieldRules(annotation, metadata)
        checks: list[str] = []
        if origin is list:
            (item,) = get_args(annotation)
            length = self._lengths("jsonb_array_length", v, metadata)
            every = self.value(item, [], "e")
            checks.append(
                f"not exists (select from jsonb_array_elements({v}) as e where not {every})"
            )
            checks.extend(length)
            checks.extend(m.sql(v) for m in metadata if isinstance(m, DocumentRule))
            return _case(f"jsonb_typeof({v}) = 'array'", " and ".join(checks))
        if origin is Literal:
            values = ", ".join(_lit(x) for x in get_args(annotation))
            return _case(f"jsonb_typeof({v}) = 'string'", f"({v} #>> '{{}}') in ({values})")
        if isinstance(annotation, type) and issubclass(annotation, StrEnum):
            values = ", ".join(_lit(m.value) for m in annotation)
            return _case(f"jsonb_typeof({v}) = 'string'", f"({v} #>> '{{}}') in ({values})")
        if annotation is bool:
            return f"(jsonb_typeof({v}) = 'boolean')"
        if annotation is str:
            if rules.lower or rules.upper or rules.strip:
                raise TypeError("document text is stored as sent: no case or whitespace folding")
            text = f"({v} #>> '{{}}')"
            checks.extend(self._lengths("char_length", text, metadata, rules))
            if rules.pattern is not None and rules.pattern != NO_NUL:
                checks.append(f"{text} ~ {_lit(rules.pattern)}")
            return _case(f"jsonb_typeof({v}) = 'string'", " and ".join(checks) or "true")
        if annotation is int:
            number = f"(({v})::text::numeric)"
            checks.append(f"({v})::text ~ '^-?[0-9]+$'")
            checks.extend(self._bounds(number, rules))
            return _case(f"jsonb_typeof({v}) = 'number'", " and ".join(checks))
        if annotation is Decimal:
            places = next(
                (getattr(m, "decimal_places", None) for m in flatten(metadata)
                 if getattr(m, "decimal_places", None) is not None),
                None,
            )  # fmt: skip
            n = f"{SCHEMA}.doc_number({v})"
            checks.append(f"{n} is not null")
            checks.extend(self._bounds(n, rules))
            if places is not None:
                checks.append(f"scale(trim_scale({n})) <= {places}")
            return "(" + " and ".join(f"coalesce({c}, false)" for c in checks) + ")"
        raise TypeError(f"{annotation!r} has no SQL rendering for documents")

    def _tagged(self, options: tuple[Any, ...], tag: str, v: str) -> str:
        branches = []
        for option in options:
            literal = option.model_fields[tag].annotation
            (value,) = get_args(literal)
            branches.append(f"when {_lit(getattr(value, 'value', value))} then "
                            f"{self.model_function(option)}({v})")  # fmt: skip
        cases = " ".join(branches)
        return _case(
            f"jsonb_typeof({v}) = 'object'", f"case {v} ->> {_lit(tag)} {cases} else false end"
        )

    @staticmethod
    def _bounds(n: str, rules: FieldRules) -> list[str]:
        ops = ((">=", rules.ge), (">", rules.gt), ("<=", rules.le), ("<", rules.lt))
        return [f"{n} {op} {value}" for op, value in ops if value is not None]

    @staticmethod
    def _lengths(
        function: str, v: str, metadata: list[Any], rules: FieldRules | None = None
    ) -> list[str]:
        low = rules.min_length if rules else None
        high = rules.max_length if rules else None
        for m in metadata:
            if isinstance(m, at.MinLen):
                low = m.min_length
            elif isinstance(m, at.MaxLen):
                high = m.max_length
            elif isinstance(m, FieldInfo):
                for inner in m.metadata:
                    if isinstance(inner, at.MinLen):
                        low = inner.min_length
                    elif isinstance(inner, at.MaxLen):
                        high = inner.max_length
        out = []
        if low:
            out.append(f"{function}({v}) >= {low}")
        if high is not None:
            out.append(f"{function}({v}) <= {high}")
        return out


def render_functions(annotation: Any, name: str) -> tuple[str, list[str]]:
    """(`private.valid_<name>`, its CREATE FUNCTION statements, dependencies first)."""
    renderer = _Renderer(functions={})
    body = renderer.value(annotation, [], "doc")
    top = f"{SCHEMA}.valid_{name}"
    statements = [DOC_NUMBER_FUNCTION, *renderer.functions.values()]
    statements.append(
        f"create or replace function {top}(doc jsonb) returns boolean\n"
        f"language sql immutable parallel safe set search_path = '' as $$\n"
        f"  select {body}\n$$"
    )
    return top, statements
