"""Migrations on live data: lock timeouts retried then reported with the blocker, the safe
forms (database.migrations.safe) on real tables, and `make revision` writing them."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command
from sqlalchemy.engine import URL

from database.connect import conninfo
from database.errors import MigrationError
from database.migrations import (
    MIGRATIONS_DIR,
    alembic_config,
    current_revision,
    head_revision,
    revision_sql,
    upgrade,
)
from database.settings import load_settings
from database_tools.testdb import create_test_database, drop_test_database


@pytest.fixture
def migrated(database_server_url: URL) -> Iterator[URL]:
    url = create_test_database(database_server_url, prefix="safety")
    yield url
    drop_test_database(url)


def _scripts_with(tmp_path: Path, upgrade_body: list[str], downgrade_body: list[str]) -> Path:
    scripts = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    lines = [
        "import sqlalchemy as sa",
        "from alembic import op",
        "from database.migrations import safe",
        "",
        'revision = "zz_safety"',
        f"down_revision = {head_revision()!r}",
        "branch_labels = None",
        "depends_on = None",
        "",
        "def upgrade() -> None:",
        *(f"    {line}" for line in upgrade_body),
        "",
        "def downgrade() -> None:",
        *(f"    {line}" for line in downgrade_body or ["pass"]),
    ]
    (scripts / "versions" / "zz_9999_safety.py").write_text("\n".join(lines) + "\n")
    return scripts


def _query(url: URL, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(conninfo(url)) as conn:
        return [tuple(r) for r in conn.execute(sql, params).fetchall()]


def test_a_lock_timeout_is_retried_then_names_the_blocker(
    migrated: URL, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scripts = _scripts_with(
        tmp_path, ['op.execute("alter table public.dexes add column ops_note text")'], []
    )
    settings = load_settings(
        db_migration_lock_timeout_ms=300,
        db_migration_lock_retries=2,
        db_migration_retry_delay_ms=50,
    )
    with psycopg.connect(conninfo(migrated), application_name="ops-blocker") as blocker:
        blocker.execute("select count(*) from public.dexes")  # ACCESS SHARE, transaction open
        blocker_pid = blocker.info.backend_pid
        with (
            caplog.at_level(logging.WARNING, logger="database.migrations"),
            pytest.raises(MigrationError) as caught,
        ):
            upgrade(url=migrated, script_location=scripts, settings=settings)
        blocker.rollback()
    message = str(caught.value)
    assert "waited longer than 300 ms for a lock, 3 attempt(s)" in message
    assert f"pid {blocker_pid}" in message and "application_name 'ops-blocker'" in message
    assert "select count(*) from public.dexes" in message
    assert "AccessShareLock on dexes" in message
    assert f"still at revision {head_revision()}" in message
    retries = [r.getMessage() for r in caplog.records if "lock timeout" in r.getMessage()]
    assert len(retries) == 2 and "attempt 1 of 3" in retries[0]
    assert current_revision(url=migrated) == head_revision()
    assert (
        _query(
            migrated,
            "select 1 from information_schema.columns where table_name = 'dexes'"
            " and column_name = 'ops_note'",
        )
        == []
    )
    # Once the blocker is gone the same revision goes through.
    upgrade(url=migrated, script_location=scripts, settings=settings)
    assert current_revision(url=migrated) == "zz_safety"


_TABLES = """
create table public.ops_parent (id int primary key);
create table public.ops_plain (id int primary key, parent_id int, name text);
insert into public.ops_parent select generate_series(1, 10);
insert into public.ops_plain select g, g % 10 + 1, 'n' || (g % 7) from generate_series(1, 500) g;
create table public.ops_events (id bigint, created_at timestamptz not null, user_id int)
  partition by range (created_at);
create table public.ops_events_2026_01 partition of public.ops_events
  for values from ('2026-01-01') to ('2026-02-01');
create table public.ops_events_2026_02 partition of public.ops_events
  for values from ('2026-02-01') to ('2026-03-01');
insert into public.ops_events
  select g, '2026-01-01'::timestamptz + g * interval '1 hour', g % 5
  from generate_series(1, 1000) g;
