"""`database` console command: the embedded server, migrations and health from a terminal.

    database up                      start/reuse the database, migrate to head, print URL and health
    database local up|down|status|url
    database migrate [--revision R]  print current -> target, then upgrade
    database downgrade REVISION
    database health
    database bootstrap               apply the Supabase-compatibility bootstrap to DATABASE_URL
    database advisors                Supabase's advisors on the database; exit 1 on WARN/ERROR

Exit codes: 0 success, 1 a clear error (printed without a traceback), 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sqlalchemy.engine import URL

from database.errors import DatabasePackageError


def _libpq(url: URL) -> str:
    """The URL as psql and other libpq tools take it (driver suffix removed, password hidden)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=True)


def _target_url() -> URL:
    from database.engine import ensure_local_database
    from database.settings import get_settings

    settings = get_settings()
    return settings.direct_url() or ensure_local_database(settings)


def _local(action: str) -> int:
    from database.engine import ensure_local_database
    from database.local import LocalServer
    from database.settings import get_settings

    settings = get_settings()
    server = LocalServer(settings.local_db_dir, preferred_port=settings.local_db_port)
    if action == "up":
        print(_libpq(ensure_local_database(settings)))
    elif action == "down":
        print("stopped" if server.down() else "not running")
    elif action == "status":
        status = server.status()
        state = "running" if status.running else "stopped"
        print(f"{state}  data={status.data_dir}  initialized={status.initialized}", end="")
        print(f"  pid={status.pid}  port={status.port}" if status.running else "")
        return 0 if status.running else 3
    elif action == "url":
        url = server.status().url()
        if url is None:
            print("the embedded database is not running: `database local up`", file=sys.stderr)
            return 3
        print(_libpq(url))
    return 0


def _migrate(revision: str, *, sql: bool) -> int:
    from database.errors import DatabaseUnavailableError
    from database.migrate import (
        current_revision,
        head_revision,
        require_migration_url,
        upgrade,
        upgrade_sql,
    )

    url = require_migration_url(_target_url())
    if sql:  # for review: what would run against this database, as SQL
        try:
            current = current_revision(url=url)
        except DatabaseUnavailableError:
            current = None  # unreachable: the SQL from an empty database
        print(f"-- {_libpq(url)}: {current or '(empty)'} -> head", flush=True)
        upgrade_sql(url=url, from_revision=current, output=sys.stdout)
        return 0
    target = head_revision() if revision == "head" else revision
    print(f"{_libpq(url)}: {current_revision(url=url) or '(empty)'} -> {target or '(empty)'}")
    upgrade(url=url, revision=revision)
    print(f"at {current_revision(url=url) or '(empty)'}")
    return 0


def _health() -> int:
    from database.engine import Database

    db = Database()
    try:
        health = db.health_check()
    finally:
        db.dispose()
    pool = health.pool
    print(
        f"ok  {health.user}@{health.database}  PostgreSQL {health.server_version}  "
        f"round trip {health.latency_ms:.2f} ms  "
        f"pool {pool.checked_out} in use, {pool.checked_in} idle, size {pool.size}"
    )
    return 0


def _advisors() -> int:
    from database.advisors import run_advisors

    url = _target_url()
    findings = run_advisors(url)
    for f in sorted(findings, key=lambda f: (not f.fails, f.level, f.name)):
        print(f"{f.level:<5}  {f.name:<28}  {f.detail}")
    failing = [f for f in findings if f.fails]
    print(f"{len(findings)} findings on {_libpq(url)}, {len(failing)} at WARN or ERROR")
    return 1 if failing else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="database", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start/reuse, migrate to head, print URL and health")
    local = sub.add_parser("local", help="the embedded development server")
    local.add_argument("action", choices=["up", "down", "status", "url"])
    migrate = sub.add_parser("migrate", help="upgrade to a revision (default head)")
    migrate.add_argument("--revision", default="head")
    migrate.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    downgrade = sub.add_parser("downgrade", help="downgrade to a revision (e.g. -1, base)")
    downgrade.add_argument("revision")
    sub.add_parser("health", help="server version, latency and pool status")
    sub.add_parser("bootstrap", help="apply the Supabase-compatibility bootstrap")
    sub.add_parser("advisors", help="Supabase's advisors; fails on WARN or ERROR")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "up":
            url = _target_url()
            print(f"database: {_libpq(url)}")
            _migrate("head", sql=False)
            return _health()
        if args.command == "local":
            return _local(args.action)
        if args.command == "migrate":
            return _migrate(args.revision, sql=args.sql)
        if args.command == "downgrade":
            from database.migrate import downgrade

            downgrade(url=_target_url(), revision=args.revision)
            return 0
        if args.command == "health":
            return _health()
        if args.command == "advisors":
            return _advisors()
        if args.command == "bootstrap":
            from database.bootstrap import apply_bootstrap

            apply_bootstrap(_target_url())
            print("bootstrap applied")
            return 0
    except DatabasePackageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
