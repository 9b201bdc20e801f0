"""The rules API against hostile requests: each is a 4xx naming the problem, never a 5xx.
Webhook targets vetted when saved, the rotate endpoint, token subjects and unknown users,
tampered and foreign cursors, NUL characters, undecodable bodies, a PATCH racing a DELETE and a
chunked body over the limit (both over real HTTP on loopback), /health and the document."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import text

from alert_service.api import MAX_BODY_BYTES, create_app
from database.repositories import WhaleTransactionRepository
from database.repositories.pagination import encode_cursor
from database.sessions import Database
from database.settings import get_settings
from database_tools.loopback import serve
from service_kit.egress import TargetPolicy
from service_kit.tokens import TokenVerifier

SECRET = "alert-hostile-test-secret-long-enough-for-hs256"
RULE = {"name": "big", "alert_type": "whale_transaction", "conditions": {"min_value_eth": "500"}}
NAMES = {
    "hooks.example": ["93.184.215.14"],
    "intranet.example": ["10.20.30.40"],
    "metadata.example": ["169.254.169.254"],
    "sneaky.example": ["93.184.215.14", "127.0.0.1"],
}


def resolve(host: str, port: int) -> list[str]:
    if host not in NAMES:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return NAMES[host]


def token(sub: str, **claims: Any) -> dict[str, str]:
    payload = {"sub": sub, "aud": "authenticated", "exp": int(time.time()) + 600, **claims}
    return {"Authorization": f"Bearer {jwt.encode(payload, SECRET, algorithm='HS256')}"}


@pytest.fixture
def app(database: Database) -> Any:
    verifier = TokenVerifier(jwt_secret=SecretStr(SECRET))
    return create_app(database=database, verifier=verifier, targets=TargetPolicy(resolver=resolve))


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def new_user(database: Database) -> Callable[[], uuid.UUID]:
    def make() -> uuid.UUID:
        with database.service_session() as s:
            return s.execute(  # type: ignore[no-any-return]
                text("insert into auth.users (id) values (gen_random_uuid()) returning id")
            ).scalar_one()

    return make


@pytest.fixture
def me(new_user: Callable[[], uuid.UUID]) -> dict[str, str]:
    return token(str(new_user()))


def _hook(url: str) -> list[dict[str, str]]:
    return [{"type": "in_app"}, {"type": "webhook", "url": url}]


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook", "https://127.0.0.1:5432/", "https://[::1]/hook",
        "https://[::ffff:169.254.169.254]/latest/meta-data", "https://169.254.169.254/",
        "https://10.0.0.1:8443/x", "https://intranet.example/x", "https://metadata.example/x",
        "https://sneaky.example/x", "https://nowhere.example/x", "https://0.0.0.0/",
        "https://[fd00:ec2::254]/",
    ],
)  # fmt: skip
def test_webhook_targets_must_be_public_when_saved(
    client: TestClient, me: dict[str, str], url: str
) -> None:
    created = client.post("/alerts", json={**RULE, "channels": _hook(url)}, headers=me)
    assert created.status_code == 422, created.text
    (problem,) = created.json()["detail"]
    # An IP address is refused by the document's own rule (the database holds it too); a
    # host name that resolves to a private address, by the check when the rule is saved.
    literal = "//[" in url or url.split("//")[1].split("/")[0].split(":")[0][-1].isdigit()
    if literal:
        assert problem["loc"] == ["body", "channels", 1, "webhook", "url"], problem
        assert "no IP address" in problem["msg"]
    else:
        assert problem["loc"] == ["body", "channels", 1, "url"], problem
        assert "public HTTPS endpoint" in problem["msg"]
    rule = client.post("/alerts", json=RULE, headers=me).json()
    patched = client.patch(f"/alerts/{rule['id']}", json={"channels": _hook(url)}, headers=me)
    assert patched.status_code == 422 and patched.json()["detail"][0]["loc"][2] == 1
    assert client.get(f"/alerts/{rule['id']}", headers=me).json()["channels"] == [
        {"type": "in_app"}
    ]


def test_secret_shown_once_on_the_patch_that_adds_a_webhook_then_rotated(
    client: TestClient, me: dict[str, str], database: Database, new_user: Callable[[], uuid.UUID]
) -> None:
    rule = client.post("/alerts", json=RULE, headers=me).json()
    assert rule["webhook_secret"] is None
    rid = rule["id"]
    assert client.post(f"/alerts/{rid}/webhook-secret", headers=me).status_code == 409
    added = client.patch(
        f"/alerts/{rid}", json={"channels": _hook("https://hooks.example/x")}, headers=me
    ).json()
    first = added["webhook_secret"]
    assert len(first) == 64
    again = client.patch(f"/alerts/{rid}", json={"name": "renamed"}, headers=me).json()
    assert (
        again["webhook_secret"] is None
        and "webhook_secret" not in client.get(f"/alerts/{rid}", headers=me).json()
    )
    rotated = client.post(f"/alerts/{rid}/webhook-secret", headers=me)
    assert rotated.status_code == 200
    second = rotated.json()["webhook_secret"]
    assert len(second) == 64 and second != first
    with database.service_session() as s:
        stored = s.execute(
            text("select secret from alert_webhook_secrets where alert_id = :i"), {"i": rid}
        )
        assert stored.scalar_one() == second
    stranger = token(str(new_user()))
    assert client.post(f"/alerts/{rid}/webhook-secret", headers=stranger).status_code == 404
    assert client.post(f"/alerts/{uuid.uuid4()}/webhook-secret", headers=me).status_code == 404


@pytest.mark.parametrize(
    "spell",
    [str.upper, lambda u: u.replace("-", ""), lambda u: "{" + u + "}", lambda u: "urn:uuid:" + u],
)
def test_a_subject_not_spelled_as_supabase_does_is_401(
    client: TestClient, new_user: Callable[[], uuid.UUID], spell: Callable[[str], str]
) -> None:
    response = client.get("/alerts", headers=token(spell(str(new_user()))))
    assert response.status_code == 401 and "subject" in response.json()["detail"]


def test_a_token_of_a_user_that_does_not_exist_is_401(
    client: TestClient, database: Database, new_user: Callable[[], uuid.UUID]
) -> None:
    ghost = token(str(uuid.uuid4()))
    for response in (
        client.get("/alerts", headers=ghost),
        client.post("/alerts", json=RULE, headers=ghost),
        client.get("/alert-events", headers=ghost),
    ):
        assert response.status_code == 401, response.text
        assert response.json() == {"detail": "token's user does not exist"}
    user = new_user()
    mine = token(str(user))
    assert client.get("/alerts", headers=mine).status_code == 200
    with database.service_session() as s:
        s.execute(text("delete from auth.users where id = :u"), {"u": user})
    assert client.get("/alerts", headers=mine).status_code == 401  # the token outlived its user


def test_cursors_are_signed_and_bound_to_their_listing(
    client: TestClient, me: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(3):
        assert client.post("/alerts", json={**RULE, "name": f"r{n}"}, headers=me).status_code == 201
    cursor = client.get("/alerts", params={"limit": 1}, headers=me).json()["next_cursor"]
    assert client.get("/alerts", params={"cursor": cursor}, headers=me).status_code == 200
    body, _, mac = cursor.partition(".")
    tampered = ("B" if body[0] != "B" else "C") + body[1:] + "." + mac
    whales = encode_cursor(["2026-01-01T00:00:00+00:00", str(uuid.uuid4())],
                           listing=WhaleTransactionRepository.listing(True))  # fmt: skip
    for bad, rule in [
        (tampered, "not a cursor this API returned"),
        (body + "." + mac[::-1], "not a cursor this API returned"),
        (whales, "different listing"),
    ]:
        response = client.get("/alerts", params={"cursor": bad}, headers=me)
        assert response.status_code == 422, response.text
        (problem,) = response.json()["detail"]
        assert problem["loc"] == ["query", "cursor"] and rule in problem["msg"]
    events = client.get("/alert-events", params={"cursor": cursor}, headers=me)
    assert events.status_code == 422 and "different listing" in events.text
    # Under CURSOR_SIGNING_KEY every process signs alike; a cursor of another key is refused.
    monkeypatch.setenv("CURSOR_SIGNING_KEY", "one-key-for-every-process-of-this-api")
    get_settings.cache_clear()
    shared = client.get("/alerts", params={"limit": 1}, headers=me).json()["next_cursor"]
    assert client.get("/alerts", params={"cursor": shared}, headers=me).status_code == 200
    assert client.get("/alerts", params={"cursor": cursor}, headers=me).status_code == 422
    monkeypatch.setenv("CURSOR_SIGNING_KEY", "another-key")
    get_settings.cache_clear()
    assert client.get("/alerts", params={"cursor": shared}, headers=me).status_code == 422


def test_nul_characters_and_undecodable_bodies_are_422(
    client: TestClient, me: dict[str, str]
) -> None:
    cases = [
        (client.post("/alerts", json={**RULE, "name": "a\x00b"}, headers=me),
         ["body", "name"]),
        (client.post("/alerts", json={**RULE, "conditions": {"chain": "base\x00"}}, headers=me),
         ["body", "conditions", "chain"]),
        (client.get("/alerts", params={"cursor": "a\x00.b"}, headers=me), ["query", "cursor"]),
        (client.post("/alerts", content=b'{"name": "\xff\xfe"}', headers={
            **me, "Content-Type": "application/json"}), ["body"]),
    ]  # fmt: skip
    for response, loc in cases:
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == loc


def _locks_waiting(database: Database) -> int:
    with database.service_session() as s:
        return int(
            s.execute(
                text(
                    "select count(*) from pg_stat_activity where datname = current_database()"
                    " and wait_event_type = 'Lock' and query ilike 'update alerts%'"
                )
            ).scalar_one()
        )


def _activity(database: Database) -> list[Any]:
    with database.service_session() as s:
        return list(
            s.execute(
                text(
                    "select state, wait_event_type, wait_event, left(query, 60) from"
                    " pg_stat_activity where datname = current_database()"
                )
            ).all()
        )


def test_a_patch_racing_a_delete_is_404(app: Any, database: Database, me: dict[str, str]) -> None:
    """Deterministic: the PATCH reads the rule, then waits on the row lock of a DELETE that
    commits while it waits. Then a storm of concurrent PATCHes and DELETEs over real HTTP."""
    with serve(app) as url, httpx.Client(base_url=url, headers=me, timeout=30) as http:
        rule = http.post("/alerts", json=RULE).json()["id"]
        with database.service_session() as s:  # committed before the 201 was sent
            assert s.execute(
                text("select count(*) from alerts where id = :i"), {"i": rule}
            ).scalar()
        outcome: list[httpx.Response] = []
        with database.engine.connect() as deleting:
            deleting.execute(text("delete from alerts where id = :i"), {"i": rule})
            patch = threading.Thread(
                target=lambda: outcome.append(http.patch(f"/alerts/{rule}", json={"name": "x"}))
            )
            patch.start()
            deadline = time.monotonic() + 20
            while not _locks_waiting(database):
                assert time.monotonic() < deadline, f"the PATCH never waited: {_activity(database)}"
                assert not outcome, outcome[0].text  # answered without waiting for the row
                time.sleep(0.05)
            deleting.commit()
        patch.join(timeout=30)
        (response,) = outcome
        assert response.status_code == 404, response.text

        rules = [
            http.post("/alerts", json={**RULE, "name": f"r{n}"}).json()["id"] for n in range(40)
        ]

        def patch_one(rid: str) -> int:
            return http.patch(f"/alerts/{rid}", json={"cooldown_seconds": 5}).status_code

        def delete_one(rid: str) -> int:
            return http.delete(f"/alerts/{rid}").status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            patched = list(pool.map(patch_one, rules))
            # Interleave: every rule gets a PATCH and a DELETE at the same moment.
            mixed = [pool.submit(f, r) for r in rules for f in (patch_one, delete_one)]
            statuses = [f.result() for f in mixed]
    assert set(patched) == {200}
    assert set(statuses) <= {200, 204, 404}, statuses


def _chunked_post(base: str, headers: dict[str, str], body: bytes, chunk: int) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = (
            f"POST /alerts HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Authorization: {headers['Authorization']}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        sock.sendall(head.encode())
        try:
            for start in range(0, len(body), chunk):
                piece = body[start : start + chunk]
                sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        except OSError:  # the server may answer and close before the last chunk
            pass
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65_536)
            if not data:
                break
            answer += data
        return answer


def test_a_chunked_body_over_the_limit_is_413_on_a_real_server(
    app: Any, me: dict[str, str]
) -> None:
    small = b'{"name": "ok", "alert_type": "whale_transaction", "conditions": {"chain": "base"}}'
    padding = b" " * (MAX_BODY_BYTES + 1)
    huge = small[:-1] + padding + b"}"  # valid JSON, only too long
    with serve(app) as url:
        fine = _chunked_post(url, me, small, chunk=7)
        over = _chunked_post(url, me, huge, chunk=1024)
    assert fine.startswith(b"HTTP/1.1 201"), fine[:200]
    assert over.startswith(b"HTTP/1.1 413"), over[:200]  # no Content-Length to trust


def test_health_and_the_document(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    spec = client.get("/openapi.json").json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            declared = set(operation["responses"])
            expected = {"413", "422", "503"} | ({"401"} if path != "/health" else set())
            if "{alert_id}" in path:
                expected |= {"404"}
            assert expected <= declared, (method, path, declared)
            for status in declared - {"200", "201", "204"}:
                content = operation["responses"][status]["content"]["application/json"]
                assert content["schema"], (method, path, status)
    parameters = {p["name"]: p for p in spec["paths"]["/alerts"]["get"]["parameters"]}
    assert parameters["cursor"]["schema"]["anyOf"][0]["pattern"]
