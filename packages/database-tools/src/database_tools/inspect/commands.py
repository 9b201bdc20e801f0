"""`database inspect <verb>` and `database verify`: connect, run, print (Rich tables on a
terminal, tab-separated lines in a pipe, JSON with `--json`: sizes in bytes there)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from database.connect import Purpose, connect_raw, display_url
from database.errors import DatabasePackageError
from database_tools.inspect import queries
from database_tools.inspect.queries import Conn, Result
from service_kit.console import Output

app = typer.Typer(
    name="inspect",
    help="Read what PostgreSQL records about this database (every verb also --json).",
    no_args_is_help=True,
    add_completion=False,
)
JsonFlag = Annotated[bool, typer.Option("--json", help="machine-readable output")]
Limit = Annotated[int, typer.Option(min=1, help="how many rows")]

# Columns holding bytes: shown as sizes to people, left as numbers in JSON.
_SIZE_COLUMNS = {
    "size", "total_size", "table_size", "index_size", "database_size", "wasted",
    "retained_wal", "temp_bytes",
}  # fmt: skip


def _pretty(size: Any) -> str:
    from database_tools.migration_plan import pretty_size

    return pretty_size(int(size)) if size is not None else ""


def show(results: list[Result], *, json: bool) -> None:
    out = Output(json=json)
    for result in results:
        rows = result.rows
        if not json:
            sized = [i for i, c in enumerate(result.columns) if c in _SIZE_COLUMNS]
            rows = [
                tuple(_pretty(v) if i in sized else v for i, v in enumerate(row)) for row in rows
            ]
        out.table(result.title, list(result.columns), rows)
        if result.note and not json:
            typer.echo(f"note: {result.note}", err=True)


def fail(exc: BaseException) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(1)


@contextmanager
def connection() -> Iterator[Conn]:
    """An autocommit connection to DATABASE_URL, else the embedded server (started)."""
    from database.settings import get_settings
    from database_tools.embedded import server_url

    url = server_url(get_settings())
    with connect_raw(url, purpose=Purpose.SERVICE, autocommit=True) as conn:
        # Reading statistics should never wait long behind someone's lock.
        conn.execute("set lock_timeout = '5s'")
        typer.echo(f"database: {display_url(url)}", err=True)
        yield conn


def _run(json: bool, fetch: Callable[[Conn], Result | list[Result]]) -> None:
    try:
        with connection() as conn:
            found = fetch(conn)
    except DatabasePackageError as exc:
        raise fail(exc) from None
    show(found if isinstance(found, list) else [found], json=json)


def _width(json: bool) -> int:
    return 10_000 if json else 80


@app.command()
def outliers(limit: Limit = 10, json: JsonFlag = False) -> None:
    """Statements by total time (pg_stat_statements): calls, total/mean/max ms, rows, share."""
    _run(json, lambda c: queries.outliers(c, limit=limit, width=_width(json)))


@app.command()
def calls(limit: Limit = 10, json: JsonFlag = False) -> None:
    """Statements by number of calls (pg_stat_statements)."""
    _run(json, lambda c: queries.calls(c, limit=limit, width=_width(json)))


@app.command()
def slow(
    min_mean_ms: Annotated[float, typer.Option(help="mean execution time threshold")] = 100.0,
    min_calls: Annotated[int, typer.Option(help="ignore statements called fewer times")] = 1,
    limit: Limit = 20,
    json: JsonFlag = False,
) -> None:
    """Statements whose mean execution time is at least --min-mean-ms."""
    _run(
        json,
        lambda c: queries.slow(
            c, min_mean_ms=min_mean_ms, min_calls=min_calls, limit=limit, width=_width(json)
        ),
    )


@app.command("index-stats")
def index_stats(json: JsonFlag = False) -> None:
    """Every index: size, scans, unused, duplicate of / prefix of another index."""
    _run(json, queries.index_stats)


@app.command("table-stats")
def table_stats(json: JsonFlag = False) -> None:
    """Every table: rows, sizes, sequential vs index scans, dead rows, last vacuum/analyze."""
    _run(json, queries.table_stats)


@app.command()
def bloat(json: JsonFlag = False) -> None:
    """Estimated bloat of tables and b-tree indexes (from pg_stats; ANALYZE first)."""
    _run(json, queries.bloat)


@app.command("cache-hit")
def cache_hit(json: JsonFlag = False) -> None:
    """Buffer cache hit ratios of indexes and tables."""
    _run(json, queries.cache_hit)


@app.command()
def locks(json: JsonFlag = False) -> None:
    """Locks held on tables by other sessions, and every lock waited for, with their age."""
    _run(json, lambda c: queries.locks(c, width=200 if json else 60))


@app.command()
def blocking(json: JsonFlag = False) -> None:
    """Who waits on whom, and for how long."""
    _run(json, lambda c: queries.blocking(c, width=200 if json else 60))


@app.command("long-running")
def long_running(
    min_seconds: Annotated[float, typer.Option(help="report from this duration on")] = 300.0,
    json: JsonFlag = False,
) -> None:
    """Queries running, or transactions left idle, for at least --min-seconds."""
    _run(json, lambda c: queries.long_running(c, min_seconds=min_seconds, width=_width(json)))


@app.command("vacuum-stats")
def vacuum_stats(json: JsonFlag = False) -> None:
    """Dead rows against the autovacuum threshold, last vacuum and analyze per table."""
    _run(json, queries.vacuum_stats)


@app.command("db-stats")
def db_stats(json: JsonFlag = False) -> None:
    """Sizes, cache hit ratio, connections, commits, deadlocks, temp files, stats age."""
    _run(json, queries.db_stats)


@app.command()
def replication(json: JsonFlag = False) -> None:
    """Replication slots (retained WAL) and standbys (lag)."""
    _run(json, queries.replication)


@app.command()
def partitions(json: JsonFlag = False) -> None:
    """Time partitions per table: ranges, rows, rows caught by the default partition, and
    what retention would drop or archive now (`database maintain` applies it)."""
    _run(json, queries.partitions)


@app.command()
def relationships(json: JsonFlag = False) -> None:
    """The foreign-key graph: each foreign key, then each table's references and referrers."""
    _run(json, queries.relationships)


