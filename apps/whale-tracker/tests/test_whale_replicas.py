"""The read API on a real streaming standby (the plugin's `standby_url`): listings, top and
daily stats are served by the replica, the detail by hash by the primary. Shown with replay
paused on the standby: a transaction committed on the primary is then in the detail at once,
and in the listings only after the standby has replayed it. (Without DATABASE_READ_URL, the
other API tests run the same endpoints against the primary.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.engine import URL

from database.connect import conninfo
from database.sessions import Database
from database.settings import load_settings
from database_tools.factories import WhaleTransactionFactory, tx_hash
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
