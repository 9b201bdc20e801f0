"""The read API through HTTP: filters, keyset pages, errors, roles, OpenAPI."""

from __future__ import annotations

import re
import socket
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import event, text
from sqlalchemy.engine import URL

from database.sessions import Database
from database.settings import load_settings
from service_kit.tokens import TokenVerifier
from whale_tracker.api import create_app
from whale_tracker.ingest.generate import write
from whale_tracker.ingest.pipeline import IngestOptions, ingest
from whale_tracker.ingest.sources import Format

SECRET = "test-jwt-secret-with-enough-length-for-hs256"


def token(sub: uuid.UUID | None = None, **overrides: Any) -> str:
    claims = {"sub": str(sub or uuid.uuid4()), "aud": "authenticated", "role": "authenticated",
              "exp": int(time.time()) + 600, **overrides}  # fmt: skip
    return jwt.encode(claims, SECRET, algorithm="HS256")


FORGED = jwt.encode(
    {"sub": str(uuid.uuid4()), "aud": "authenticated", "exp": 9_999_999_999},
    "a-different-secret-of-sufficient-length",
    algorithm="HS256",
)


@pytest.fixture
def client(database: Database) -> Iterator[TestClient]:
    app = create_app(database=database, verifier=TokenVerifier(jwt_secret=SecretStr(SECRET)))
    with TestClient(app) as c:
        yield c


@pytest.fixture
def signed_in(database: Database) -> uuid.UUID:
    """A user that exists in auth.users (a token's user must)."""
    with database.service_session() as s:
        return s.execute(  # type: ignore[no-any-return]
            text("insert into auth.users (id) values (gen_random_uuid()) returning id")
        ).scalar_one()


@pytest.fixture
def loaded(database: Database, tmp_path: Path) -> int:
    path = tmp_path / "feed.jsonl"
    with path.open("w") as out:
        write(out, Format.JSONL, 250, seed=11)
    return ingest([str(path)], database=database,
                  options=IngestOptions(eth_usd=Decimal(3000), rejects=None)).inserted  # fmt: skip


