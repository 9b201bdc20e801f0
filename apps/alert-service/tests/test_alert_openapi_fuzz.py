"""schemathesis against the alert service's own OpenAPI document, over real HTTP (uvicorn on
loopback) on the real test database, as a signed-in user who has rules and events: bounded
examples per operation. No 5xx, and every answer (status, content type, body) is one the
document declares."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import text
from sqlalchemy.engine import make_url

from alert_service.api import create_app
from database.sessions import Database
from database.settings import load_settings
from database_tools.loopback import serve
from service_kit.tokens import TokenVerifier

SECRET = "alert-fuzz-secret-long-enough-for-hs256-tokens"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]  # fmt: skip

# The document does not depend on the database: built from an app that never connects.
_OFFLINE = Database(settings=load_settings(), url=make_url("postgresql+psycopg://x@127.0.0.1/x"))
schema = schemathesis.openapi.from_dict(create_app(database=_OFFLINE).openapi())


@pytest.fixture(scope="module")
def alert_url(database: Database) -> Iterator[str]:
    app = create_app(database=database, verifier=TokenVerifier(jwt_secret=SecretStr(SECRET)))
    with serve(app) as url:
        yield url


@pytest.fixture
def signed_in(database: Database) -> dict[str, str]:
    """A user with one rule and one event, and a valid token for them."""
    with database.service_session() as s:
        user = s.execute(
            text("insert into auth.users (id) values (gen_random_uuid()) returning id")
        ).scalar_one()
        rule = s.execute(
            text(
                "insert into alerts (user_id, name, alert_type, conditions) values (:u, 'r',"
                ' \'whale_transaction\', \'{"alert_type": "whale_transaction", "chain": "base"}\')'
                " returning id"
            ),
            {"u": user},
        ).scalar_one()
        s.execute(text("insert into alert_events (alert_id, user_id, source, source_id)"
                       " values (:a, :u, 'whale_transactions', gen_random_uuid())"),
                  {"a": rule, "u": user})  # fmt: skip
    token = jwt.encode({"sub": str(user), "aud": "authenticated", "exp": int(time.time()) + 600},
                       SECRET, algorithm="HS256")  # fmt: skip
    return {"Authorization": f"Bearer {token}"}


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_alert_api_answers_as_documented(
    case: Any, alert_url: str, signed_in: dict[str, str]
) -> None:
    case.call_and_validate(base_url=alert_url, checks=CHECKS, headers=signed_in)
