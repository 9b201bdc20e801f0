"""Repository pages (table rows) to response pages (Public models), in one step."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from database.schema.base import Page

PageT = TypeVar("PageT", bound=Page[Any])


def public_page(page: Page[Any], response: type[PageT]) -> PageT:
    """`page` (rows from a repository) as `response`, a `Page[XPublic]` subclass."""
    item: type[BaseModel] = response.model_fields["data"].annotation.__args__[0]  # type: ignore[union-attr]
    return response(
        data=[item.model_validate(row) for row in page.data], next_cursor=page.next_cursor
    )
