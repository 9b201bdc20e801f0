"""The rules API through HTTP with real signed tokens (HS256, and ES256 against a JWKS served on
loopback): isolation between users is the database's doing, and bad tokens are 401."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import text

from alert_service.api import MAX_BODY_BYTES, create_app
from database.schema.alerts import MAX_RULES_PER_USER
from database.sessions import Database
from service_kit.egress import TargetPolicy
from service_kit.tokens import TokenVerifier

SECRET = "alert-service-test-secret-long-enough-for-hs256"
RULE = {
    "name": "big ones",
    "alert_type": "whale_transaction",
    "conditions": {"min_value_eth": "500"},
}


def hs256(user: uuid.UUID, **overrides: Any) -> str:
    claims = {
        "sub": str(user),
        "aud": "authenticated",
        "role": "authenticated",
        "exp": int(time.time()) + 600,
        **overrides,
    }
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture
def new_user(database: Database) -> Callable[[], uuid.UUID]:
    def make() -> uuid.UUID:
        with database.service_session() as s:
            return s.execute(  # type: ignore[no-any-return]
                text(
                    "insert into auth.users (id, email) values (gen_random_uuid(), :e) returning id"
                ),
                {"e": f"{uuid.uuid4().hex[:10]}@test.example"},
            ).scalar_one()

    return make


class _JWKS(BaseHTTPRequestHandler):
    keys: dict[str, Any] = {}
    fetches = 0

    def do_GET(self) -> None:
        type(self).fetches += 1
        body = json.dumps(self.keys).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, ec.EllipticCurvePrivateKey]]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    _JWKS.keys = {"keys": [{**public, "kid": "key-1", "alg": "ES256", "use": "sig"}]}
    _JWKS.fetches = 0
    server = HTTPServer(("127.0.0.1", 0), _JWKS)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/auth/v1/.well-known/jwks.json", key
    server.shutdown()


#: What webhook host names resolve to in these tests (no network needed): one public name,
#: one an internal DNS would give a private address, one on the metadata address.
NAMES = {
    "hooks.example": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "intranet.example": ["10.20.30.40"],
    "metadata.example": ["169.254.169.254"],
}


def resolve(host: str, port: int) -> list[str]:
    if host not in NAMES:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return NAMES[host]


@pytest.fixture
def client(database: Database, jwks_server: tuple[str, Any]) -> Iterator[TestClient]:
    verifier = TokenVerifier(jwt_secret=SecretStr(SECRET), jwks_url=jwks_server[0])
    targets = TargetPolicy(resolver=resolve)
    with TestClient(create_app(database=database, verifier=verifier, targets=targets)) as c:
        yield c


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_user_a_cannot_see_or_touch_user_bs_rules_or_events(
    client: TestClient, new_user: Callable[[], uuid.UUID], database: Database
) -> None:
    a, b = new_user(), new_user()
    mine = client.post("/alerts", json=RULE, headers=auth(hs256(a)))
    assert mine.status_code == 201, mine.text
    theirs = client.post("/alerts", json=RULE, headers=auth(hs256(b))).json()
    assert mine.json()["user_id"] == str(a)
    as_a = auth(hs256(a))
    assert [r["id"] for r in client.get("/alerts", headers=as_a).json()["data"]] == [
        mine.json()["id"]
    ]
    assert client.get(f"/alerts/{theirs['id']}", headers=as_a).status_code == 404
    assert (
        client.patch(f"/alerts/{theirs['id']}", json={"name": "mine now"}, headers=as_a).status_code
        == 404
    )
    assert client.delete(f"/alerts/{theirs['id']}", headers=as_a).status_code == 404
    with database.service_session() as s:  # events exist for both; a reads only its own
        for rule in (mine.json(), theirs):
            s.execute(
                text(
                    "insert into alert_events (alert_id, user_id, source, source_id)"
                    " values (:a, :u, 'market_data', gen_random_uuid())"
                ),
                {"a": rule["id"], "u": rule["user_id"]},
            )
    events = client.get("/alert-events", headers=as_a).json()["data"]
    assert [e["alert_id"] for e in events] == [mine.json()["id"]]
    still = client.get(f"/alerts/{theirs['id']}", headers=auth(hs256(b))).json()
    assert still["name"] == RULE["name"]


def test_crud_of_own_rules(client: TestClient, new_user: Callable[[], uuid.UUID]) -> None:
    me = auth(hs256(new_user()))
    created = client.post(
        "/alerts",
        json={
            **RULE,
            "channels": [{"type": "in_app"}, {"type": "webhook", "url": "https://hooks.example/x"}],
        },
        headers=me,
    )
    assert created.status_code == 201
    body = created.json()
    assert len(body["webhook_secret"]) == 64  # shown once
    rid = body["id"]
    assert "webhook_secret" not in client.get(f"/alerts/{rid}", headers=me).json()
    patched = client.patch(
        f"/alerts/{rid}", json={"enabled": False, "cooldown_seconds": 60}, headers=me
    )
    assert patched.status_code == 200 and patched.json()["enabled"] is False
    assert patched.json()["name"] == RULE["name"]
    assert client.delete(f"/alerts/{rid}", headers=me).status_code == 204
    assert client.get(f"/alerts/{rid}", headers=me).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**RULE, "conditions": {"min_value_eth": "500", "colour": "red"}}, "colour"),
        ({**RULE, "conditions": {"min_value_eth": "-5"}}, "min_value_eth"),
        ({**RULE, "conditions": {"addresses": ["0xnope"]}}, "addresses"),
        ({**RULE, "channels": [{"type": "webhook", "url": "http://insecure.example"}]}, "url"),
        ({**RULE, "cooldown_seconds": -1}, "cooldown_seconds"),
        ({**RULE, "alert_type": "moon_landing"}, "alert_type"),
    ],
)
def test_bad_rules_are_422_naming_the_field(
    client: TestClient, new_user: Callable[[], uuid.UUID], body: dict[str, Any], field: str
) -> None:
    response = client.post("/alerts", json=body, headers=auth(hs256(new_user())))
    assert response.status_code == 422
    assert any(field in map(str, e["loc"]) for e in response.json()["detail"]), response.text


def test_limits(client: TestClient, new_user: Callable[[], uuid.UUID], database: Database) -> None:
    uid = new_user()
    with database.service_session() as s:
        s.execute(
            text(
                "insert into alerts (user_id, name, alert_type, conditions) select :u, 'r' || g,"
                ' \'whale_transaction\', \'{"alert_type": "whale_transaction", "chain": "base"}\''
                " from generate_series(1, :n) g"
            ),
            {"u": uid, "n": MAX_RULES_PER_USER},
        )
    full = client.post("/alerts", json=RULE, headers=auth(hs256(uid)))
    assert full.status_code == 409 and "rule limit" in full.json()["detail"]
    huge = {**RULE, "name": "x" * (MAX_BODY_BYTES + 1)}
    assert client.post("/alerts", json=huge, headers=auth(hs256(new_user()))).status_code == 413


def test_es256_tokens_from_the_jwks(
    client: TestClient, jwks_server: tuple[str, Any], new_user: Callable[[], uuid.UUID]
) -> None:
    _, key = jwks_server
    uid = new_user()
    claims = {"sub": str(uid), "aud": "authenticated", "exp": int(time.time()) + 600}
    good = jwt.encode(claims, key, algorithm="ES256", headers={"kid": "key-1"})
    assert client.post("/alerts", json=RULE, headers=auth(good)).status_code == 201
    assert client.get("/alerts", headers=auth(good)).status_code == 200
    assert _JWKS.fetches == 1  # cached
    unknown = jwt.encode(claims, key, algorithm="ES256", headers={"kid": "key-2"})
    response = client.get("/alerts", headers=auth(unknown))
    assert response.status_code == 401 and "unknown key" in response.json()["detail"]
    other = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode(claims, other, algorithm="ES256", headers={"kid": "key-1"})
    assert client.get("/alerts", headers=auth(forged)).status_code == 401


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda u: hs256(u, exp=int(time.time()) - 3600), "expired"),
        (lambda u: hs256(u, aud="anon"), "audience"),
        (
            lambda u: jwt.encode(
                {"sub": str(u), "aud": "authenticated", "exp": 9_999_999_999},
                "some-other-secret-that-is-long-enough",
                algorithm="HS256",
            ),
            "signature",
        ),
        (lambda u: hs256(u, sub="not-a-uuid"), "subject"),
        (lambda u: "garbage", "malformed"),
    ],
)
def test_bad_tokens_are_401(
    client: TestClient,
    new_user: Callable[[], uuid.UUID],
    make: Callable[[uuid.UUID], str],
    reason: str,
) -> None:
    response = client.get("/alerts", headers=auth(make(new_user())))
    assert response.status_code == 401
    assert reason in response.json()["detail"]
    assert client.get("/alerts").status_code == 401
