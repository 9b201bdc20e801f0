"""Supabase's own linter (the CLI's `db advisors`) on the migrated schema, and proof it can fail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from database.errors import ConfigurationError
from database_tools.advisors import run_advisors
from database_tools.testdb import create_test_database, drop_test_database


def test_migrated_schema_has_no_warn_or_error(database_url: URL) -> None:
    findings = run_advisors(database_url)
    assert [f for f in findings if f.fails] == []
    # The CLI really looked: an empty database has unused indexes to report at INFO.
    assert any(f.name == "unused_index" for f in findings)


@pytest.fixture
def broken_database(database_server_url: URL) -> Iterator[URL]:
    url = create_test_database(database_server_url, prefix="advisors")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("alter table public.whale_transactions disable row level security"))
        conn.execute(text("create policy loose on public.tokens for delete to anon using (true)"))
    engine.dispose()
    yield url
    drop_test_database(url)


def test_the_gate_fails_when_rls_is_off(broken_database: URL) -> None:
    failing = {(f.level, f.name) for f in run_advisors(broken_database) if f.fails}
    assert ("ERROR", "policy_exists_rls_disabled") in failing
    assert ("WARN", "rls_policy_always_true") in failing


REPO = Path(__file__).resolve().parents[3]


def test_the_supabase_cli_accepts_the_project_config(database_url: URL, tmp_path: Path) -> None:
    config = (REPO / "supabase" / "config.toml").read_text()
    assert "[db.migrations]\n# Off: Alembic owns DDL" in config
    run_advisors(database_url, workdir=REPO)  # raises when the CLI cannot load the config
    broken = tmp_path / "supabase"
    broken.mkdir()
    (broken / "config.toml").write_text(config.replace("major_version = 15", "major_version = 99"))
    with pytest.raises(ConfigurationError, match="major_version"):
        run_advisors(database_url, workdir=tmp_path)
