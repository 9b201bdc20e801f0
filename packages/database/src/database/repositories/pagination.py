"""Keyset pagination: stable order, opaque cursors, no OFFSET."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from database.errors import InvalidInputError


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"t": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {"u": str(value)}
    if isinstance(value, Decimal):
        return {"d": str(value)}
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        ((kind, raw),) = value.items()
        decoders: dict[str, Any] = {"t": datetime.fromisoformat, "u": uuid.UUID, "d": Decimal}
        return decoders[kind](raw)
    return value


def encode_cursor(values: Sequence[Any]) -> str:
    """The sort-key values of the last row of a page, as an opaque URL-safe string."""
    raw = json.dumps([_encode_value(v) for v in values], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *, width: int) -> list[Any]:
    """Inverse of `encode_cursor`; anything else is an InvalidInputError naming `cursor`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = [_decode_value(v) for v in json.loads(raw)]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InvalidInputError(field="cursor", rule="is not a cursor this API returned") from None
    if len(values) != width:
        raise InvalidInputError(field="cursor", rule="belongs to a different listing")
    return values