"""


def test_safe_forms_on_real_tables_including_a_partitioned_one(
    migrated: URL, tmp_path: Path
) -> None:
    with psycopg.connect(conninfo(migrated), autocommit=True) as conn:
        conn.execute(_TABLES)
        # A concurrent build that failed leaves an INVALID index behind: the helper rebuilds it.
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("create unique index concurrently ix_ops_plain_name on ops_plain (name)")
    scripts = _scripts_with(
        tmp_path,
        [
            'safe.create_index_concurrently("ix_ops_plain_name", "ops_plain", ["name"])',
            'safe.create_index_concurrently("ix_ops_events_user_id", "ops_events", ["user_id"],'
            ' where="user_id > 0", partitioned=True)',  # what offline SQL assumes
            'safe.add_check_constraint("ck_ops_plain_name_short", "ops_plain",'
            ' "char_length(name) < 50")',
            'safe.add_foreign_key("fk_ops_plain_parent_id_ops_parent", "ops_plain", "ops_parent",'
            ' ["parent_id"], ["id"], ondelete="cascade")',
            'safe.set_not_null("ops_plain", "name")',
        ],
        [
            'safe.drop_index_concurrently("ix_ops_events_user_id")',
            'safe.drop_index_concurrently("ix_ops_plain_name")',
            'op.drop_constraint("fk_ops_plain_parent_id_ops_parent", "ops_plain")',
            'op.drop_constraint("ck_ops_plain_name_short", "ops_plain")',
        ],
    )
    upgrade(url=migrated, script_location=scripts)
    assert current_revision(url=migrated) == "zz_safety"
    indexes = dict(
        _query(
            migrated,
            "select c.relname, i.indisvalid from pg_index i join pg_class c on c.oid = i.indexrelid"
            " where c.relname like %s or c.relname like %s",
            "ix_ops_%",
            "ops_events_%ix_ops%",
        )
    )
    assert indexes == {
        "ix_ops_plain_name": True,
        "ix_ops_events_user_id": True,  # valid: every partition's index is attached
        "ops_events_2026_01_ix_ops_events_user_id": True,
        "ops_events_2026_02_ix_ops_events_user_id": True,
    }
    unique = _query(
        migrated,
        "select indisunique from pg_index where indexrelid = 'ix_ops_plain_name'::regclass",
    )
    assert unique == [(False,)]
    constraints = dict(
        _query(
            migrated,
            "select conname, convalidated from pg_constraint"
            " where conrelid = 'public.ops_plain'::regclass and contype in ('c', 'f')",
        )
    )
    assert constraints == {
        "ck_ops_plain_name_short": True,
        "fk_ops_plain_parent_id_ops_parent": True,
    }  # and the helper's NOT NULL check is gone again
    assert _query(
        migrated,
        "select attnotnull from pg_attribute where attrelid = 'public.ops_plain'::regclass"
        " and attname = 'name'",
    ) == [(True,)]
    # Idempotent: running the same steps again changes nothing and fails nothing.
    command.downgrade(alembic_config(url=migrated, script_location=scripts), head_revision() or "")
    assert _query(migrated, "select to_regclass('public.ix_ops_events_user_id')") == [(None,)]
    upgrade(url=migrated, script_location=scripts)
    offline = revision_sql(revision="zz_safety", script_location=scripts)
    for expected in (
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_ops_plain_name",
        "ON ONLY public.ops_events",
        "NOT VALID",
        "VALIDATE CONSTRAINT fk_ops_plain_parent_id_ops_parent",
        "SET NOT NULL",
    ):
        assert expected in offline, expected


def test_make_revision_writes_the_safe_forms_for_existing_tables(
    migrated: URL, tmp_path: Path
) -> None:
    # The models declare this index and foreign key; the database lost them.
    with psycopg.connect(conninfo(migrated), autocommit=True) as conn:
        conn.execute("drop index public.ix_dexes_network")
        conn.execute("alter table public.pools drop constraint fk_pools_dex_id_dexes")
    scripts = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    config = alembic_config(url=migrated, script_location=scripts)
    command.revision(config, message="restore", autogenerate=True, rev_id="zz_restore")
    written = next((scripts / "versions").glob("*zz_restore*.py")).read_text()
    assert "from database.migrations import safe" in written
    assert "safe.create_index_concurrently('ix_dexes_network', 'dexes', ['network']" in written
    assert (
        "safe.add_foreign_key('fk_pools_dex_id_dexes', 'pools', 'dexes', ['dex_id'], ['id']"
        in written
    )
    assert "safe.drop_index_concurrently('ix_dexes_network'" in written  # the downgrade
    upgrade(url=migrated, script_location=scripts)
    assert _query(
        migrated,
        "select i.indisvalid, c.convalidated from pg_index i, pg_constraint c"
        " where i.indexrelid = 'public.ix_dexes_network'::regclass"
        " and c.conname = 'fk_pools_dex_id_dexes'",
    ) == [(True, True)]
    command.check(config)  # autogenerate finds nothing left to do
