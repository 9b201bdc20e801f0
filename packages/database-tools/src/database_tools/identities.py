"""Switch who the test's connection is, inside the test's own transaction.

The same two transaction-local settings the package's user session uses (role and
`request.jwt.claims`), so a test sees exactly what RLS would show that caller.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, text

from database.sessions import user_claims

_SET = text(
    "select set_config('role', :role, true), set_config('request.jwt.claims', :claims, true)"
)


class Identity:
    """`as_user(uid)`, `as_anon()`, `as_service()`; each restores the owner role on exit."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def _switch(self, role: str, claims: dict[str, Any] | None) -> None:
        payload = json.dumps(claims, default=str) if claims is not None else ""
        self.connection.execute(_SET, {"role": role, "claims": payload})

    @contextmanager
    def _as(self, role: str, claims: dict[str, Any] | None) -> Iterator[Connection]:
        self._switch(role, claims)
        try:
            yield self.connection
        finally:
            if self.connection.in_transaction() and not self.connection.invalidated:
                self._switch("none", None)

    def as_user(self, user_id: uuid.UUID | str, **claims: Any) -> Any:
        """Act as signed-in user `user_id` (role authenticated, claims like Supabase Auth's)."""
        return self._as("authenticated", user_claims(user_id=user_id, **claims))

    def as_anon(self) -> Any:
        """Act as a request without a user token."""
        return self._as("anon", {"role": "anon"})

    def as_service(self) -> Any:
        """Act as the service-role key (BYPASSRLS, but only the grants service_role has)."""
        return self._as("service_role", {"role": "service_role"})


def create_auth_user(
    connection: Connection, *, user_id: uuid.UUID | None = None, email: str | None = None
) -> uuid.UUID:
    """Insert an `auth.users` row (as the owner) and return its id."""
    user_id = user_id or uuid.uuid4()
    connection.execute(
        text(
            "insert into auth.users (id, aud, role, email, raw_app_meta_data, raw_user_meta_data)"
            " values (:id, 'authenticated', 'authenticated', :email, '{}', '{}')"
        ),
        {"id": user_id, "email": email or f"{user_id.hex[:12]}@example.test"},
    )
    return user_id
