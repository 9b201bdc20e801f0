"""Apply the Supabase-compatibility bootstrap (`supabase_compat.sql`) to a plain PostgreSQL.

Every database this repository creates itself (the embedded one, test databases, CI's Debian
PostgreSQL) gets it; a real Supabase database is detected by the SQL itself and refused.
"""

from __future__ import annotations

import time
from importlib.resources import files
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from sqlalchemy.engine import URL

from database.connect import Purpose, connect_raw
from database.errors import DatabasePackageError


class SupabaseDatabaseRefusedError(DatabasePackageError):
    """The compatibility bootstrap was pointed at a real Supabase database and refused to run."""


BOOTSTRAP_SQL = files("database_tools").joinpath("supabase_compat.sql").read_text(encoding="utf-8")

# Raised by the SQL's own guard (see the first block of supabase_compat.sql).
_REFUSED_SQLSTATE = "SBREF"
# Roles are cluster-wide: two databases bootstrapped at once can race on CREATE/ALTER ROLE.
_RACES = (pg_errors.DuplicateObject, pg_errors.UniqueViolation, pg_errors.InternalError_)


def apply_bootstrap(url: URL, *, attempts: int = 3) -> None:
    """Run the bootstrap in one transaction on the database `url` names."""
    for attempt in range(1, attempts + 1):
        try:
            with connect_raw(url, purpose=Purpose.MIGRATE) as conn:
                run_bootstrap(conn)
            return
        except _RACES:
            if attempt == attempts:
                raise
            time.sleep(0.2 * attempt)


def run_bootstrap(conn: psycopg.Connection[Any]) -> None:
    """Execute the bootstrap on an open connection (its transaction is the caller's)."""
    try:
        conn.execute(BOOTSTRAP_SQL.encode())
    except psycopg.Error as exc:
        if exc.sqlstate != _REFUSED_SQLSTATE:
            raise
        diag = exc.diag
        raise SupabaseDatabaseRefusedError(
            f"{diag.message_primary}: {diag.message_detail} {diag.message_hint}"
        ) from None
