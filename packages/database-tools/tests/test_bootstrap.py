"""The Supabase-compatibility bootstrap: auth functions, roles and grants, RLS, idempotence."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import errors as pg_errors
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ProgrammingError

from database.connect import conninfo
from database_tools.bootstrap import SupabaseDatabaseRefusedError, apply_bootstrap, run_bootstrap
from database_tools.identities import Identity


def test_auth_functions_read_the_claims_a_user_session_sets(
    identity: Identity, db_connection: Connection
) -> None:
    uid = uuid.uuid4()
    with identity.as_user(uid, email="x@example.test", app_metadata={"plan": "pro"}):
        row = db_connection.execute(
            text("select auth.uid(), auth.role(), auth.email(), auth.jwt()")
        ).one()
    assert row[0] == uid
    assert row[1] == "authenticated"
    assert row[2] == "x@example.test"
    assert row[3]["app_metadata"] == {"plan": "pro"}
    assert row[3]["sub"] == str(uid)


def test_auth_functions_are_null_without_claims(db_connection: Connection) -> None:
    row = db_connection.execute(text("select auth.uid(), auth.role(), auth.email(), auth.jwt()"))
    assert tuple(row.one()) == (None, None, None, None)


def test_legacy_single_claim_setting_still_sets_uid_only(db_connection: Connection) -> None:
    # Supabase's own pitfall, reproduced: request.jwt.claim.sub alone leaves jwt()/role() NULL.
    uid = uuid.uuid4()
    db_connection.execute(
        text("select set_config('request.jwt.claim.sub', :s, true)"), {"s": str(uid)}
    )
    assert tuple(db_connection.execute(text("select auth.uid(), auth.jwt()")).one()) == (uid, None)


def test_roles_match_supabase(db_connection: Connection) -> None:
    rows = db_connection.execute(
        text(
            "select rolname, rolcanlogin, rolbypassrls, rolinherit from pg_roles"
            " where rolname in ('anon','authenticated','service_role','authenticator')"
        )
    ).all()
    roles = {r.rolname: (r.rolcanlogin, r.rolbypassrls, r.rolinherit) for r in rows}
    assert roles == {
        "anon": (False, False, True),
        "authenticated": (False, False, True),
        "service_role": (False, True, True),
        "authenticator": (True, False, False),
    }
    members = db_connection.execute(
        text("select pg_has_role('authenticator', r, 'member') from unnest(cast(:r as text[])) r"),
        {"r": ["anon", "authenticated", "service_role"]},
    ).scalars()
    assert all(members)


@contextmanager
def _denied(connection: Connection) -> Iterator[None]:
    with pytest.raises(ProgrammingError) as caught, connection.begin_nested():
        yield
    assert isinstance(caught.value.orig, pg_errors.InsufficientPrivilege)


@pytest.fixture
def owned_table(db_connection: Connection, auth_user: object) -> tuple[uuid.UUID, uuid.UUID]:
    """A user-owned probe table with Supabase-style policies; rows for users a and b."""
    a, b = auth_user(), auth_user()  # type: ignore[operator]
    db_connection.execute(
        text(
            """
            create table probe (id serial primary key, user_id uuid not null, note text);
            create index on probe (user_id);
            alter table probe enable row level security;
            create policy probe_select on probe for select to authenticated
              using ((select auth.uid()) = user_id);
            create policy probe_insert on probe for insert to authenticated
              with check ((select auth.uid()) = user_id);
            create policy probe_update on probe for update to authenticated
              using ((select auth.uid()) = user_id) with check ((select auth.uid()) = user_id);
            create policy probe_delete on probe for delete to authenticated
              using ((select auth.uid()) = user_id);
            grant select, insert, update, delete on probe to authenticated;
            grant select on probe to anon;
            grant usage on sequence probe_id_seq to authenticated;
            """
        )
    )
    db_connection.execute(
        text("insert into probe (user_id, note) values (:a, 'a'), (:b, 'b')"), {"a": a, "b": b}
    )
    return a, b


def _notes(connection: Connection) -> list[str]:
    return sorted(connection.execute(text("select note from probe")).scalars())


def _rowcount(connection: Connection, sql: str, **params: object) -> int:
    return connection.execute(text(sql), params).rowcount


def test_rls_owner_sees_and_changes_only_own_rows(
    identity: Identity, db_connection: Connection, owned_table: tuple[uuid.UUID, uuid.UUID]
) -> None:
    a, b = owned_table
    with identity.as_user(a):
        assert _notes(db_connection) == ["a"]
        assert _rowcount(db_connection, "update probe set note = 'x' where user_id = :b", b=b) == 0
        assert _rowcount(db_connection, "delete from probe where user_id = :b", b=b) == 0
        assert _rowcount(db_connection, "update probe set note = 'a2' where user_id = :a", a=a) == 1
        with _denied(db_connection):  # with check: cannot write a row for someone else
            db_connection.execute(text("insert into probe (user_id) values (:b)"), {"b": b})
        with _denied(db_connection):  # nor move an own row to someone else
            db_connection.execute(
                text("update probe set user_id = :b where user_id = :a"), {"a": a, "b": b}
            )
    assert _notes(db_connection) == ["a2", "b"]


def test_rls_anon_sees_nothing_and_writes_nothing(
    identity: Identity, db_connection: Connection, owned_table: tuple[uuid.UUID, uuid.UUID]
) -> None:
    a, _ = owned_table
    with identity.as_anon():
        assert _notes(db_connection) == []  # granted select, but no policy for anon
        with _denied(db_connection):
            db_connection.execute(text("insert into probe (user_id) values (:a)"), {"a": a})
        with _denied(db_connection):
            db_connection.execute(text("delete from probe"))


def test_rls_service_role_bypasses(
    identity: Identity, db_connection: Connection, owned_table: tuple[uuid.UUID, uuid.UUID]
) -> None:
    _, b = owned_table
    with identity.as_service():  # no explicit grant: the bootstrap's default privileges
        assert _notes(db_connection) == ["a", "b"]
        assert _rowcount(db_connection, "update probe set note = 's' where user_id = :b", b=b) == 1


def test_new_tables_are_not_exposed_until_granted(
    identity: Identity, db_connection: Connection
) -> None:
    db_connection.execute(text("create table fresh (id int)"))
    with identity.as_anon(), _denied(db_connection):
        db_connection.execute(text("select * from fresh"))
    with identity.as_user(uuid.uuid4()), _denied(db_connection):
        db_connection.execute(text("select * from fresh"))


def _catalog_snapshot(url: URL) -> str:
    """Everything the bootstrap touches, as one comparable JSON document."""
    queries = {
        "roles": "select rolname, rolsuper, rolinherit, rolcanlogin, rolbypassrls, rolconfig"
        " from pg_roles where rolname !~ '^pg_' order by 1",
        "members": "select r.rolname, m.rolname from pg_auth_members x join pg_roles r"
        " on r.oid = x.roleid join pg_roles m on m.oid = x.member order by 1, 2",
        "schemas": "select nspname, nspacl::text from pg_namespace order by 1",
        "functions": "select p.oid::regprocedure::text, p.prosrc, p.proacl::text from pg_proc p"
        " join pg_namespace n on n.oid = p.pronamespace where nspname = 'auth' order by 1",
        "tables": "select c.oid::regclass::text, c.relacl::text from pg_class c join pg_namespace n"
        " on n.oid = c.relnamespace where nspname in ('auth','extensions') order by 1",
        "default_acl": "select defaclrole::regrole::text, defaclobjtype, defaclacl::text"
        " from pg_default_acl order by 1, 2",
        "settings": "select setrole, setconfig from pg_db_role_setting s join pg_database d"
        " on d.oid = s.setdatabase where datname = current_database() order by 1",
        "extensions": "select extname, extnamespace::regnamespace::text from pg_extension"
        " order by 1",
        "publications": "select pubname, puballtables from pg_publication order by 1",
    }
    with psycopg.connect(conninfo(url)) as conn:
        return json.dumps({k: conn.execute(q).fetchall() for k, q in queries.items()}, default=str)


def test_bootstrap_twice_changes_nothing(database_url: URL) -> None:
    before = _catalog_snapshot(database_url)
    apply_bootstrap(database_url)
    assert _catalog_snapshot(database_url) == before
    for part in ('"auth"', "supabase_realtime", "pgrst.db_schemas=public,graphql_public"):
        assert part in before


def test_real_supabase_database_is_refused(database_url: URL) -> None:
    with psycopg.connect(conninfo(database_url)) as conn:
        conn.execute("create role supabase_admin")  # rolled back when the block ends
        with pytest.raises(SupabaseDatabaseRefusedError, match="real Supabase database"):
            run_bootstrap(conn)
        conn.rollback()
