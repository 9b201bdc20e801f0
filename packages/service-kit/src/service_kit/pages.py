"""Repository rows to response models (Public schemas), in one step.

A row reaches the database through more than one door (the Data API lets a signed-in user
write any row the CHECKs allow), so a stored row may break a rule its Public model holds.
Such a row never turns a response into a 500: in a list it is left out of the page (logged
with its table and id; the page's cursor still moves past it), and asked for on its own it is a
409 naming the field, so its owner learns what to fix (PATCH it, or DELETE it).
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any, TypeVar

from fastapi import Response
from pydantic import BaseModel, TypeAdapter, ValidationError

from database.errors import ConflictError, invalid_input
from database.schema.base import Page

log = logging.getLogger("service_kit.pages")

PageT = TypeVar("PageT", bound=Page[Any])
ModelT = TypeVar("ModelT", bound=BaseModel)


def _row_name(row: Any) -> str:
    table = getattr(row, "__tablename__", type(row).__name__)
    return f"{table} {getattr(row, 'id', '?')}"


def public_row(row: Any, model: type[ModelT], *, what: str) -> ModelT:
    """`row` as `model`; a stored row that breaks the model's rules is a ConflictError."""
    try:
        return model.model_validate(row)
    except ValidationError as exc:
        problem = invalid_input(exc)
        log.warning("%s breaks %s: %s", _row_name(row), model.__name__, problem)
        raise ConflictError(
            field=problem.field,
            rule=f"the stored {what} breaks a rule ({problem.field}: {problem.rule});"
            " update it with valid values or delete it",
        ) from None


@cache
def _rows_adapter(item: type[BaseModel]) -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[item])  # type: ignore[valid-type]


def public_items(rows: list[Any], item: type[ModelT]) -> list[ModelT]:
    """Rows as `item` models in one pydantic-core call; when one breaks the model, row by row,
    leaving it out (and logging it)."""
    try:
        items: list[ModelT] = _rows_adapter(item).validate_python(rows, from_attributes=True)
    except ValidationError:
        items = []
        for row in rows:
            try:
                items.append(item.model_validate(row))
            except ValidationError as exc:
                log.warning("%s left out of a page: %s", _row_name(row), invalid_input(exc))
    return items


def public_page(page: Page[Any], response: type[PageT]) -> PageT:
    """`page` (rows from a repository) as `response`, a `Page[XPublic]` subclass; rows the
    Public model cannot represent are left out (and logged)."""
    item: type[BaseModel] = response.model_fields["data"].annotation.__args__[0]  # type: ignore[union-attr]
    data = public_items(page.data, item)
    return response.model_construct(data=data, next_cursor=page.next_cursor)  # type: ignore[return-value]


def json_response(value: Any, *, status_code: int = 200) -> Response:
    """`value` (a response model, or a list of them) as JSON bytes by pydantic-core, sent as is:
    FastAPI's own path would validate the model a second time before encoding it."""
    kind: Any = list if isinstance(value, list) else type(value)
    body = _json_adapter(kind).dump_json(value)
    return Response(content=body, status_code=status_code, media_type="application/json")


@cache
def _json_adapter(kind: Any) -> TypeAdapter[Any]:
    return TypeAdapter(kind)
