from __future__ import annotations

import pytest

from database.errors import ConfigurationError
from database.settings import is_transaction_pooler, load_settings


@pytest.mark.parametrize(
    "raw",
    [
        "postgres://u:p@db.example.com:5432/postgres",
        "postgresql://u:p@db.example.com:5432/postgres",
        "postgresql+psycopg://u:p@db.example.com:5432/postgres",
    ],
)
def test_urls_are_normalized_to_psycopg(raw: str) -> None:
    url = load_settings(database_url=raw).direct_url()
    assert url is not None
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port, url.database, url.username) == (
        "db.example.com",
        5432,
        "postgres",
        "u",
    )


@pytest.mark.parametrize(
    ("variable", "raw", "rule"),
    [
        ("DATABASE_URL", "mysql://u:p@h:3306/db", "must start with postgresql://"),
        ("DATABASE_URL", "not a url", "not a valid database URL"),
        ("DATABASE_URL", "postgresql://u:p@h:notaport/db", "not a valid database URL"),
        ("DATABASE_URL", "postgresql://u:p@h:70000/db", "outside 1-65535"),
        ("DATABASE_URL", "postgresql://u:p@h:5432", "names no database"),
        ("DATABASE_POOLER_URL", "postgresql://u:p@:6543/postgres", "has no host"),
    ],
)
def test_malformed_urls_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, rule: str
) -> None:
    monkeypatch.setenv(variable, raw)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert variable in message
    assert rule in message


def test_blank_url_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "  ")
    assert load_settings().database_url is None


def test_secrets_never_appear_in_repr_or_str(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:hunter2-db@h:5432/postgres")
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", "hunter2-key")
    monkeypatch.setenv("SUPABASE_JWT_SECRET", "hunter2-jwt")
    settings = load_settings()
    for text in (repr(settings), str(settings), repr(settings.direct_url())):
        assert "hunter2" not in text
    assert settings.supabase_jwt_secret is not None
    assert settings.supabase_jwt_secret.get_secret_value() == "hunter2-jwt"


def test_pool_defaults_and_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert (settings.db_pool_size, settings.db_max_overflow) == (5, 10)
    assert (settings.db_pool_timeout, settings.db_pool_recycle) == (30.0, 1800)
    assert settings.db_pool_pre_ping is True
    monkeypatch.setenv("DB_POOL_SIZE", "0")
    with pytest.raises(ConfigurationError, match="DB_POOL_SIZE"):
        load_settings()


def test_port_6543_is_the_transaction_pooler() -> None:
    pooler = load_settings(
        database_pooler_url="postgres://u:p@aws-0-eu.pooler.supabase.com:6543/postgres"
    ).pooler_url()
    session = load_settings(
        database_pooler_url="postgres://u:p@aws-0-eu.pooler.supabase.com:5432/postgres"
    ).pooler_url()
    assert pooler is not None and is_transaction_pooler(pooler)
    assert session is not None and not is_transaction_pooler(session)
