"""The Data API as a client: what a signed-in user can do with straight SQL, without our apps.

Each test talks to the database exactly as PostgREST does for a supabase-js call: it logs in as
the API role (NOINHERIT, a member of anon and authenticated only), and every transaction starts
with `set local role authenticated` and the caller's claims in `request.jwt.claims`. Then it
tries what an attacker would, on every table that role can reach: wrong types inside JSON,
unknown keys, other users' ids, server-managed columns, secrets, quota overflow, private
webhook targets. The database refuses each one.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg_errors

from database.access import declared
from database.connect import Purpose, connect_raw
from database.schema.alerts import MAX_RULES_PER_USER
from database.schema.base import AccessClass
from database.sessions import Database
from database_tools.identities import create_auth_user

WHALE_RULE = {"alert_type": "whale_transaction", "min_value_eth": "1000"}


@pytest.fixture(autouse=True)
def _empty(truncate_after: Callable[..., None]) -> None:
    truncate_after("alerts", "profiles", "watchlist_entries", "auth.users")


@pytest.fixture
def users(database: Database) -> tuple[uuid.UUID, uuid.UUID]:
    with database.service_session() as s:
        return create_auth_user(s.connection()), create_auth_user(s.connection())


@contextmanager
def data_api(
    database: Database, user: uuid.UUID | None, *, commit: bool = False
) -> Iterator[psycopg.Connection[Any]]:
    """One transaction as PostgREST runs it: API login role, then role + claims, locally."""
    with connect_raw(database.api_url, purpose=Purpose.API) as conn:
        role = "authenticated" if user is not None else "anon"
        claims = {"role": role, **({"sub": str(user), "aud": "authenticated"} if user else {})}
        conn.execute(
            "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
            (role, json.dumps(claims)),
        )
        try:
            yield conn
        finally:
            if commit:
                conn.commit()
            else:
                conn.rollback()


def refused(database: Database, user: uuid.UUID | None, sql: str, *params: Any) -> str:
    """Run `sql` through the Data API; it must fail. Returns the SQLSTATE."""
    with data_api(database, user) as conn, pytest.raises(psycopg.Error) as caught:
        conn.execute(sql, params)
    state = caught.value.sqlstate
    assert state is not None, caught.value
    return state


def _insert_rule(
    conditions: Any = None, channels: Any = None, **columns: Any
) -> tuple[str, list[Any]]:
    values = {
        "name": "r",
        "alert_type": "whale_transaction",
        "conditions": json.dumps(conditions if conditions is not None else WHALE_RULE),
        **({"channels": json.dumps(channels)} if channels is not None else {}),
        **columns,
    }
    names = ", ".join(values)
    marks = ", ".join("%s" for _ in values)
    return f"insert into alerts ({names}) values ({marks})", list(values.values())


def test_the_api_login_role_can_become_nothing_but_anon_or_authenticated(
    database: Database, users: tuple[uuid.UUID, uuid.UUID]
) -> None:
    me, _ = users
    with data_api(database, me) as conn:
        assert conn.execute("select current_user").fetchone() == ("authenticated",)
        conn.execute("reset role")  # an injection's way out of the user's role...
        assert conn.execute("select current_user").fetchone() == (database.settings.db_api_role,)
        with pytest.raises(pg_errors.InsufficientPrivilege):  # ...lands on a role with nothing
            conn.execute("select count(*) from alerts")
    for target in ("postgres", "service_role"):
        assert refused(database, me, f"set role {target}") == "42501"


def test_rules_a_user_writes_directly_are_checked_like_the_apis(
    database: Database, users: tuple[uuid.UUID, uuid.UUID]
) -> None:
    me, other = users
    attacks = {
        "wrong type in JSON": _insert_rule({**WHALE_RULE, "min_value_eth": "abc"}, user_id=me),
        "JSON number as bool": _insert_rule({**WHALE_RULE, "min_value_eth": True}, user_id=me),
        "unknown key": _insert_rule({**WHALE_RULE, "colour": "red"}, user_id=me),
        "not an object": _insert_rule(["min_value_eth"], user_id=me),
        "addresses not a list": _insert_rule(
            {"alert_type": "whale_transaction", "addresses": "0x" + "a" * 40}, user_id=me
        ),
        "webhook without url": _insert_rule(channels=[{"type": "webhook"}], user_id=me),
        "http webhook": _insert_rule(
            channels=[{"type": "webhook", "url": "http://hooks.example.com/x"}], user_id=me
        ),
        "metadata address": _insert_rule(
            channels=[{"type": "webhook", "url": "https://169.254.169.254/latest/meta-data"}],
            user_id=me,
        ),
        "loopback with a port": _insert_rule(
            channels=[{"type": "webhook", "url": "https://127.0.0.1:5432/"}], user_id=me
        ),
        "two webhooks": _insert_rule(
            channels=[
                {"type": "webhook", "url": "https://a.example.com/"},
                {"type": "webhook", "url": "https://b.example.com/"},
            ],
            user_id=me,
        ),
        "cooldown out of range": _insert_rule(cooldown_seconds=-1, user_id=me),
        "conditions of another type": _insert_rule(alert_type="price_level", user_id=me),
    }
    for what, (sql, params) in attacks.items():
        assert refused(database, me, sql, *params) == "23514", what  # a CHECK
    sql, params = _insert_rule(user_id=other)
    assert refused(database, me, sql, *params) == "42501"  # RLS: not mine
    # A NUL in text, as PostgREST would pass a JSON body on: refused by the database itself.
    body = json.dumps(
        {
            "name": "bad\x00name",
            "alert_type": "whale_transaction",
            "user_id": str(me),
            "conditions": WHALE_RULE,
        }
    )
    nul = (
        "insert into alerts (name, alert_type, user_id, conditions)"
        " select name, alert_type, user_id, conditions"
        " from jsonb_populate_record(null::public.alerts, %s::jsonb)"
    )
    assert refused(database, me, nul, body) == "22P05"


def test_server_columns_and_secrets_are_out_of_reach(
    database: Database, users: tuple[uuid.UUID, uuid.UUID]
) -> None:
    me, other = users
    sql, params = _insert_rule(
        channels=[{"type": "webhook", "url": "https://hooks.example.com/x"}], user_id=me
    )
    with data_api(database, me, commit=True) as conn:
        created = conn.execute(sql + " returning id", params).fetchone()
        assert created is not None
        rule = created[0]
    for column, value in (
        ("id", str(uuid.uuid4())),
        ("created_at", "2020-01-01"),
        ("updated_at", "2020-01-01"),
    ):
        insert, values = _insert_rule(user_id=me, **{column: value})
        assert refused(database, me, insert, *values) == "42501"
        assert refused(database, me, f"update alerts set {column} = %s", value) == "42501"
    assert refused(database, me, "update alerts set user_id = %s", str(other)) == "42501"
    assert refused(database, me, "select * from alert_webhook_secrets") == "42501"
    assert refused(database, me, "delete from alert_webhook_secrets") == "42501"
    with data_api(database, me) as conn:
        mine = conn.execute("select private.webhook_secret(%s)", (rule,)).fetchone()
        assert mine is not None and len(mine[0]) == 64  # the owner, through our function
    with data_api(database, other) as conn:
        theirs = conn.execute("select private.webhook_secret(%s)", (rule,)).fetchone()
        assert theirs == (None,)  # another user: nothing
        assert conn.execute("select private.rotate_webhook_secret(%s)", (rule,)).fetchone() == (
            None,
        )
    assert refused(database, None, "select private.webhook_secret(%s)", rule) == "42501"


def test_quotas_hold_under_concurrent_direct_inserts(
    database: Database, users: tuple[uuid.UUID, uuid.UUID]
) -> None:
    me, _ = users
    sql, params = _insert_rule(user_id=me)
    with data_api(database, me, commit=True) as conn:
        for _ in range(MAX_RULES_PER_USER - 5):
            conn.execute(sql, params)
    outcomes: list[str] = []
    start = threading.Barrier(20)

    def one() -> None:
        with connect_raw(database.api_url, purpose=Purpose.API) as conn:
            conn.execute(
                "select set_config('role', 'authenticated', true),"
                " set_config('request.jwt.claims', %s, true)",
                (json.dumps({"role": "authenticated", "sub": str(me)}),),
            )
            start.wait()
            try:
                conn.execute(sql, params)
                conn.commit()
                outcomes.append("inserted")
            except psycopg.Error as exc:
                outcomes.append(exc.sqlstate or "?")

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("inserted") == 5, outcomes
    assert outcomes.count("23Q01") == 15, outcomes
    with database.service_session() as s:
        count = (
            s.connection()
            .exec_driver_sql(f"select count(*) from alerts where user_id = '{me}'")
            .scalar_one()
        )
    assert count == MAX_RULES_PER_USER


def test_profiles_and_watchlists_refuse_what_the_api_refuses(
    database: Database, users: tuple[uuid.UUID, uuid.UUID]
) -> None:
    me, other = users
    profile = "insert into profiles (id, username, preferences) values (%s, %s, %s)"
    assert refused(database, me, profile, str(other), "someone", "{}") == "42501"
    assert refused(database, me, profile, str(me), "Bad Name", "{}") == "23514"
    for preferences in (
        '{"timezone": 5}',
        '{"theme": "dark"}',
        '{"notifications": []}',
        '{"notifications": {"cooldown_seconds": "300"}}',
    ):
        assert refused(database, me, profile, str(me), "okname", preferences) == "23514"
    watch = "insert into watchlist_entries (user_id, kind, reference) values (%s, %s, %s)"
    assert refused(database, me, watch, str(me), "address", "not-an-address") == "23514"
    assert refused(database, me, watch, str(me), "nft", "x:y") == "23514"
    assert refused(database, me, watch, str(other), "address", "0x" + "b" * 40) == "42501"


def test_every_table_the_api_roles_can_reach_is_covered_here() -> None:
    # A new table granted to anon/authenticated needs its attacks in this module.
    reachable = {s.table for s in declared() if s.access is not AccessClass.INTERNAL}
    covered = {"alerts", "profiles", "watchlist_entries"}  # user-writable: the attacks above
    read_only = reachable - covered
    assert covered <= reachable
    assert read_only == {
        "alert_events",
        "whale_transactions",
        "market_data",
        "ohlcv",
        "liquidity_zones",
        "smc_patterns",
        "dexes",
        "tokens",
        "pools",
        "whale_activity_daily",
    }


@pytest.mark.parametrize(
    "table",
    [
        "alert_events",
        "whale_transactions",
        "market_data",
        "ohlcv",
        "liquidity_zones",
        "smc_patterns",
        "dexes",
        "tokens",
        "pools",
    ],
)
def test_read_only_tables_refuse_every_write(
    table: str, database: Database, users: tuple[uuid.UUID, uuid.UUID]
) -> None:
    me, _ = users
    for who in (me, None):
        assert refused(database, who, f"delete from {table}") == "42501"
        assert refused(database, who, f"update {table} set id = id") == "42501"
        assert refused(database, who, f"insert into {table} default values") == "42501"
