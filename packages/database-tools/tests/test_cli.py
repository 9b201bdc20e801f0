"""The `database` console command: exit codes and messages a person sees."""

from __future__ import annotations

from pathlib import Path

import pytest

from database.settings import get_settings
from database_tools.cli import main


@pytest.fixture(autouse=True)
def _fresh_settings() -> None:
    get_settings.cache_clear()


def test_local_status_of_a_stopped_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOCAL_DB_DIR", str(tmp_path / "none"))
    assert main(["local", "status"]) == 3
    assert "stopped" in capsys.readouterr().out
    assert main(["local", "url"]) == 3
    assert "not running" in capsys.readouterr().err


def test_migrate_refuses_the_transaction_pooler(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(
        "DATABASE_URL", "postgresql://postgres.ref:pw@aws-0-eu.pooler.supabase.com:6543/postgres"
    )
    assert main(["migrate"]) == 1
    err = capsys.readouterr().err
    assert "transaction pooler" in err and "5432" in err
    assert "pw@" not in err


def test_malformed_url_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://u:p@h/db")
    assert main(["health"]) == 1
    assert "DATABASE_URL" in capsys.readouterr().err