def test_pages_cover_everything_once_newest_first(client: TestClient, loaded: int) -> None:
    seen: list[str] = []
    stamps: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 40} | ({"cursor": cursor} if cursor else {})
        body = client.get("/whale-transactions", params=params).json()
        seen += [t["hash"] for t in body["data"]]
        stamps += [t["block_timestamp"] for t in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == loaded == len(set(seen))
    assert stamps == sorted(stamps, reverse=True)


def test_filters(client: TestClient, loaded: int) -> None:
    big = client.get("/whale-transactions", params={"min_value_eth": "1000", "limit": 200}).json()
    assert big["data"] and all(Decimal(t["value_eth"]) >= 1000 for t in big["data"])
    usd = client.get(
        "/whale-transactions", params={"min_value_usd": "3000000", "limit": 200}
    ).json()
    assert {t["hash"] for t in usd["data"]} == {t["hash"] for t in big["data"]}
    one = big["data"][0]
    mine = client.get("/whale-transactions", params={"address": one["from_address"].upper()}).json()
    assert mine["data"] and all(
        one["from_address"] in (t["from_address"], t["to_address"]) for t in mine["data"]
    )
    window = {
        "since": one["block_timestamp"],
        "until": one["block_timestamp"].replace("+00:00", ".000001+00:00"),
    }
    in_window = client.get("/whale-transactions", params=window).json()["data"]
    assert all(t["block_timestamp"] == one["block_timestamp"] for t in in_window)
    scored = client.get("/whale-transactions", params={"min_score": "0.5"}).json()["data"]
    assert all(Decimal(t["whale_score"]) >= Decimal("0.5") for t in scored)
    assert client.get("/whale-transactions", params={"chain": "arbitrum"}).json()["data"] == []
    zero = client.get("/whale-transactions", params={"limit": 200}).json()["data"]
    assert all("E" not in t["value_eth"] for t in zero)  # plain notation, also for zero


def test_one_by_hash_and_daily_stats(client: TestClient, loaded: int) -> None:
    first = client.get("/whale-transactions", params={"limit": 1}).json()["data"][0]
    got = client.get(f"/whale-transactions/{first['hash'].upper()}")
    assert got.status_code == 200 and got.json()["id"] == first["id"]
    assert client.get("/whale-transactions/0x" + "0" * 64).status_code == 404
    stats = client.get("/stats/daily").json()
    assert sum(day["transactions"] for day in stats) == loaded
    top = client.get("/whale-transactions/top", params={"limit": 5}).json()
    scores = [row["whale_score"] for row in top]
    page = client.get("/whale-transactions", params={"limit": 200}).json()
    more = client.get("/whale-transactions", params={"cursor": page["next_cursor"]}).json()
    everything = page["data"] + more["data"]
    assert len(everything) == loaded
    best = sorted((row["whale_score"] for row in everything), key=float, reverse=True)[:5]
    assert len(top) == 5 and [float(x) for x in scores] == [float(x) for x in best]


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/whale-transactions?min_value_eth=-1", "min_value_eth"),
        ("/whale-transactions?address=0x123", "address"),
        ("/whale-transactions?since=yesterday", "since"),
        ("/whale-transactions?since=2026-01-01T00:00:00", "since"),
        ("/whale-transactions?limit=0", "limit"),
        ("/whale-transactions?chain=solana", "chain"),
        ("/whale-transactions?cursor=not-a-cursor", "cursor"),
        ("/whale-transactions/0x1234", "tx_hash"),
        # Hostile or out-of-range values: each a 422 naming the parameter, never a 500.
        ("/whale-transactions?since=-1.1", "since"),
        ("/whale-transactions?since=1e30", "since"),
        ("/whale-transactions?until=nan", "until"),
        ("/whale-transactions?since=9999999999999", "since"),
        ("/whale-transactions/top?since=-1.1", "since"),
        ("/stats/daily?until=1e30", "until"),
        ("/whale-transactions?min_value_eth=1e400", "min_value_eth"),
        ("/whale-transactions?min_value_eth=0.0000000000000000001", "min_value_eth"),
        ("/whale-transactions?min_value_usd=NaN", "min_value_usd"),
        ("/whale-transactions?min_score=1e-30", "min_score"),
        ("/whale-transactions?limit=100000000000000000000000", "limit"),
        ("/whale-transactions?chain=eth%00", "chain"),
        ("/whale-transactions?cursor=abc%00.def", "cursor"),
        ("/whale-transactions/top?cursor=%00", "cursor"),
        ("/whale-transactions/0x%00", "tx_hash"),
    ],
)
def test_bad_parameters_are_422_naming_the_field(client: TestClient, url: str, field: str) -> None:
    response = client.get(url)
    assert response.status_code == 422, response.text
    assert any(field in error["loc"] for error in response.json()["detail"]), response.text


