"""The Alembic chain on a fresh database: up, down to base, version table placement."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from database.connect import conninfo
from database.errors import MigrationError
from database.migrations import (
    MIGRATIONS_DIR,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
    upgrade_sql,
)
from database.schema.base import VERSION_TABLE_SCHEMA
from database_tools.testdb import create_test_database, drop_test_database


@pytest.fixture
def fresh_database(database_server_url: URL) -> Iterator[URL]:
    url = create_test_database(database_server_url, prefix="migr")
    yield url
    drop_test_database(url)


def _version_table_schemas(url: URL) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    text(
                        "select table_schema from information_schema.tables"
                        " where table_name = 'alembic_version'"
                    )
                ).scalars()
            )
    finally:
        engine.dispose()


_SNAPSHOT = {
    "columns": "select table_name, column_name, data_type, is_nullable, column_default,"
    " numeric_precision, numeric_scale from information_schema.columns"
    " where table_schema = 'public' order by 1, 2",
    "constraints": "select conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
    " from pg_constraint where connamespace = 'public'::regnamespace order by 1, 2",
    "indexes": "select indexname, indexdef from pg_indexes where schemaname = 'public' order by 1",
    "policies": "select tablename, policyname, cmd, roles::text, qual, with_check from pg_policies"
    " where schemaname = 'public' order by 1, 2",
    "grants": "select table_name, grantee, privilege_type from information_schema.role_table_grants"
    " where table_schema = 'public' order by 1, 2, 3",
    "rls": "select relname, relrowsecurity from pg_class"
    " where relnamespace = 'public'::regnamespace and relkind = 'r' order by 1",
    "triggers": "select tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) from pg_trigger"
    " where not tgisinternal order by 1, 2",
    "views": "select viewname, definition from pg_views where schemaname = 'public' order by 1",
    "functions": "select p.oid::regprocedure::text, prosrc, proconfig::text from pg_proc p"
    " where pronamespace in (select oid from pg_namespace where nspname in ('public', 'private'))"
    " order by 1",
    "publication": "select schemaname, tablename from pg_publication_tables"
    " where pubname = 'supabase_realtime' order by 1, 2",
}


def _snapshot(url: URL) -> dict[str, list[tuple[object, ...]]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {k: [tuple(r) for r in conn.execute(text(q))] for k, q in _SNAPSHOT.items()}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_leaves_no_difference(fresh_database: URL) -> None:
    assert current_revision(url=fresh_database) == head_revision()
    migrated = _snapshot(fresh_database)
    assert len(migrated["columns"]) > 100 and migrated["publication"]
    downgrade(url=fresh_database, revision="base")
    assert current_revision(url=fresh_database) is None
    empty = _snapshot(fresh_database)
    assert not any(empty[k] for k in ("columns", "policies", "triggers", "views", "publication"))
    assert empty["functions"] == []  # private schema and its functions are gone too
    upgrade(url=fresh_database)
    assert current_revision(url=fresh_database) == head_revision()
    assert _snapshot(fresh_database) == migrated


def test_version_table_is_private(fresh_database: URL) -> None:
    assert _version_table_schemas(fresh_database) == [VERSION_TABLE_SCHEMA]


@pytest.fixture
def unmigrated_database(database_server_url: URL) -> Iterator[URL]:
    url = create_test_database(database_server_url, prefix="bare", migrate=False)
    yield url
    drop_test_database(url)


def _psql() -> str:
    from database_tools.embedded import _bin_dir

    bundled = _bin_dir() / "psql"
    return str(bundled) if bundled.exists() else "psql"


def test_migrate_sql_applied_with_psql_builds_the_same_schema(
    fresh_database: URL, unmigrated_database: URL, tmp_path: Path
) -> None:
    script = tmp_path / "migrate.sql"
    with script.open("w") as out:
        upgrade_sql(url=unmigrated_database, from_revision=None, output=out)
    done = subprocess.run(
        [_psql(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(script),
         conninfo(unmigrated_database)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _snapshot(unmigrated_database) == _snapshot(fresh_database)
    assert current_revision(url=unmigrated_database) == head_revision()


def test_a_failing_revision_leaves_the_previous_one_in_place(
    unmigrated_database: URL, tmp_path: Path
) -> None:
    scripts = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "zz_0002_fails.py").write_text(
        textwrap.dedent(
            f"""
            from alembic import op

            revision = "zz_fail"
            down_revision = {head_revision()!r}
            branch_labels = None
            depends_on = None


            def upgrade() -> None:
                op.execute("create table public.half_done (id int)")
                op.execute("select 1 / 0")


            def downgrade() -> None:
                pass
            """
        )
    )
    with pytest.raises(MigrationError) as caught:
        upgrade(url=unmigrated_database, script_location=scripts)
    assert f"still at revision {head_revision()}" in str(caught.value)
    assert "division by zero" in str(caught.value)
    assert current_revision(url=unmigrated_database) == head_revision()
    tables = _snapshot(unmigrated_database)["columns"]
    assert not any(row[0] == "half_done" for row in tables)


@pytest.fixture
def database_at_0005(database_server_url: URL) -> Iterator[URL]:
    url = create_test_database(database_server_url, prefix="migr", migrate=False)
    upgrade(url=url, revision="0005")
    yield url
    drop_test_database(url)


_WHALE = (
    "insert into whale_transactions (hash, from_address, value_eth, gas_price, block_number,"
    " block_timestamp, whale_score, created_at) values (:h, :a, 1, 1, 1, now(), 0.5,"
    " timestamptz '2026-01-01' + make_interval(secs => :n)) returning id, created_at"
)


def _whales(conn: sa.Connection, n: int) -> list[tuple[object, object]]:
    return [
        tuple(conn.execute(text(_WHALE), {"h": f"0x{i:064x}", "a": "0x" + "1" * 40, "n": i}).one())
        for i in range(n)
    ]


def test_revision_0006_hands_the_unevaluated_rows_to_the_stream(database_at_0005: URL) -> None:
    """Rows after the old (created_at, id) cursor become rows of the revision's transaction,
    which the new (empty) stream position reads first; rows before it stay evaluated."""
    engine = create_engine(database_at_0005)
    try:
        with engine.begin() as conn:
            rows = _whales(conn, 6)
            conn.execute(
                text(
                    "insert into evaluator_cursors (name, last_created_at, last_id)"
                    " values ('alerts.whale_transactions', :at, :id)"
                ),
                {"id": rows[2][0], "at": rows[2][1]},
            )
        upgrade(url=database_at_0005, revision="0006")
        with engine.connect() as conn:
            stamped = conn.execute(
                text("select id, xact_id is not null from whale_transactions order by created_at")
            ).all()
            cursor = conn.execute(
                text("select done_snapshot, window_snapshot, after_id from evaluator_cursors")
            ).one()
            # New rows are stamped by the default.
            new = conn.execute(text(_WHALE), {"h": "0x" + "f" * 64, "a": "0x" + "2" * 40, "n": 99})
            new_id = new.one()[0]
            assert conn.execute(
                text("select xact_id = pg_current_xact_id() from whale_transactions where id = :i"),
                {"i": new_id},
            ).scalar_one()
            conn.rollback()
        assert [done for _, done in stamped] == [False] * 3 + [True] * 3
        assert tuple(cursor) == (None, None, None)
        # Down again: the done snapshot's newest row becomes the (created_at, id) cursor.
        with engine.begin() as conn:
            conn.execute(text("update evaluator_cursors set done_snapshot = pg_current_snapshot()"))
        downgrade(url=database_at_0005, revision="0005")
        with engine.connect() as conn:
            back = conn.execute(text("select last_created_at, last_id from evaluator_cursors"))
            assert tuple(back.one()) == (rows[5][1], rows[5][0])
    finally:
        engine.dispose()
