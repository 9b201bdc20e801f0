"""The test harness itself: per-test rollback, identity switching, auth users."""

from __future__ import annotations

import uuid

import psycopg
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL
from sqlmodel import Session

from database.connect import conninfo
from database_tools.identities import Identity


def test_commit_in_code_under_test_stays_inside_the_test_transaction(
    db_session: Session, db_connection: Connection, database_url: URL
) -> None:
    uid = uuid.uuid4()
    db_session.execute(
        text("insert into auth.users (id, email) values (:id, :e)"), {"id": uid, "e": f"{uid}@x"}
    )
    db_session.commit()  # what application code does
    seen_here = db_connection.execute(
        text("select count(*) from auth.users where id = :id"), {"id": uid}
    ).scalar_one()
    with psycopg.connect(conninfo(database_url)) as other:
        seen_elsewhere = other.execute("select count(*) from auth.users where id = %s", (uid,))
        count_elsewhere = seen_elsewhere.fetchone()
    assert seen_here == 1
    assert count_elsewhere == (0,)


def test_identity_switches_and_restores(identity: Identity, db_connection: Connection) -> None:
    uid = uuid.uuid4()
    probe = text("select current_user, auth.uid(), auth.role()")
    owner = db_connection.execute(probe).one()[0]
    with identity.as_user(uid, email="u@example.test"):
        assert tuple(db_connection.execute(probe).one()) == ("authenticated", uid, "authenticated")
    with identity.as_anon():
        assert tuple(db_connection.execute(probe).one()) == ("anon", None, "anon")
    with identity.as_service():
        assert tuple(db_connection.execute(probe).one()) == ("service_role", None, "service_role")
    assert tuple(db_connection.execute(probe).one()) == (owner, None, None)


def test_auth_user_helper(auth_user: object, db_connection: Connection) -> None:
    uid = auth_user()  # type: ignore[operator]
    email = db_connection.execute(
        text("select email from auth.users where id = :id"), {"id": uid}
    ).scalar_one()
    assert email.endswith("@example.test")
