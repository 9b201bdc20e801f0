"""A Public model's JSON, rendered by PostgreSQL from the model's declaration.

`row_json(Model, table)` is one SQL expression whose value, for each row, is the exact bytes
pydantic writes for `Model` (`model_dump_json()`): the same field order, the same spellings
(decimal strings in plain digits, UTC timestamps with `Z` and microseconds only when there are
some, uuids as strings, null for a missing value). A read API that asks for it sends what the
server returned as it is: no typed values built per column, no model validated per row, no
encoder — most of what a page of rows costs in Python.

Only plain fields can be rendered: text, closed sets, integers, booleans, decimals in plain
digits, uuids, dates and aware datetimes, each maybe null. A model with anything else (floats,
nested documents, validators or serializers of its own) is refused (`NotRenderableError`), and
its callers keep the pydantic path. The test suite holds the two renderings byte-equal
(`test_public_json.py`), so a change on one side cannot drift from the other unnoticed.
"""

from __future__ import annotations

import json
import types
import typing
import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from functools import cache
from typing import Annotated, Any, get_args, get_origin

import sqlalchemy as sa
from pydantic import AwareDatetime, BaseModel, PlainSerializer

from database.schema.types import PlainDigits


class NotRenderableError(TypeError):
    """The model has a field PostgreSQL cannot render exactly as pydantic would."""


# How each kind of field reads in JSON; `{c}` is the column. Text goes through to_json, which
# escapes exactly the characters pydantic escapes (quote, backslash, control characters).
_TIMESTAMP = (
    "'\"' || to_char({c} at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')"
    " || case when to_char({c}, 'US') = '000000' then ''"
    " else '.' || to_char({c}, 'US') end || 'Z\"'"
)
_KINDS = {
    "text": "to_json({c})::text",
    "integer": "{c}::text",
    "boolean": "{c}::text",
    "digits": "'\"' || {c}::text || '\"'",  # numeric's text is plain digits at the column's scale
    "uuid": "'\"' || {c}::text || '\"'",
    "date": "'\"' || to_char({c}, 'YYYY-MM-DD') || '\"'",
    "timestamp": _TIMESTAMP,
}


def _kind(annotation: Any, *, field: str) -> tuple[str, bool]:
    """(kind, nullable) of a field's annotation, or NotRenderableError."""
    nullable = False
    serializers: list[Any] = []
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation, *extra = get_args(annotation)
            serializers += [m for m in extra if isinstance(m, PlainSerializer)]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                raise NotRenderableError(f"{field}: a union of {len(args)} types")
            nullable, annotation = True, args[0]
        else:
            break
    if serializers and (annotation is not Decimal or serializers != [PlainDigits]):
        raise NotRenderableError(f"{field}: a serializer of its own")
    if isinstance(annotation, type):
        if issubclass(annotation, bool):
            return "boolean", nullable
        if issubclass(annotation, Enum) and issubclass(annotation, str):
            return "text", nullable
        if issubclass(annotation, str):
            return "text", nullable
        if issubclass(annotation, int):
            return "integer", nullable
        if issubclass(annotation, Decimal) and serializers:
            return "digits", nullable
        if issubclass(annotation, uuid.UUID):
            return "uuid", nullable
        if issubclass(annotation, datetime):  # before date: a datetime is a date
            return "timestamp", nullable
        if issubclass(annotation, date):
            return "date", nullable
    if annotation is AwareDatetime:
        return "timestamp", nullable
    raise NotRenderableError(f"{field}: {annotation!r} has no exact rendering")


def _own_behaviour(model: type[BaseModel]) -> bool:
    d = model.__pydantic_decorators__
    return any(
        (d.validators, d.field_validators, d.root_validators, d.field_serializers,
         d.model_serializers, d.model_validators, d.computed_fields)
    )  # fmt: skip


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@cache
def row_json(model: type[BaseModel], table: sa.Table) -> sa.ColumnElement[str]:
    """The text of `model`'s JSON for a row of `table` (whose columns carry the model's field
    names). NotRenderableError when some field cannot be rendered exactly."""
    if _own_behaviour(model):
        raise NotRenderableError(f"{model.__name__} has validators or serializers of its own")
    preparer = sa.dialects.postgresql.dialect().identifier_preparer  # type: ignore[attr-defined]
    parts = []
    for i, (name, info) in enumerate(model.model_fields.items()):
        if info.alias or info.serialization_alias or info.exclude:
            raise NotRenderableError(f"{model.__name__}.{name}: aliased or excluded")
        if name not in table.c:
            raise NotRenderableError(f"{model.__name__}.{name} is not a column of {table.name}")
        kind, nullable = _kind(info.rebuild_annotation(), field=f"{model.__name__}.{name}")
        if kind == "timestamp" and not getattr(table.c[name].type, "timezone", False):
            # pydantic writes a naive value without an offset; rendered here it would say UTC
            raise NotRenderableError(f"{model.__name__}.{name}: timestamp without time zone")
        column = f"{preparer.quote(table.name)}.{preparer.quote(name)}"
        value = _KINDS[kind].format(c=column)
        if nullable:
            value = f"coalesce({value}, 'null')"
        key = ("{" if i == 0 else ",") + json.dumps(name) + ":"
        parts.append(f"{_sql_string(key)} || {value}")
    expression = " || ".join(parts) + " || '}'" if parts else "'{}'"
    # The client binds parameters into the text (a `%` would read as a placeholder).
    assert "%" not in expression, expression
    return sa.literal_column(expression, sa.Text)
