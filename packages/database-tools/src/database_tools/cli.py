"""`database`: the embedded server, migrations (plan, lint), partition maintenance, health,
advisors, the schema reference, `inspect <verb>` / `inspect report` and `verify`.

Exit codes: 0 success, 1 a clear error (printed without a traceback) or a failing gate
(`inspect report`, `verify`, `migration-lint`, a refused plan), 2 bad usage,
3 `local status`/`local url` when the embedded server is not running.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.engine import URL

from database.connect import display_url
from database.errors import DatabasePackageError
from database.health import ReplicaHealth
from database.settings import get_settings
from database_tools.inspect import commands as inspect_commands
from service_kit.console import Output, run

app = typer.Typer(
    name="database",
    help="The database: embedded server, migrations, health, advisors, schema reference, "
    "inspect, verify.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
JsonFlag = Annotated[bool, typer.Option("--json", help="machine-readable output")]
app.add_typer(inspect_commands.app, name="inspect")
app.command("verify")(inspect_commands.verify)


def _fail(exc: BaseException) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(1)


def _target_url() -> URL:
    """DATABASE_URL, else the embedded server (started: these are the tools that start it)."""
    from database_tools.embedded import server_url

    return server_url(get_settings())


def _migrate(revision: str = "head", *, quiet: bool = False) -> None:
    from database.migrations import current_revision, head_revision, require_migration_url, upgrade

    url = require_migration_url(_target_url())
    target = head_revision() if revision == "head" else revision
    current = current_revision(url=url) or "(empty)"
    typer.echo(f"{display_url(url)}: {current} -> {target}", err=quiet)
    upgrade(url=url, revision=revision)
    typer.echo(f"at {current_revision(url=url) or '(empty)'}", err=quiet)


def _health(json: bool) -> None:
    from database.sessions import Database

    db = Database(url=_target_url())
    try:
        health = db.health_check()
    finally:
        db.dispose()
    values: dict[str, Any] = {**asdict(health), "pool": asdict(health.pool)}
    replicas = values.pop("replicas")
    if not json:  # one line per read URL
        values |= {f"replica {i}": _replica_line(r) for i, r in enumerate(health.replicas, 1)}
    else:
        values["replicas"] = replicas
    Output(json=json).record("health", {"status": "ok", **values})


def _replica_line(replica: ReplicaHealth) -> str:
    if replica.standby is None:
        return f"{replica.url}: unreachable ({replica.error})"
    if not replica.standby:
        return f"{replica.url}: not a standby (a primary: no replay lag)"
    seconds = "unknown" if replica.lag_seconds is None else f"{replica.lag_seconds} s"
    return f"{replica.url}: standby, lag {replica.lag_bytes} bytes, {seconds}"


@app.command()
def up(json: JsonFlag = False) -> None:
    """Start/reuse the database (embedded unless DATABASE_URL), migrate to head, show health."""
    try:
        typer.echo(f"database: {display_url(_target_url())}", err=json)
        _migrate()
        _health(json)
    except DatabasePackageError as exc:
        raise _fail(exc) from None


class LocalAction(StrEnum):
    UP = "up"
    DOWN = "down"
    STATUS = "status"
    URL = "url"


@app.command()
def local(action: LocalAction, json: JsonFlag = False) -> None:
    """The embedded development server: up, down, status, url."""
    from database_tools.embedded import LocalServer, start_embedded

    settings = get_settings()
    server = LocalServer(settings.local_db_dir, preferred_port=settings.local_db_port)
    try:
        if action is LocalAction.UP:
            typer.echo(display_url(start_embedded(settings)))
        elif action is LocalAction.DOWN:
            typer.echo("stopped" if server.down() else "not running")
        elif action is LocalAction.STATUS:
            status = server.status()
            state = "running" if status.running else "stopped"
            Output(json=json).record(
                "embedded database",
                {
                    "state": state,
                    "data": str(status.data_dir),
                    "initialized": status.initialized,
                    "pid": status.pid,
                    "port": status.port,
                },
            )
            if not status.running:
                raise typer.Exit(3)
        else:
            url = server.status().url()
            if url is None:
                typer.echo("the embedded database is not running: `database local up`", err=True)
                raise typer.Exit(3)
            typer.echo(display_url(url))
    except DatabasePackageError as exc:
        raise _fail(exc) from None


def _plan_rows(steps: list[Any]) -> list[tuple[Any, ...]]:
    from database_tools.migration_plan import pretty_size

    rows = []
    for step in steps:
        size = "new" if step.new else pretty_size(step.bytes)
        count = "" if step.new or step.rows is None else f"{step.rows:,}"
        rows.append(
            (step.revision, step.mode, step.qualified(), count, size, step.holds, step.statement)
        )
    return rows


def _show_plan(url: URL, *, revision: str, json: bool, max_lock_table_size: str | None) -> bool:
    """Print the plan; False when --max-lock-table-size refuses it."""
    from database.migrations import current_revision
    from database_tools.migration_plan import (
        build_plan,
        parse_size,
        pending_revisions,
        pretty_size,
        refused,
    )

    limit = None
    if max_lock_table_size is not None:
        try:
            limit = parse_size(max_lock_table_size)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--max-lock-table-size") from None
    target = "heads" if revision == "head" else revision
    pending = pending_revisions(current=current_revision(url=url), target=target)
    steps = build_plan(revisions=pending, url=url)
    columns = ["revision", "lock", "table", "rows", "size", "holds", "statement"]
    Output(json=json).table("migration plan", columns, _plan_rows(steps))
    if not pending:
        typer.echo("nothing to apply: the database is at the target revision", err=True)
    blocked = refused(steps, max_bytes=limit) if limit is not None else []
    for step in blocked:
        typer.echo(
            f"refused: revision {step.revision} takes {step.mode} on {step.qualified()} "
            f"({pretty_size(step.bytes)}, over {max_lock_table_size}) while it scans or "
            f"rewrites it: {step.statement}",
            err=True,
        )
    if blocked:
        typer.echo(
            "Use the safe forms (database.migrations.safe), or declare the table in the "
            'revision: exclusive_lock_ok = {"<table>": "<why it is safe>"}',
            err=True,
        )
    return not blocked


@app.command()
def migrate(
    revision: Annotated[str, typer.Option(help="target revision")] = "head",
    sql: Annotated[bool, typer.Option("--sql", help="print the SQL instead of running it")] = False,
    plan: Annotated[
        bool, typer.Option("--plan", help="print the plan (statements, locks, sizes) only")
    ] = False,
    max_lock_table_size: Annotated[
        str | None,
        typer.Option(
            "--max-lock-table-size",
            help="refuse statements that block writes while scanning a table above this "
            "size (e.g. 500MB), unless the revision declares it in exclusive_lock_ok",
        ),
    ] = None,
    json: JsonFlag = False,
) -> None:
    """Print the plan (each statement, its lock, the live size of its table), then upgrade to
    a revision (default head)."""
    from database.errors import DatabaseUnavailableError
    from database.migrations import current_revision, require_migration_url, upgrade_sql

    try:
        if sql:
            # For review: what would run against this database, as SQL.
            url = require_migration_url(get_settings().direct_url() or _target_url())
            try:
                current = current_revision(url=url)
            except DatabaseUnavailableError:
                current = None  # unreachable: the SQL from an empty database
            print(f"-- {display_url(url)}: {current or '(empty)'} -> head", flush=True)
            upgrade_sql(url=url, from_revision=current, output=sys.stdout)
            return
        url = require_migration_url(_target_url())
        allowed = _show_plan(
            url, revision=revision, json=json, max_lock_table_size=max_lock_table_size
        )
        if not allowed:
            raise typer.Exit(1)
        if not plan:
            _migrate(revision, quiet=json)
    except DatabasePackageError as exc:
        raise _fail(exc) from None


@app.command("migration-lint")
def migration_lint(
    keep: Annotated[
        Path | None, typer.Option(help="keep each revision's SQL file in this folder")
    ] = None,
    json: JsonFlag = False,
) -> None:
    """Lint every revision's SQL with squawk; exit 1 on a finding its revision does not
    excuse (squawk_ignore = {"rule": "reason"} in the revision file) or a stale excuse."""
    from database_tools.migration_lint import lint

    try:
        results = lint(keep_dir=keep)
    except DatabasePackageError as exc:
        raise _fail(exc) from None
    rows = []
    for result in results:
        excused = ", ".join(f"{rule} ({n})" for rule, n in sorted(result.excused.items()))
        problems = [v.describe() for v in result.violations]
        problems += [f"stale squawk_ignore entry: {rule} matches nothing" for rule in result.stale]
        status = "ok" if result.ok else "FAIL"
        rows.append((result.revision.revision, status, excused, "; ".join(problems)))
    Output(json=json).table(
        "migration lint (squawk)", ["revision", "status", "excused", "problems"], rows
    )
    failing = [r for r in results if not r.ok]
    typer.echo(
        f"{len(results)} revisions linted, {len(failing)} failing"
        + (
            ": fix them (database.migrations.safe has the safe forms), or declare "
            'squawk_ignore = {"<rule>": "<why it is safe>"} in the revision'
            if failing
            else ""
        ),
        err=True,
    )
    if failing:
        raise typer.Exit(1)


@app.command()
def downgrade(revision: Annotated[str, typer.Argument(help="e.g. -1 or base")]) -> None:
    """Downgrade to a revision."""
    from database.migrations import downgrade as run_downgrade

    try:
        run_downgrade(url=_target_url(), revision=revision)
    except DatabasePackageError as exc:
        raise _fail(exc) from None


@app.command()
def maintain(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print what would be done, change nothing")
    ] = False,
    json: JsonFlag = False,
) -> None:
    """Time partitions, from the models' declarations: make the partitions ahead, retire the
    expired ones (detach, then drop or move to the archive schema; never a DELETE). Where
    pg_partman is installed, its run_maintenance() does it."""
    from database import maintenance
    from database.connect import Purpose, connect_raw

    try:
        url = _target_url()
        with connect_raw(url, purpose=Purpose.SERVICE, autocommit=True) as conn:
            actions = maintenance.maintain(conn, dry_run=dry_run)
    except DatabasePackageError as exc:
        raise _fail(exc) from None
    Output(json=json).table(
        "maintain (dry run)" if dry_run else "maintain",
        ["table", "action", "target", "detail"],
        [(a.table, a.action, a.target, a.detail) for a in actions],
    )
    verb = "would be done" if dry_run else "done"
    typer.echo(f"{display_url(url)}: {len(actions)} step(s) {verb}", err=True)


@app.command()
def health(json: JsonFlag = False) -> None:
    """Server version, round-trip latency, pool status, and per read URL (DATABASE_READ_URL)
    whether it is a standby and its replay lag in bytes and seconds."""
    try:
        _health(json)
    except DatabasePackageError as exc:
        raise _fail(exc) from None


@app.command()
def housekeeping(json: JsonFlag = False) -> None:
    """Mark collection runs whose process died (no one holds their lock) as abandoned."""
    from database.sessions import Database
    from database_tools.housekeeping import abandon_dead_runs

    try:
        db = Database(url=_target_url())
        try:
            abandoned = abandon_dead_runs(db)
        finally:
            db.dispose()
    except DatabasePackageError as exc:
        raise _fail(exc) from None
    Output(json=json).table(
        "abandoned runs",
        ["id", "collector", "owner", "records_collected"],
        [(r.id, r.collector, r.owner, r.records_collected) for r in abandoned],
    )
    typer.echo(f"{len(abandoned)} dead run(s) marked abandoned", err=True)


@app.command()
def bootstrap() -> None:
    """Apply the Supabase-compatibility bootstrap (refused on a real Supabase database)."""
    from database_tools.bootstrap import apply_bootstrap

    try:
        apply_bootstrap(_target_url())
    except DatabasePackageError as exc:
        raise _fail(exc) from None
    typer.echo("bootstrap applied")


@app.command()
def advisors(json: JsonFlag = False) -> None:
    """Supabase's database advisors (CLI via npx); exit 1 on any WARN or ERROR."""
    from database_tools.advisors import run_advisors

    try:
        url = _target_url()
        findings = run_advisors(url)
    except DatabasePackageError as exc:
        raise _fail(exc) from None
    ordered = sorted(findings, key=lambda f: (not f.fails, f.level, f.name))
    Output(json=json).table(
        "advisors", ["level", "name", "detail"], [(f.level, f.name, f.detail) for f in ordered]
    )
    failing = [f for f in findings if f.fails]
    typer.echo(
        f"{len(findings)} findings on {display_url(url)}, {len(failing)} at WARN or ERROR", err=True
    )
    if failing:
        raise typer.Exit(1)


@app.command()
def docs(
    out: Annotated[Path, typer.Option(help="where the schema reference goes")] = Path(
        "docs/schema.md"
    ),
    check: Annotated[bool, typer.Option("--check", help="exit 1 when the file is stale")] = False,
) -> None:
    """Write the schema reference (Mermaid ER diagram, tables, access) generated from the code."""
    from database_tools.schema_docs import render

    text = render()
    if check:
        current = out.read_text(encoding="utf-8") if out.exists() else ""
        if current != text:
            typer.echo(f"{out} is stale: run `make docs` and commit it", err=True)
            raise typer.Exit(1)
        typer.echo(f"{out} is current")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {out}")


def main(argv: Sequence[str] | None = None) -> int:
    return run(app, argv)


if __name__ == "__main__":
    sys.exit(main())
