"""The read API on a real streaming standby (the plugin's `standby_url`): listings, top and
daily stats are served by the replica, the detail by hash by the primary. Shown with replay
paused on the standby: a transaction committed on the primary is then in the detail at once,
and in the listings only after the standby has replayed it. (Without DATABASE_READ_URL, the
other API tests run the same endpoints against the primary.)"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import jwt
import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.engine import URL

from database.connect import conninfo
from database.sessions import Database
from database.settings import load_settings
from database_tools.factories import WhaleTransactionFactory, tx_hash
from database_tools.identities import create_auth_user
from database_tools.standby import wait_replayed
from service_kit.tokens import TokenVerifier
from whale_tracker.api import create_app

SECRET = "test-jwt-secret-with-enough-length-for-hs256"


@pytest.fixture
def replica_client(database_url: URL, standby_url: URL) -> Iterator[TestClient]:
    settings = load_settings(database_read_url=conninfo(standby_url))
    database = Database(settings=settings, url=database_url)
    app = create_app(database=database, verifier=TokenVerifier(jwt_secret=SecretStr(SECRET)))
    with TestClient(app) as client:
        yield client
    database.dispose()


def _seen(client: TestClient, hash_: str) -> dict[str, bool]:
    """Which endpoints show the transaction (the table holds only this test's rows)."""
    listing = client.get("/whale-transactions", params={"limit": 200}).json()["data"]
    top = client.get("/whale-transactions/top", params={"limit": 100}).json()
    stats = client.get("/stats/daily").json()
    return {
        "list": any(t["hash"] == hash_ for t in listing),
        "top": any(t["hash"] == hash_ for t in top),
        "stats": sum(day["transactions"] for day in stats) == 1,
        "detail": client.get(f"/whale-transactions/{hash_}").status_code == 200,
    }


def test_listings_come_from_the_standby_and_the_detail_from_the_primary(
    replica_client: TestClient, database: Database, database_url: URL, standby_url: URL
) -> None:
    hash_ = tx_hash(uuid.uuid4().int)
    wait_replayed(standby=standby_url, primary=database_url)  # the truncate of the last test
    with psycopg.connect(conninfo(standby_url), autocommit=True) as standby:
        standby.execute("select pg_wal_replay_pause()")
        try:
            with database.service_session() as s:
                s.add(WhaleTransactionFactory.build(hash=hash_))
            assert _seen(replica_client, hash_) == {
                "list": False, "top": False, "stats": False, "detail": True,
            }  # fmt: skip
        finally:
            standby.execute("select pg_wal_replay_resume()")
    wait_replayed(standby=standby_url, primary=database_url)
    assert all(_seen(replica_client, hash_).values())


def _bearer(user: uuid.UUID) -> dict[str, str]:
    claims = {"sub": str(user), "aud": "authenticated", "role": "authenticated",
              "exp": int(time.time()) + 600}  # fmt: skip
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


def test_a_user_the_standby_has_not_replayed_yet_reads_from_the_primary(
    replica_client: TestClient, database: Database, database_url: URL, standby_url: URL
) -> None:
    """The token's user is looked up where the read runs. One signed up a moment ago is not on
    the standby yet: the listing (one round trip) and the session reads (top, stats) then ask
    the primary, instead of answering 401 until replay catches up. A user known nowhere is
    still a 401."""
    wait_replayed(standby=standby_url, primary=database_url)
    paths = ("/whale-transactions", "/whale-transactions/top", "/stats/daily")
    with psycopg.connect(conninfo(standby_url), autocommit=True) as standby:
        standby.execute("select pg_wal_replay_pause()")
        try:
            with database.service_session() as s:
                new = create_auth_user(s.connection())
                s.add(WhaleTransactionFactory.build())  # on the primary only, for now
            for path in paths:
                got = replica_client.get(path, headers=_bearer(new))
                assert got.status_code == 200, (path, got.text)
            # Read on the primary: it sees what the standby does not have yet.
            assert len(replica_client.get(paths[0], headers=_bearer(new)).json()["data"]) == 1
            for path in paths:
                assert replica_client.get(path, headers=_bearer(uuid.uuid4())).status_code == 401
        finally:
            standby.execute("select pg_wal_replay_resume()")
