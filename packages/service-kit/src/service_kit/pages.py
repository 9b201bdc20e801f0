"""Repository rows to response models (Public schemas), in one step.

A row reaches the database through more than one door (the Data API lets a signed-in user
write any row the CHECKs allow), so a stored row may break a rule its Public model holds.
Such a row never turns a response into a 500: in a list it is left out of the page (logged
with its table and id; the page's cursor still moves past it), and asked for on its own it is a
409 naming the field, so its owner learns what to fix (PATCH it, or DELETE it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

import sqlalchemy as sa
from fastapi import Response
from pydantic import BaseModel, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from database.errors import ConflictError, NotFoundError, invalid_input
from database.repositories.base import PublicListing, PublicQuery
from database.schema.base import Page
from service_kit.sessions import Caller

log = logging.getLogger("service_kit.pages")

ModelT = TypeVar("ModelT", bound=BaseModel)


def _row_name(row: Any, model: type[BaseModel]) -> str:
    table = getattr(row, "__tablename__", None) or f"{model.__name__} row"
    return f"{table} {getattr(row, 'id', '?')}"


def public_row(row: Any, model: type[ModelT], *, what: str) -> ModelT:
    """`row` as `model`; a stored row that breaks the model's rules is a ConflictError."""
    try:
        return model.model_validate(row)
    except ValidationError as exc:
        problem = invalid_input(exc)
        log.warning("%s breaks %s: %s", _row_name(row, model), model.__name__, problem)
        raise ConflictError(
            field=problem.field,
            rule=f"the stored {what} breaks a rule ({problem.field}: {problem.rule});"
            " update it with valid values or delete it",
        ) from None


@dataclass(frozen=True)
class _Shape:
    """How rows become one Public model's JSON. When the model is only its fields (no
    validators or serializers of its own: the rules live on the field types), rows are
    validated as a TypedDict with the same fields: the same checks and the same JSON, without
    building a model object per row (a third of the cost). Otherwise, as models."""

    model: type[BaseModel]
    rows: TypeAdapter[list[Any]]  # validates a list of dicts
    row: TypeAdapter[Any]  # validates one dict
    dump: TypeAdapter[Any]  # serializes validated items
    page: TypeAdapter[Any]  # serializes {"data": items, "next_cursor": ...}


def _only_fields(model: type[BaseModel]) -> bool:
    decorators = model.__pydantic_decorators__
    own = (
        decorators.validators, decorators.field_validators, decorators.root_validators,
        decorators.field_serializers, decorators.model_serializers, decorators.model_validators,
        decorators.computed_fields,
    )  # fmt: skip
    aliased = any(f.alias or f.serialization_alias for f in model.model_fields.values())
    return not any(own) and not aliased


_typed_dict: Any = TypedDict  # built at run time from a model's fields


@cache
def _shape(model: type[BaseModel]) -> _Shape:
    item: Any = model
    if _only_fields(model):
        fields = {name: f.rebuild_annotation() for name, f in model.model_fields.items()}
        item = _typed_dict(f"{model.__name__}Row", fields)
    page = _typed_dict(f"{model.__name__}Page", {"data": list[item], "next_cursor": str | None})
    return _Shape(
        model=model,
        rows=TypeAdapter(list[item]),
        row=TypeAdapter(item),
        dump=TypeAdapter(list[item]),
        page=TypeAdapter(page),
    )


def _as_dict(row: Any) -> dict[str, Any]:
    if isinstance(row, dict):
        return row
    if isinstance(row, sa.Row):
        return row._asdict()
    if isinstance(row, BaseModel):
        return {name: getattr(row, name) for name in type(row).model_fields}
    raise TypeError(f"not a row: {type(row).__name__}")


def public_items(rows: list[Any], item: type[BaseModel]) -> list[Any]:
    """Rows (Core rows, ORM objects or dicts) validated as `item`, in one pydantic-core call;
    when one breaks the model, row by row, leaving it out (and logging it)."""
    shape = _shape(item)
    if rows and isinstance(rows[0], sa.Row):
        keys = rows[0]._fields
        dicts = [dict(zip(keys, row, strict=True)) for row in rows]
    else:
        dicts = [_as_dict(row) for row in rows]
    try:
        return shape.rows.validate_python(dicts)
    except ValidationError:
        items = []
        for row in dicts:
            try:
                items.append(shape.row.validate_python(row))
            except ValidationError as exc:
                log.warning(
                    "%s %s left out of a page: %s", item.__name__, row.get("id"), invalid_input(exc)
                )
        return items


def page_response(page: Page[Any], response: type[Page[Any]]) -> Response:
    """`page` (rows from a repository) as the JSON of `response`, a `Page[XPublic]` subclass;
    rows the Public model cannot represent are left out (and logged)."""
    item: type[BaseModel] = response.model_fields["data"].annotation.__args__[0]  # type: ignore[union-attr]
    shape = _shape(item)
    data = public_items(page.data, item)
    return _json(shape.page.dump_json({"data": data, "next_cursor": page.next_cursor}))


async def public_page_response(caller: Caller, listing: PublicListing) -> Response:
    """A listing whose JSON the server rendered (`Repository.public_listing`), read as the
    caller in one round trip on a read replica (the primary when there is none) and sent as it
    came: `{"data": [...], "next_cursor": ...}`, the
    same bytes `page_response` writes for those rows."""
    rows = await caller.read(sql=listing.sql, params=listing.params, replica=True)
    page = listing.page(rows)
    cursor = b"null" if page.next_cursor is None else f'"{page.next_cursor}"'.encode()
    body = b"".join(
        (b'{"data":[', ",".join(page.items).encode(), b'],"next_cursor":', cursor, b"}")
    )
    return _json(body)


async def public_row_response(caller: Caller, query: PublicQuery, *, what: str) -> Response:
    """The one row of `query` (`Repository.public_one`), read as the caller in one round trip
    on the primary (a row just learned of is there even when a replica lags) and sent as the
    server rendered it; no row is a NotFoundError naming `what`."""
    rows = await caller.read(sql=query.sql, params=query.params)
    if not rows:
        raise NotFoundError(what=what)
    return _json(rows[0][0].encode())


def items_response(rows: list[Any], item: type[BaseModel]) -> Response:
    """`rows` as a JSON array of `item`."""
    return _json(_shape(item).dump.dump_json(public_items(rows, item)))


def row_response(row: Any, model: type[BaseModel], *, what: str) -> Response:
    """One row as the JSON of `model` (a row breaking its rules is a ConflictError)."""
    public = public_row(row, model, what=what)
    return _json(public.__pydantic_serializer__.to_json(public))


def _json(body: bytes, status_code: int = 200) -> Response:
    # The bytes pydantic-core produced, sent as they are: FastAPI's own path would validate
    # the response model a second time before encoding it.
    return Response(content=body, status_code=status_code, media_type="application/json")
