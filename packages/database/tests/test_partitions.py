"""Time partitions: the conversion revision on populated tables, the declared layout in the
database, strays caught by the default partition."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL

from database.drift import partition_findings
from database.migrations import downgrade, upgrade
from database.schema.partitions import partitioned_tables
from database_tools.testdb import create_test_database, drop_test_database

TABLES = ("ohlcv", "market_data", "dex_trades")

_FILL = [
    "insert into ohlcv (source, symbol, timeframe, bucket_start, open, high, low, close, volume)"
    " select 'binance', 'BTC', '1h', date_trunc('hour', now()) - make_interval(hours => g),"
    " 100 + g % 7, 110 + g % 7, 90, 100, g from generate_series(0, 4000) g",
    "insert into market_data (exchange, symbol, price, observed_at)"
    " select 'binance', 'ETH', 1000 + g, now() - make_interval(mins => 7 * g)"
    " from generate_series(0, 3000) g",
    "insert into dexes (id, name, network) values ('uni', 'Uniswap', 'eth')",
    "insert into tokens (network, address, symbol, name, decimals)"
    " values ('eth', '0xaa', 'WETH', 'Wrapped Ether', 18), ('eth', '0xbb', 'USDC', 'USD Coin', 6)",
    "insert into pools (network, address, dex_id, base_token_id, quote_token_id)"
    " select 'eth', '0xcc', 'uni', b.id, q.id from tokens b, tokens q"
    " where b.address = '0xaa' and q.address = '0xbb'",
    "insert into dex_trades (network, pool_id, tx_hash, log_index, block_number,"
    " block_timestamp, side, base_amount, quote_amount)"
    " select 'eth', p.id, '0x' || to_hex(g), 0, g, now() - make_interval(mins => 30 * g),"
    " 'buy', 1, 2000 from pools p, generate_series(0, 2500) g",
]


def _summary(conn: Connection) -> dict[str, tuple[int, int, str]]:
    """Per table: rows, checksum over every column, relkind."""
    found = {}
    for table in TABLES:
        rows, checksum = conn.execute(
            text(f"select count(*), coalesce(sum(hashtextextended(t::text, 0)), 0) from {table} t")
        ).one()
        kind = conn.execute(
            text("select relkind::text from pg_class where oid = to_regclass(:t)"),
            {"t": f"public.{table}"},
        ).scalar_one()
        found[table] = (rows, int(checksum), kind)
    return found


@pytest.fixture
def populated_at_0009(database_server_url: URL) -> Iterator[URL]:
    url = create_test_database(database_server_url, prefix="part", migrate=False)
    upgrade(url=url, revision="0009")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in _FILL:
            conn.execute(text(statement))
    engine.dispose()
    yield url
    drop_test_database(url)


def test_conversion_keeps_every_row_and_downgrade_restores_the_plain_tables(
    populated_at_0009: URL,
) -> None:
    engine = sa.create_engine(populated_at_0009)
    try:
        with engine.connect() as conn:
            before = _summary(conn)
        assert {t: s[2] for t, s in before.items()} == dict.fromkeys(TABLES, "r")
        assert all(s[0] > 2000 for s in before.values())

        upgrade(url=populated_at_0009, revision="0010")
        with engine.connect() as conn:
            after = _summary(conn)
            assert {t: s[:2] for t, s in after.items()} == {t: s[:2] for t, s in before.items()}
            assert {t: s[2] for t, s in after.items()} == dict.fromkeys(TABLES, "p")
            # The rows spread over many partitions, none in the default one.
            for table in TABLES:
                used = conn.execute(
                    text(f"select count(distinct tableoid) from {table}")
                ).scalar_one()
                assert used > 2, table
                assert conn.execute(text(f"select count(*) from {table}_default")).scalar() == 0
            # The old tables are kept, unchanged, until someone drops them.
            for table in TABLES:
                kept = conn.execute(
                    text(f"select count(*) from archive.{table}_unpartitioned")
                ).scalar_one()
                assert kept == before[table][0]
            events = conn.execute(
                text("select context from system_events where event_type = 'migration.partitioned'")
            ).scalars()
            assert {e["table"] for e in events if e["same_checksum"]} == set(TABLES)
            assert partition_findings(conn) == []

        downgrade(url=populated_at_0009, revision="0009")
        with engine.connect() as conn:
            assert _summary(conn) == before
            assert (
                conn.execute(text("select to_regclass('archive.ohlcv_unpartitioned')")).scalar()
                is None
            )
    finally:
        engine.dispose()


def test_declared_partitioning_is_what_the_database_has(db_connection: Connection) -> None:
    for table, spec in partitioned_tables():
        key = db_connection.execute(
            text("select pg_get_partkeydef(to_regclass(:t))"), {"t": f"public.{table.name}"}
        ).scalar_one()
        assert key == f"RANGE ({spec.column})"
    assert partition_findings(db_connection) == []


def test_partitions_exist_ahead_and_a_stray_lands_in_the_default(db_connection: Connection) -> None:
    for table, spec in partitioned_tables():
        # A row `premake - 1` intervals ahead goes to a real partition, not the default.
        routed = db_connection.execute(
            text(
                "select c.relname from pg_partition_tree(to_regclass(:t)) p"
                " join pg_class c on c.oid = p.relid where p.isleaf"
                " and pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'"
                " and now() + cast(:ahead as interval) >= (regexp_match("
                "   pg_get_expr(c.relpartbound, c.oid), 'FROM \\(''([^'']+)''\\)'))[1]::timestamptz"
                " and now() + cast(:ahead as interval) < (regexp_match("
                "   pg_get_expr(c.relpartbound, c.oid), 'TO \\(''([^'']+)''\\)'))[1]::timestamptz"
            ),
            {"t": f"public.{table.name}", "ahead": f"{spec.premake - 1} {spec.interval.unit}"},
        ).scalars()
        assert len(list(routed)) == 1, table.name
    # A quote from 1990 has no partition: the default one keeps it.
    db_connection.execute(
        text(
            "insert into market_data (exchange, symbol, price, observed_at)"
            " values ('binance', 'OLD', 1, '1990-01-01T00:00:00Z')"
        )
    )
    where = db_connection.execute(
        text("select tableoid::regclass::text from market_data where symbol = 'OLD'")
    ).scalar_one()
    assert where == "market_data_default"
