from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from database.errors import ConfigurationError
from database.settings import Settings, is_transaction_pooler, load_settings


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
        ("DATABASE_API_URL", "postgresql://u:p@:6543/postgres", "has no host"),
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
    assert settings.db_api_max_overflow == 0  # serving engines queue (test_whale_api shows it)
    assert (settings.db_pool_timeout, settings.db_pool_recycle) == (30.0, 1800)
    assert settings.db_pool_pre_ping is False
    monkeypatch.setenv("DB_POOL_SIZE", "0")
    with pytest.raises(ConfigurationError, match="DB_POOL_SIZE"):
        load_settings()


def test_port_6543_is_the_transaction_pooler() -> None:
    pooler = load_settings(
        database_pooler_url="postgres://u:p@aws-0-eu.pooler.supabase.com:6543/postgres"
    ).api_url(make_url("postgresql+psycopg://o@h/d"))
    session = load_settings(
        database_pooler_url="postgres://u:p@aws-0-eu.pooler.supabase.com:5432/postgres"
    ).api_url(make_url("postgresql+psycopg://o@h/d"))
    assert pooler is not None and is_transaction_pooler(pooler)
    assert session is not None and not is_transaction_pooler(session)


def test_remote_hosts_get_tls_local_ones_do_not(tmp_path: Path) -> None:
    remote = "postgresql://u:p@db.abc.supabase.co:5432/postgres"
    assert load_settings(database_url=remote).direct_url().query["sslmode"] == "require"  # type: ignore[union-attr]
    ca = tmp_path / "prod-ca-2021.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    verified = load_settings(database_url=remote, database_ssl_root_cert=ca).direct_url()
    assert verified is not None
    assert (verified.query["sslmode"], verified.query["sslrootcert"]) == ("verify-full", str(ca))
    explicit = load_settings(database_url=remote + "?sslmode=disable").direct_url()
    assert explicit is not None and explicit.query["sslmode"] == "disable"
    local = load_settings(
        database_url="postgresql://postgres@127.0.0.1:54322/postgres"
    ).direct_url()
    assert local is not None and "sslmode" not in local.query


def test_missing_ca_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="DATABASE_SSL_ROOT_CERT"):
        load_settings(database_ssl_root_cert=tmp_path / "nope.crt")


def test_env_example_loads_as_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A newcomer who copies .env.example to .env gets working defaults, not errors."""
    example = Path(__file__).resolve().parents[3] / ".env.example"
    (tmp_path / ".env").write_text(example.read_text())
    monkeypatch.chdir(tmp_path)
    for name in Settings.model_fields:  # only the file speaks (CI sets DATABASE_URL)
        monkeypatch.delenv(name.upper(), raising=False)
    settings = load_settings()
    assert settings.database_url is None and settings.supabase_url is None
    assert settings.db_pool_size == 5 and settings.local_db_port == 54329
    lines = example.read_text().splitlines()
    documented = {ln.split("=")[0] for ln in lines if "=" in ln and not ln.startswith("#")}
    assert documented == {name.upper() for name in type(settings).model_fields}