def test_reads_run_in_the_callers_role(
    client: TestClient, database: Database, loaded: int, signed_in: uuid.UUID
) -> None:
    roles: list[str] = []

    def spy(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        found = re.match(r"select set_config\('role', '(\w+)', true\)", statement)
        if found:
            roles.append(found[1])

    # Listings run in read sessions: on the API URL itself when there is no read replica.
    engine = database.async_read_api_engines[0].sync_engine
    event.listen(engine, "before_cursor_execute", spy)
    try:
        anon = client.get("/whale-transactions", params={"limit": 5})
        user = client.get("/whale-transactions", params={"limit": 5},
                          headers={"Authorization": f"Bearer {token(signed_in)}"})  # fmt: skip
    finally:
        event.remove(engine, "before_cursor_execute", spy)
    assert engine.url == database.api_url
    assert anon.json() == user.json()  # public data: both see it
    assert roles == ["anon", "authenticated"]


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (f"Bearer {token(exp=int(time.time()) - 3600)}", "expired"),
        (f"Bearer {token(aud='somebody-else')}", "audience"),
        (f"Bearer {FORGED}", "signature"),
        ("Bearer not.a.token", "malformed"),
        ("Basic abc", "Bearer"),
    ],
)
def test_bad_tokens_are_401(client: TestClient, header: str, reason: str) -> None:
    response = client.get("/whale-transactions", headers={"Authorization": header})
    assert response.status_code == 401
    assert reason in response.json()["detail"]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_database_down_is_503_with_a_clear_body() -> None:
    url = URL.create("postgresql+psycopg", username="app", host="127.0.0.1",
                     port=_closed_port(), database="postgres")  # fmt: skip
    down = Database(settings=load_settings(), url=url)
    with TestClient(create_app(database=down)) as c:
        for path in ("/whale-transactions", "/health"):
            response = c.get(path)
            assert response.status_code == 503
            assert response.json()["detail"] == "database unavailable"
            # Where the database lives and why it failed belong in the server log only.
            assert str(url.port) not in response.text


def test_openapi_reflects_the_package_models(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert {"WhaleTransactionPublic", "WhaleTransactionsPublic", "WhaleDailyStats"} <= set(schemas)
    params = {p["name"] for p in spec["paths"]["/whale-transactions"]["get"]["parameters"]}
    assert {"chain", "address", "min_value_eth", "min_value_usd", "since", "until", "min_score",
            "limit", "cursor"} <= params  # fmt: skip


def test_health_tells_only_up_or_down(client: TestClient, signed_in: uuid.UUID) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    # Not even a signed-in user learns the server's version, latency or pool.
    mine = client.get("/health", headers={"Authorization": f"Bearer {token(signed_in)}"})
    assert mine.json() == {"status": "ok"}


@pytest.mark.parametrize(
    "spell", [str.upper, lambda u: u.replace("-", ""), lambda u: "{" + u + "}"]
)
def test_tokens_must_name_an_existing_user_spelled_canonically(
    client: TestClient, signed_in: uuid.UUID, spell: Any
) -> None:
    bearer = {"Authorization": f"Bearer {token(spell(str(signed_in)))}"}
    response = client.get("/whale-transactions", headers=bearer)
    assert response.status_code == 401 and "subject" in response.json()["detail"]
    ghost = {"Authorization": f"Bearer {token(uuid.uuid4())}"}
    response = client.get("/whale-transactions", headers=ghost)
    assert response.json() == {"detail": "token's user does not exist"}
    assert response.status_code == 401
    assert client.get("/whale-transactions").status_code == 200  # anonymous is fine


def test_cursors_are_signed(client: TestClient, loaded: int) -> None:
    cursor = client.get("/whale-transactions", params={"limit": 5}).json()["next_cursor"]
    body, _, mac = cursor.partition(".")
    forged = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + mac
    response = client.get("/whale-transactions", params={"cursor": forged})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == [
        "query", "cursor"
    ]  # fmt: skip


def test_the_document_declares_every_status_and_pattern(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            declared = set(operation["responses"])
            expected = {"413", "422", "503"} | ({"401"} if path != "/health" else set())
            assert expected <= declared, (method, path, declared)
    one = spec["paths"]["/whale-transactions/{tx_hash}"]["get"]
    assert {"404", "409"} <= set(one["responses"])
    tx_hash = {p["name"]: p for p in one["parameters"]}["tx_hash"]
    assert tx_hash["schema"]["pattern"] == "^0[xX][0-9a-fA-F]{64}$"
    listing = {p["name"]: p for p in spec["paths"]["/whale-transactions"]["get"]["parameters"]}
    assert listing["cursor"]["schema"]["anyOf"][0]["pattern"]
    assert listing["since"]["schema"]["anyOf"][0]["pattern"]
