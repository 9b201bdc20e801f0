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
from database.schema.trading import MAX_BACKTESTS_PER_USER, MAX_OPEN_ORDERS
from database.sessions import Database
from database_tools.factories import backtest_config
from database_tools.identities import create_auth_user

WHALE_RULE = {"alert_type": "whale_transaction", "min_value_eth": "1000"}


@pytest.fixture(autouse=True)
def _empty(truncate_after: Callable[..., None]) -> None:
    truncate_after(
        "alerts", "profiles", "watchlist_entries", "orders", "backtest_results", "auth.users"
    )


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


# -- orders: the owner submits and may ask to cancel; the service does the rest -------------

ORDER = {
    "exchange": "binance",
    "symbol": "ETH/USDT",
    "order_type": "limit",
    "side": "buy",
    "quantity": "2",
    "limit_price": "3000",
}


def _insert_order(**columns: Any) -> tuple[str, list[Any]]:
    values = {**ORDER, **columns}
    names = ", ".join(values)
    marks = ", ".join("%s" for _ in values)
    return f"insert into orders ({names}) values ({marks})", list(values.values())


def test_orders_take_the_clients_columns_only(
    database: Database, users: tuple[uuid.UUID, uuid.UUID]
) -> None:
    me, other = users
    sql, params = _insert_order(user_id=me)
    with data_api(database, me) as conn:
        row = conn.execute(
            sql + " returning status, filled_quantity, cancel_requested_at", params
        ).fetchone()
    assert row == ("new", 0, None)  # the server's defaults
    for column, value in (
        ("status", "filled"),
        ("filled_quantity", "2"),
        ("average_fill_price", "3000"),
        ("exchange_order_id", "x-1"),
        ("closed_at", "2026-01-01T00:00:00Z"),
        ("cancel_requested_at", "2026-01-01T00:00:00Z"),
        ("id", str(uuid.uuid4())),
        ("created_at", "2020-01-01T00:00:00Z"),
    ):
        insert, values = _insert_order(user_id=me, **{column: value})
        assert refused(database, me, insert, *values) == "42501", column
    insert, values = _insert_order(user_id=other)
    assert refused(database, me, insert, *values) == "42501"  # RLS: not mine
    for what, (insert, values) in {
        "not a number": _insert_order(user_id=me, quantity="abc"),
    }.items():
        assert refused(database, me, insert, *values) == "22P02", what
    for what, (insert, values) in {
        "unknown type": _insert_order(user_id=me, order_type="iceberg"),
        "limit without price": _insert_order(user_id=me, limit_price=None),
        "market with a price": _insert_order(user_id=me, order_type="market"),
        "negative quantity": _insert_order(user_id=me, quantity="-1"),
        "unknown time in force": _insert_order(user_id=me, time_in_force="forever"),
        "lower-case symbol": _insert_order(user_id=me, symbol="eth/usdt"),
    }.items():
        assert refused(database, me, insert, *values) == "23514", what
    insert, values = _insert_order(user_id=me, signal_id=str(uuid.uuid4()))
    assert refused(database, me, insert, *values) == "23503"  # no such signal


def test_an_owner_can_only_ask_to_cancel_own_open_orders(
    database: Database, users: tuple[uuid.UUID, uuid.UUID]
) -> None:
    me, other = users
    sql, params = _insert_order(user_id=me)
    with data_api(database, me, commit=True) as conn:
        open_order, filled_order = (
            conn.execute(sql + " returning id", params).fetchone()[0]  # type: ignore[index]
            for _ in range(2)
        )
    with database.service_session() as s:  # the exchange filled the second one
        s.connection().exec_driver_sql(
            "update orders set status = 'filled', filled_quantity = quantity,"
            f" average_fill_price = 3000, closed_at = now() where id = '{filled_order}'"
        )
    for column, value in (
        ("status", "canceled"),
        ("filled_quantity", "1"),
        ("user_id", str(other)),
        ("quantity", "5"),
        ("closed_at", "2026-01-01T00:00:00Z"),
    ):
        update = f"update orders set {column} = %s where id = %s"
        assert refused(database, me, update, value, open_order) == "42501", column
    assert refused(database, me, "delete from orders where id = %s", open_order) == "42501"
    cancel = (
        "update orders set cancel_requested_at = %s where id = %s returning cancel_requested_at"
    )
    with data_api(database, other) as conn:  # another user's order: not there
        assert conn.execute(cancel, ("2030-01-01T00:00:00Z", open_order)).fetchall() == []
    with data_api(database, me) as conn:  # a filled order cannot be canceled
        assert conn.execute(cancel, ("2030-01-01T00:00:00Z", filled_order)).fetchall() == []
    with data_api(database, me, commit=True) as conn:
        ((stamped,),) = conn.execute(cancel, ("2030-01-01T00:00:00Z", open_order)).fetchall()
        now = conn.execute("select now()").fetchone()
    assert now is not None and stamped == now[0]  # the server's clock, not the client's
    with data_api(database, me) as conn:  # once: no second stamp, no withdrawing it
        assert conn.execute(cancel, ("2031-01-01T00:00:00Z", open_order)).fetchall() == []
        assert conn.execute(cancel, (None, open_order)).fetchall() == []


