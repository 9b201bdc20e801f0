"""What the database does by itself: updated_at, change notification, realtime publication."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL
from sqlmodel import Session

from database.connect import conninfo
from database.schema.base import build_row
from database.schema.whales import NOTIFY_CHANNEL, WhaleTransaction
from database.sessions import Database
from database_tools.factories import AlertFactory, WhaleTransactionFactory, new_auth_user
from database_tools.identities import Identity


def test_updated_at_is_kept_current_by_the_database(
    db_session: Session, db_connection: Connection, identity: Identity
) -> None:
    owner = new_auth_user()
    alert = AlertFactory(user_id=owner)
    db_connection.execute(
        text(
            "update alerts set updated_at = '2000-01-01Z', created_at = '2000-01-01Z' where id = :i"
        ),
        {"i": alert.id},
    )
    # An ordinary update by the owner, through RLS, with no mention of updated_at.
    with identity.as_user(owner):
        db_connection.execute(
            text("update alerts set enabled = false where id = :id"), {"id": alert.id}
        )
    created, updated = db_connection.execute(
        text(
            "select created_at, updated_at > now() - interval '1 minute' from alerts where id = :id"
        ),
        {"id": alert.id},
    ).one()
    assert created.year == 2000 and updated is True


@pytest.fixture
def listener(database_url: URL) -> Iterator[psycopg.Connection[object]]:
    conn = psycopg.connect(conninfo(database_url), autocommit=True)
    conn.execute(f"listen {NOTIFY_CHANNEL}")
    yield conn
    conn.close()


def test_one_notification_per_insert_statement(
    database: Database, listener: psycopg.Connection[object]
) -> None:
    rows = [
        build_row(WhaleTransaction, WhaleTransactionFactory.build()).model_dump() for _ in range(51)
    ]
    table = WhaleTransaction.__table__  # type: ignore[attr-defined]
    try:
        with database.service_session() as session:
            session.execute(table.insert().values(rows[:50]))  # one statement, 50 rows
        with database.service_session() as session:
            session.execute(table.insert().values(rows[50:]))  # one statement, 1 row
        received = list(listener.notifies(timeout=1.0))
    finally:
        with database.service_session() as session:
            session.execute(
                text("delete from whale_transactions where hash = any(:h)"),
                {"h": [r["hash"] for r in rows]},
            )
    assert [n.channel for n in received] == [NOTIFY_CHANNEL, NOTIFY_CHANNEL]


def test_whale_transactions_are_in_the_realtime_publication(db_connection: Connection) -> None:
    tables = db_connection.execute(
        text("select tablename from pg_publication_tables where pubname = 'supabase_realtime'")
    ).scalars()
    assert list(tables) == ["whale_transactions"]


def test_rows_inserted_by_plain_sql_get_ids_and_timestamps(
    db_session: Session, db_connection: Connection
) -> None:
    row = WhaleTransactionFactory.build()
    db_connection.execute(
        text(
            "insert into whale_transactions (hash, from_address, value_eth, gas_price,"
            " block_number, block_timestamp, whale_score) values (:h, :f, 1, 1, 1, now(), 0.5)"
        ),
        {"h": row.hash, "f": row.from_address},
    )
    got = db_connection.execute(
        text("select id, chain, created_at from whale_transactions where hash = :h"),
        {"h": row.hash},
    ).one()
    assert isinstance(got.id, uuid.UUID) and got.chain == "ethereum" and got.created_at is not None
