"""schemathesis against the whale-tracker's own OpenAPI document, over real HTTP (uvicorn on
loopback) on the real test database: bounded examples per operation, anonymous and signed-in.
No 5xx, and every answer (status, content type, body) is one the document declares."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
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

from database.sessions import Database
from database.settings import load_settings
from database_tools.loopback import serve
from service_kit.tokens import TokenVerifier
from whale_tracker.api import create_app
from whale_tracker.ingest.generate import write
from whale_tracker.ingest.pipeline import IngestOptions, ingest
from whale_tracker.ingest.sources import Format

SECRET = "whale-fuzz-secret-long-enough-for-hs256-tokens"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]  # fmt: skip

# The document does not depend on the database: built from an app that never connects.
_OFFLINE = Database(settings=load_settings(), url=make_url("postgresql+psycopg://x@127.0.0.1/x"))
schema = schemathesis.openapi.from_dict(create_app(database=_OFFLINE).openapi())


@pytest.fixture(scope="module")
def whale_url(database: Database) -> Iterator[str]:
    app = create_app(database=database, verifier=TokenVerifier(jwt_secret=SecretStr(SECRET)))
    with serve(app) as url:
        yield url


@pytest.fixture
def signed_in(database: Database, tmp_path: Path) -> dict[str, str]:
    """Some transactions to read, and a valid token of a user who exists."""
    path = tmp_path / "feed.jsonl"
    with path.open("w") as out:
        write(out, Format.JSONL, 30, seed=5)
    ingest([str(path)], database=database,
           options=IngestOptions(eth_usd=Decimal(3000), rejects=None))  # fmt: skip
    with database.service_session() as s:
        user = s.execute(
            text("insert into auth.users (id) values (gen_random_uuid()) returning id")
        ).scalar_one()
    token = jwt.encode({"sub": str(user), "aud": "authenticated", "exp": int(time.time()) + 600},
                       SECRET, algorithm="HS256")  # fmt: skip
    return {"Authorization": f"Bearer {token}"}


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_whale_api_answers_as_documented(
    case: Any, whale_url: str, signed_in: dict[str, str]
) -> None:
    case.call_and_validate(base_url=whale_url, checks=CHECKS)
    case.call_and_validate(base_url=whale_url, checks=CHECKS, headers=signed_in)
