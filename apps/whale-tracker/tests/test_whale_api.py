"""The read API through HTTP: filters, keyset pages, errors, roles, OpenAPI."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import URL

from database.repositories import WhaleTransactionRepository
from database.schema.whales import WhaleTransactionPublic, WhaleTransactionsPublic
from database.sessions import Database
from database.settings import load_settings
from database_tools.locks import wait_for_lock_waiter
from database_tools.loopback import serve
from service_kit.pages import page_response, row_response
from service_kit.sessions import Caller
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
    client: TestClient, loaded: int, signed_in: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The read itself is real; this only records whom each request read as (that the read
    # runs as that role is test_public_json's).
    roles: list[str] = []
    real = Caller.read

    async def recording(caller: Caller, **kwargs: Any) -> Any:
        roles.append(caller.identity[0])
        return await real(caller, **kwargs)

    monkeypatch.setattr(Caller, "read", recording)
    anon = client.get("/whale-transactions", params={"limit": 5})
    user = client.get("/whale-transactions", params={"limit": 5},
                      headers={"Authorization": f"Bearer {token(signed_in)}"})  # fmt: skip
    assert anon.json() == user.json()  # public data: both see it
    assert len(anon.json()["data"]) == 5
    assert roles == ["anon", "authenticated"]


def test_any_offset_pydantic_accepts_reads_as_its_instant(client: TestClient, loaded: int) -> None:
    # Parameters travel as text in the query: an offset PostgreSQL would not read (+18:18) is
    # sent as the same instant in UTC, and one with no UTC instant is a 422 naming the field.
    far = client.get("/whale-transactions", params={"since": "0709-05-21T21:05:08+18:18"})
    assert far.status_code == 200, far.text
    assert len(far.json()["data"]) == 50
    edge = client.get("/whale-transactions", params={"until": "0001-01-01T00:00:00+05:00"})
    assert edge.status_code == 422, edge.text
    assert edge.json()["detail"][0]["loc"] == ["query", "until"]


def test_a_token_whose_user_is_gone_is_401_on_the_listing(client: TestClient, loaded: int) -> None:
    response = client.get(
        "/whale-transactions", headers={"Authorization": f"Bearer {token(uuid.uuid4())}"}
    )
    assert response.status_code == 401, response.text


def test_pages_are_the_repositorys_pages_as_pydantic_writes_them(
    client: TestClient, database: Database, loaded: int
) -> None:
    """The listing the server renders walks the same pages, with the same bytes, as the
    repository's rows written by pydantic (the path every other listing takes)."""
    query = {"limit": 7, "min_value_eth": "100"}
    cursor, pages = None, 0
    while True:
        response = client.get(
            "/whale-transactions", params={**query, "cursor": cursor} if cursor else query
        )
        assert response.status_code == 200, response.text
        with database.anon_session() as s:
            page = WhaleTransactionRepository(s).search(
                filters={"min_value_eth": Decimal(100)}, limit=7, cursor=cursor
            )
        expected = page_response(page, WhaleTransactionsPublic).body
        assert response.content == expected
        pages += 1
        cursor = response.json()["next_cursor"]
        if cursor is None or pages == 4:
            break
    assert pages == 4
    one = response.json()["data"][0]["hash"]
    detail = client.get(f"/whale-transactions/{one}")
    with database.anon_session() as s:
        row = WhaleTransactionRepository(s).get_by_hash(hash=one)
    assert detail.content == row_response(row, WhaleTransactionPublic, what="x").body


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


def test_a_request_that_finds_no_pooled_connection_in_time_is_503_busy(
    database: Database,
) -> None:
    """Requests beyond the pool wait for a connection (no overflow on serving engines), up to
    DB_POOL_TIMEOUT; then a 503 saying so, with Retry-After, never a 500. Shown with a pool of
    one, held by a request waiting on a lock."""
    settings = load_settings(db_pool_size=1, db_pool_timeout=0.3)
    busy = Database(settings=settings, url=database.url)
    answers: dict[str, httpx.Response] = {}
    with serve(create_app(database=busy)) as base, database.engine.connect() as locker:
        locker.begin()
        locker.execute(text("lock table whale_transactions in access exclusive mode"))

        def first() -> None:
            answers["first"] = httpx.get(f"{base}/whale-transactions", timeout=30)

        holder = threading.Thread(target=first)
        holder.start()
        wait_for_lock_waiter(database.engine)  # the first request, holding the one connection
        second = httpx.get(f"{base}/whale-transactions", timeout=30)
        locker.rollback()
        holder.join()
    busy.dispose()
    assert second.status_code == 503
    assert second.json() == {"detail": "database busy"}
    assert second.headers["retry-after"] == "1"
    assert answers["first"].status_code == 200  # it had the connection: it waited and went on


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