def test_open_orders_are_capped_closed_ones_are_not(
    database: Database, users: tuple[uuid.UUID, uuid.UUID]
) -> None:
    me, _ = users
    many = (
        "insert into orders (user_id, exchange, symbol, order_type, side, quantity)"
        " select %s, 'binance', 'ETH/USDT', 'market', 'buy', 1 from generate_series(1, %s)"
    )
    with data_api(database, me, commit=True) as conn:
        conn.execute(many, (str(me), MAX_OPEN_ORDERS))
    assert refused(database, me, many, str(me), 1) == "23Q01"
    with database.service_session() as s:  # one is rejected by the exchange: it closes
        s.connection().exec_driver_sql(
            "update orders set status = 'rejected', closed_at = now()"
            f" where id = (select id from orders where user_id = '{me}' limit 1)"
        )
    with data_api(database, me) as conn:
        assert conn.execute(many + " returning id", (str(me), 1)).fetchall() != []


# -- backtest results: documents a user writes ---------------------------------------------

METRICS = {"trade_count": 0, "total_return_pct": 0, "max_drawdown_pct": 0, "final_equity": 10_000}


def _insert_backtest(**columns: Any) -> tuple[str, list[Any]]:
    values = {
        "name": "sma",
        "strategy_config": json.dumps(backtest_config()),
        "metrics": json.dumps(METRICS),
        **{k: json.dumps(v) if not isinstance(v, str) else v for k, v in columns.items()},
    }
    names = ", ".join(values)
    marks = ", ".join("%s" for _ in values)
    return f"insert into backtest_results ({names}) values ({marks})", list(values.values())


def test_backtest_documents_are_checked_like_the_apis(
    database: Database, users: tuple[uuid.UUID, uuid.UUID]
) -> None:
    me, other = users
    config = backtest_config()
    trade = {
        "side": "long",
        "entry_time": "2026-01-02T00:00:00Z",
        "exit_time": "2026-01-03T00:00:00Z",
        "entry_price": "3000",
        "exit_price": "3010",
        "quantity": "1",
        "pnl": "10",
    }
    insert, values = _insert_backtest(user_id=str(me), trades=[trade])
    with data_api(database, me) as conn:
        assert conn.execute(insert + " returning id", values).fetchone() is not None
    attacks: dict[str, dict[str, Any]] = {
        "number as a string of words": {"strategy_config": {**config, "initial_capital": "lots"}},
        "bool as a number": {"metrics": {**METRICS, "final_equity": True}},
        "float for an integer": {"metrics": {**METRICS, "trade_count": 1.5}},
        "unknown key": {"metrics": {**METRICS, "alpha": 1}},
        "nested unknown key": {"trades": [{**trade, "leverage": 10}]},
        "trades not a list": {"trades": trade},
        "wrong enum": {"trades": [{**trade, "side": "up"}]},
        "time with an offset": {
            "equity_curve": [{"time": "2026-01-01T00:00:00+01:00", "equity": 1}]
        },
        "too many parameters": {
            "strategy_config": {**config, "parameters": [{"name": "p", "value": 1}] * 51}
        },
    }
    for what, columns in attacks.items():
        insert, values = _insert_backtest(user_id=str(me), **columns)
        assert refused(database, me, insert, *values) == "23514", what
    insert, values = _insert_backtest(user_id=str(other))
    assert refused(database, me, insert, *values) == "42501"  # RLS: not mine
    for column, value in (("id", str(uuid.uuid4())), ("created_at", "2020-01-01T00:00:00Z")):
        insert, values = _insert_backtest(user_id=str(me), **{column: value})
        assert refused(database, me, insert, *values) == "42501", column
    for column, value in (
        ("user_id", str(other)),
        ("metrics", json.dumps(METRICS)),  # a result is what the run produced
        ("updated_at", "2020-01-01T00:00:00Z"),
    ):
        update = f"update backtest_results set {column} = %s"
        assert refused(database, me, update, value) == "42501", column


def test_backtests_are_capped_per_user(
    database: Database, users: tuple[uuid.UUID, uuid.UUID]
) -> None:
    me, other = users
    many = (
        "insert into backtest_results (user_id, name, strategy_config, metrics)"
        " select %s, 'run ' || g, %s, %s from generate_series(1, %s) g"
    )
    config, metrics = json.dumps(backtest_config()), json.dumps(METRICS)
    with data_api(database, me, commit=True) as conn:
        conn.execute(many, (str(me), config, metrics, MAX_BACKTESTS_PER_USER))
    assert refused(database, me, many, str(me), config, metrics, 1) == "23Q01"
    with data_api(database, other) as conn:  # the cap is per user
        assert conn.execute(many + " returning id", (str(other), config, metrics, 1)).fetchall()


def test_every_table_the_api_roles_can_reach_is_covered_here() -> None:
    # A new table granted to anon/authenticated needs its attacks in this module.
    reachable = {s.table for s in declared() if s.access is not AccessClass.INTERNAL}
    # User-writable: the attacks above.
    covered = {"alerts", "profiles", "watchlist_entries", "orders", "backtest_results"}
    read_only = reachable - covered
    assert covered <= reachable
    assert read_only == {*READ_ONLY, "whale_activity_daily"}


READ_ONLY = [
    "alert_events",
    "whale_transactions",
    "market_data",
    "ohlcv",
    "liquidity_zones",
    "smc_patterns",
    "dexes",
    "tokens",
    "pools",
    "dex_trades",
    "articles",
    "sentiment_scores",
    "market_events",
    "trading_signals",
    "order_fills",
    "trades",
    "positions",
    "daily_performance",
]


@pytest.mark.parametrize("table", READ_ONLY)
def test_read_only_tables_refuse_every_write(
    table: str, database: Database, users: tuple[uuid.UUID, uuid.UUID]
) -> None:
    me, _ = users
    for who in (me, None):
        assert refused(database, who, f"delete from {table}") == "42501"
        assert refused(database, who, f"update {table} set id = id") == "42501"
        assert refused(database, who, f"insert into {table} default values") == "42501"
