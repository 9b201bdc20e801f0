"""Throwaway databases for a test run: created fresh, bootstrapped, migrated, dropped."""

from __future__ import annotations

import os
import secrets

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL

from database.bootstrap import apply_bootstrap, psycopg_conninfo
from database.migrate import upgrade


def server_url() -> URL:
    """The server tests run on: DATABASE_URL, else the embedded server (started if needed)."""
    from database.engine import ensure_local_database
    from database.settings import load_settings

    settings = load_settings()
    return settings.direct_url() or ensure_local_database(settings)


def create_test_database(server: URL, *, prefix: str = "test", migrate: bool = True) -> URL:
    """Create `<prefix>_<pid>_<random>` on `server`, bootstrap it and `alembic upgrade head`."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(psycopg_conninfo(server), autocommit=True) as admin:
        admin.execute(sql.SQL("create database {} template template0").format(sql.Identifier(name)))
    url = server.set(database=name)
    apply_bootstrap(url)
    if migrate:
        upgrade(url=url)
    return url


def drop_test_database(url: URL) -> None:
    assert url.database is not None
    with psycopg.connect(psycopg_conninfo(url.set(database="postgres")), autocommit=True) as admin:
        admin.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(url.database))
        )
