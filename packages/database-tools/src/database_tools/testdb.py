"""Throwaway databases for a test run: created fresh, bootstrapped, migrated, dropped."""

from __future__ import annotations

import os
import secrets

from psycopg import sql
from sqlalchemy.engine import URL

from database.connect import Purpose, connect_raw
from database.migrations import upgrade
from database_tools.bootstrap import apply_bootstrap


def create_test_database(server: URL, *, prefix: str = "test", migrate: bool = True) -> URL:
    """Create `<prefix>_<pid>_<random>` on `server`, bootstrap it and `alembic upgrade head`."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    with connect_raw(server, purpose=Purpose.MIGRATE, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {} template template0").format(sql.Identifier(name)))
    url = server.set(database=name)
    apply_bootstrap(url)
    if migrate:
        upgrade(url=url)
    return url


def drop_test_database(url: URL) -> None:
    assert url.database is not None
    admin_url = url.set(database="postgres")
    with connect_raw(admin_url, purpose=Purpose.MIGRATE, autocommit=True) as admin:
        admin.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(url.database))
        )