@app.command("reset-stats")
def reset_stats(json: JsonFlag = False) -> None:
    """Zero pg_stat_statements and the statistics counters of this database."""
    _run(json, queries.reset_stats)


@app.command()
def report(
    config: Annotated[
        Path | None,
        typer.Option(help="TOML file with thresholds (default: [tool.database.report])"),
    ] = None,
    json: JsonFlag = False,
) -> None:
    """Every rule with pass/fail and what breaks it; exit 1 when a rule fails."""
    from database_tools.inspect.report import load_thresholds, run_report

    try:
        thresholds = load_thresholds(config=config)
        with connection() as conn:
            results = run_report(conn, thresholds)
    except DatabasePackageError as exc:
        raise fail(exc) from None
    rows = [
        (r.name, r.status, "; ".join(r.offenders) if json else _short(r.offenders), r.detail)
        for r in results
    ]
    if json:
        Output(json=True).table(
            "report",
            ["rule", "status", "offenders", "detail"],
            [(r.name, r.status, r.offenders, r.detail) for r in results],
        )
    else:
        Output().table("report", ["rule", "status", "offenders", "detail"], rows)
    failed = [r for r in results if r.failed]
    typer.echo(f"{len(results)} rules, {len(failed)} failing", err=True)
    if failed:
        raise typer.Exit(1)


def _short(offenders: list[str], keep: int = 3) -> str:
    shown = "; ".join(offenders[:keep])
    more = len(offenders) - keep
    return shown + (f"; … {more} more" if more > 0 else "")


def verify(
    quick: Annotated[
        bool, typer.Option("--quick", help="skip heapallindexed (index structure only)")
    ] = False,
    sequence_threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="flag sequences past this share of range")
    ] = 0.8,
    schema: Annotated[
        list[str] | None,
        typer.Option(help="schemas checked for primary keys and RLS (default: exposed ones)"),
    ] = None,
    json: JsonFlag = False,
) -> None:
    """Integrity: amcheck (indexes, heap), rows breaking NOT VALID constraints, sequences near
    their limit, tables without a primary key or with RLS off; exit 1 on any finding."""
    from database_tools.inspect.verify import run_verify, summary

    try:
        with connection() as conn:
            checks = run_verify(
                conn,
                heapallindexed=not quick,
                sequence_threshold=sequence_threshold,
                schemas=schema or None,
            )
    except DatabasePackageError as exc:
        raise fail(exc) from None
    out = Output(json=json)
    findings = [f for c in checks for f in c.findings]
    if json:
        out.record(
            "verify",
            {
                "checks": [dict(zip(_CHECK_COLUMNS, row, strict=True)) for row in summary(checks)],
                "findings": [vars(f) for f in findings],
            },
        )
    else:
        out.table("verify", list(_CHECK_COLUMNS), summary(checks))
        if findings:
            out.table(
                "findings",
                ["check", "object", "detail"],
                [(f.check, f.object, f.detail) for f in findings],
            )
    typer.echo(f"{len(checks)} checks, {len(findings)} findings", err=True)
    if findings:
        raise typer.Exit(1)


_CHECK_COLUMNS = ("check", "status", "examined", "findings", "skipped because")
