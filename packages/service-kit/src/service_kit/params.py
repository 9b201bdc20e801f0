"""Request parameters every app reads the same way, with the rules they enforce in the
OpenAPI documents: page size, keyset cursor, ISO 8601 timestamps, and no NUL characters
anywhere (PostgreSQL text cannot hold them, so one would otherwise surface as a 500)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import Query, Request
from pydantic import AwareDatetime, BeforeValidator, WithJsonSchema

from database.errors import InvalidInputError
from database.repositories.pagination import CURSOR_PATTERN, MAX_CURSOR_LENGTH

MAX_PAGE = 200

PageLimit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="rows per page")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=MAX_CURSOR_LENGTH,
        pattern=CURSOR_PATTERN,
        description="`next_cursor` of the previous page of the same listing",
    ),
]

# What a timestamp parameter must look like: a calendar date-time with an explicit offset.
# Numbers (pydantic would read `-1.1` or `1e30` as Unix time) and bare dates are refused.
ISO_DATETIME_PATTERN = (
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?([Zz]|[+-]\d{2}:?\d{2})$"
)
_ISO = re.compile(ISO_DATETIME_PATTERN)


def _iso_only(value: object) -> object:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO.fullmatch(value):
        raise ValueError("must be an ISO 8601 date-time with a time zone, e.g. 2026-05-01T00:00Z")
    return value


IsoDateTime = Annotated[
    AwareDatetime,
    BeforeValidator(_iso_only),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": ISO_DATETIME_PATTERN}),
]


def _nul_path(value: Any, path: list[str | int]) -> list[str | int] | None:
    """Where in a JSON document a string (or key) holds a NUL character."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                return [*path, key]
            found = _nul_path(item, [*path, key])
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_path(item, [*path, index])
            if found is not None:
                return found
    return None


def _refuse(loc: list[str | int]) -> InvalidInputError:
    rule = "must not contain NUL characters"
    field = ".".join(str(part) for part in loc[1:]) or str(loc[0])
    return InvalidInputError(field=field, rule=rule,
                             errors=[{"loc": loc, "msg": rule, "type": "string_nul"}])  # fmt: skip


async def refuse_nul(request: Request) -> None:
    """App-wide dependency: a NUL character in the path, a query parameter or a JSON body is a
    422 naming where it was, before any handler or database sees it."""
    for name, value in request.path_params.items():
        if isinstance(value, str) and "\x00" in value:
            raise _refuse(["path", name])
    for name, value in request.query_params.multi_items():
        if "\x00" in value or "\x00" in name:
            raise _refuse(["query", name])
    body = await request.body()
    if b"\\u0000" in body or b"\x00" in body:  # cheap test first; then find where
        try:
            document = json.loads(body)
        except ValueError:
            return  # not JSON: FastAPI's own validation answers
        found = _nul_path(document, ["body"])
        if found is not None:
            raise _refuse(found)
