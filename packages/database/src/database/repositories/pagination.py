"""Keyset pagination: stable order, opaque signed cursors, no OFFSET.

A cursor carries the sort-key values of the last row of a page and the listing it belongs to
(table, sort columns, direction), signed with HMAC-SHA256 under `CURSOR_SIGNING_KEY`. A client
can neither forge nor edit one (it would steer a keyset comparison with values of its choice),
and a cursor from another listing is refused rather than misread. Without the setting a random
key is drawn per process: cursors then stay valid only within the process that issued them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from database.errors import ConfigurationError, InvalidInputError
from database.settings import get_settings

_PROCESS_KEY = os.urandom(32)
_MAC_BYTES = 16
MAX_CURSOR_LENGTH = 512
#: What a cursor looks like (for API documents): base64url payload, a dot, base64url MAC.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{1,480}\.[A-Za-z0-9_-]{22}$"


def _key() -> bytes:
    try:
        configured = get_settings().cursor_signing_key
    except ConfigurationError:  # settings that fail to load fail elsewhere, loudly
        configured = None
    if configured is None:
        return _PROCESS_KEY
    return configured.get_secret_value().encode()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(payload: bytes) -> bytes:
    return hmac.new(_key(), payload, hashlib.sha256).digest()[:_MAC_BYTES]


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


def encode_cursor(values: Sequence[Any], *, listing: str) -> str:
    """The sort-key values of the last row of a page, signed and bound to `listing`."""
    payload = json.dumps(
        {"l": listing, "v": [_encode_value(v) for v in values]}, separators=(",", ":")
    ).encode()
    return f"{_b64(payload)}.{_b64(_mac(payload))}"


def decode_cursor(cursor: str, *, width: int, listing: str) -> list[Any]:
    """Inverse of `encode_cursor`. A cursor this process's key did not sign, or one of another
    listing, is an InvalidInputError naming `cursor` (a 422, never a 500)."""
    foreign = InvalidInputError(field="cursor", rule="is not a cursor this API returned")
    body, dot, signature = cursor.partition(".")
    if not dot or len(cursor) > MAX_CURSOR_LENGTH:
        raise foreign
    try:
        payload, mac = _unb64(body), _unb64(signature)
    except ValueError:
        raise foreign from None
    if not hmac.compare_digest(mac, _mac(payload)):
        raise foreign
    try:
        document = json.loads(payload)
        owner, values = document["l"], [_decode_value(v) for v in document["v"]]
    except (ValueError, KeyError, TypeError, AttributeError):  # signed, so only an old format
        raise foreign from None
    if owner != listing or len(values) != width:
        raise InvalidInputError(field="cursor", rule="belongs to a different listing")
    return values
