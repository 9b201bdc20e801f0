"""The migration safety gate (squawk over each revision's SQL) and the migrate plan."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pglast
import pytest
from sqlalchemy.engine import URL

from database.migrations import MIGRATIONS_DIR, current_revision, head_revision, upgrade
from database.settings import get_settings
from database_tools.cli import main
from database_tools.migration_lint import lint
from database_tools.migration_plan import (
    build_plan,
    parse_size,
    pending_revisions,
    refused,
    statement_locks,
)
from database_tools.testdb import create_test_database, drop_test_database


def test_every_revision_passes_with_its_declared_exceptions() -> None:
    results = lint()
    assert [r.revision.revision for r in results][:2] == ["0001", "0002"]
    assert [(r.revision.revision, r.violations, r.stale) for r in results if not r.ok] == []
    first = results[0]
    assert first.excused["prefer-text-field"] == 1  # alembic_version.version_num
    assert all(len(reason) > 30 for reason in first.revision.squawk_ignore.values())


def _scripts_with(tmp_path: Path, body: str, *, extra: str = "") -> Path:
    """A copy of the migrations with one more revision, `body` as its upgrade()."""
    scripts = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    lines = [
        "from alembic import op",
        "from database.migrations import safe",
        "",
        'revision = "zz_added"',
        f"down_revision = {head_revision()!r}",
        "branch_labels = None",
        "depends_on = None",
        extra,
        "",
        "def upgrade() -> None:",
        *(f"    {line}" for line in body.splitlines()),
        "",
        "def downgrade() -> None:",
        "    pass",
    ]
    (scripts / "versions" / "zz_9999_added.py").write_text("\n".join(lines) + "\n")
    return scripts


def test_a_plain_index_on_an_existing_table_fails_the_gate(tmp_path: Path) -> None:
    scripts = _scripts_with(
        tmp_path, 'op.create_index("ix_whale_transactions_chain", "whale_transactions", ["chain"])'
    )
    results = {r.revision.revision: r for r in lint(script_location=scripts)}
    added = results["zz_added"]
    assert not added.ok
    assert [v.rule for v in added.violations] == ["require-concurrent-index-creation"]
    assert all(results[r].ok for r in ("0001", "0002"))


def test_the_safe_form_passes_and_an_exception_needs_its_reason(tmp_path: Path) -> None:
    safe_form = _scripts_with(
        tmp_path / "a",
        'safe.create_index_concurrently("ix_whale_transactions_chain",'
        ' "whale_transactions", ["chain"])\n'
        'safe.add_check_constraint("ck_tokens_symbol_short", "tokens",'
        ' "char_length(symbol) < 40")',
    )
    assert all(r.ok for r in lint(script_location=safe_form))
    excused = _scripts_with(
        tmp_path / "b",
        'op.create_index("ix_whale_transactions_chain", "whale_transactions", ["chain"])',
        extra='squawk_ignore = {"require-concurrent-index-creation":'
        ' "whale_transactions is empty in every deployment (test)"}',
    )
    assert all(r.ok for r in lint(script_location=excused))
    stale = _scripts_with(
        tmp_path / "c",
        'op.execute("select 1")',
        extra='squawk_ignore = {"ban-drop-column": "nothing here drops a column any more"}',
    )
    added = {r.revision.revision: r for r in lint(script_location=stale)}["zz_added"]
    assert added.stale == ["ban-drop-column"] and not added.ok


def test_migration_lint_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migration-lint"]) == 0
    assert "0002\tok" in capsys.readouterr().out


@pytest.fixture
def at_first_revision(database_server_url: URL) -> Iterator[URL]:
    url = create_test_database(database_server_url, prefix="plan", migrate=False)
    upgrade(url=url, revision="0001")
    yield url
    drop_test_database(url)


def test_plan_shows_locks_and_live_sizes(at_first_revision: URL) -> None:
    pending = pending_revisions(current=current_revision(url=at_first_revision))
    assert pending[0].revision == "0002"  # the plan of the revision after 0001
    steps = build_plan(revisions=pending[:1], url=at_first_revision)
    index = next(s for s in steps if s.statement.startswith("CREATE INDEX ix_alert_events_pending"))
    assert (index.mode, index.table, index.scans, index.new) == (
        "SHARE",
        "alert_events",
        True,
        False,
    )
    assert index.bytes is not None and index.bytes > 0 and index.rows == 0
    column = next(s for s in steps if s.statement.startswith("ALTER TABLE alert_events ADD"))
    assert (column.mode, column.scans) == ("ACCESS EXCLUSIVE", False)  # now(): catalog only
    check = next(s for s in steps if "ck_alerts_webhook_secret_length" in s.statement)
    assert (check.mode, check.table, check.scans) == ("ACCESS EXCLUSIVE", "alerts", True)
    created = next(s for s in steps if s.statement.startswith("CREATE TABLE evaluator_cursors"))
    assert created.new and created.bytes is None
    assert {s.table for s in refused(steps, max_bytes=parse_size("1"))} == {
        "alert_events",
        "alerts",
    }
    assert refused(steps, max_bytes=parse_size("10 GB")) == []


def test_migrate_refuses_a_large_blocking_lock_unless_declared(
    at_first_revision: URL,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", at_first_revision.render_as_string(hide_password=False))
    get_settings.cache_clear()
    try:
        assert main(["migrate", "--max-lock-table-size", "1kB"]) == 1
        err = capsys.readouterr().err
        assert "refused: revision 0002 takes SHARE on public.alert_events" in err
        assert "exclusive_lock_ok" in err
        assert current_revision(url=at_first_revision) == "0001"  # nothing was applied
        assert main(["migrate", "--plan"]) == 0
        out = capsys.readouterr().out
        assert "ACCESS EXCLUSIVE\tpublic.alerts" in out
        assert current_revision(url=at_first_revision) == "0001"
        assert main(["migrate", "--max-lock-table-size", "1GB"]) == 0
        assert current_revision(url=at_first_revision) == head_revision()
    finally:
        get_settings.cache_clear()


def test_a_declared_table_is_not_refused(tmp_path: Path, at_first_revision: URL) -> None:
    scripts = _scripts_with(
        tmp_path,
        'op.create_index("ix_tokens_symbol_plain", "tokens", ["symbol"])',
        extra='exclusive_lock_ok = {"tokens": "tokens holds a few hundred rows everywhere"}',
    )
    pending = pending_revisions(current="0002", script_location=scripts)
    steps = build_plan(revisions=pending, url=at_first_revision, script_location=scripts)
    index = next(s for s in steps if "ix_tokens_symbol_plain" in s.statement)
    assert index.mode == "SHARE" and index.declared_ok is not None
    assert refused(steps, max_bytes=1) == []


def test_a_key_over_a_built_index_is_brief_and_a_plain_key_scans() -> None:
    def scans(sql: str) -> bool:
        (lock,) = statement_locks(pglast.parse_sql(sql)[0].stmt, validated=set(), index_tables={})
        return lock.scans

    assert not scans("alter table public.t add constraint uq_t_a unique using index uq_t_a")
    assert scans("alter table public.t add constraint uq_t_a unique (a)")
