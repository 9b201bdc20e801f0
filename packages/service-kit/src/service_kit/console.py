"""What the command-line tools print: Rich tables and progress bars on a terminal, plain lines
when the output is a pipe or a file, JSON when a script asks for it (`--json`).

    out = Output(json=json_flag)
    out.table("runs", ["id", "status"], rows)          # or out.record({...}) for one object
    with progress("ingest", total=size, unit="bytes") as advance:
        advance(n, read=rows_read)

Everything a person reads goes to stderr except tables and records, which are the output.
"""

from __future__ import annotations

import json as jsonlib
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TextIO
from uuid import UUID

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value


def to_json(value: Any) -> str:
    return jsonlib.dumps(value, default=_plain, separators=(",", ":"))


class Output:
    """Tables and records on stdout, in the form the reader can use."""

    def __init__(self, *, json: bool = False, stream: TextIO | None = None) -> None:
        self.json = json
        self.stream = stream or sys.stdout
        self.rich = Console(file=self.stream) if self.stream.isatty() else None

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if self.json:
            records = [dict(zip(columns, row, strict=True)) for row in rows]
            self.stream.write(to_json(records) + "\n")
        elif self.rich is not None:
            table = Table(title=title, title_justify="left")
            for column in columns:
                table.add_column(column)
            for row in rows:
                table.add_row(*("" if v is None else str(_plain(v)) for v in row))
            self.rich.print(table)
        else:
            self.stream.write("\t".join(columns) + "\n")
            for row in rows:
                self.stream.write("\t".join("" if v is None else str(_plain(v)) for v in row))
                self.stream.write("\n")
        self.stream.flush()

    def record(self, title: str, values: Mapping[str, Any]) -> None:
        """One object: `key  value` lines (or a JSON object)."""
        if self.json:
            self.stream.write(to_json(dict(values)) + "\n")
            self.stream.flush()
            return
        width = max((len(k) for k in values), default=0)
        lines = [f"{k:<{width}}  {'' if v is None else _plain(v)}" for k, v in values.items()]
        if self.rich is not None:
            self.rich.print(f"[bold]{title}[/bold]")
            for line in lines:
                self.rich.print(line, highlight=False)
        else:
            self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()


Advance = Callable[..., None]


@contextmanager
def progress(
    description: str,
    *,
    total: float | None = None,
    stream: TextIO | None = None,
    every_seconds: float = 10.0,
) -> Iterator[Advance]:
    """A progress bar on a terminal (rate and ETA when `total` is known), a log line every
    `every_seconds` otherwise. Yields `advance(n, **fields)`: `n` units done since the last
    call, `fields` shown beside the bar (e.g. rows read, rejected)."""
    stream = stream or sys.stderr
    if stream.isatty():
        columns = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn() if total else MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
        ]
        with Progress(*columns, console=Console(file=stream), transient=False) as bar:
            task = bar.add_task(description, total=total, status="")

            def advance(n: float = 0, **fields: Any) -> None:
                status = "  ".join(f"{k} {_human(v)}" for k, v in fields.items())
                bar.update(task, advance=n, status=status)

            yield advance
        return
    started = last = time.monotonic()
    done = 0.0

    def advance_plain(n: float = 0, **fields: Any) -> None:
        nonlocal last, done
        done += n
        now = time.monotonic()
        if now - last < every_seconds:
            return
        last = now
        parts = [f"{k} {_human(v)}" for k, v in fields.items()]
        if total:
            parts.append(f"{100 * done / total:.0f}%")
        parts.append(f"{now - started:.0f} s")
        stream.write(f"{description}: {'  '.join(parts)}\n")
        stream.flush()

    yield advance_plain


def _human(value: Any) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}"
    return str(value)


def run(app: Any, argv: Sequence[str] | None = None) -> int:
    """Run a Typer app and return its exit code instead of exiting (for `main()` and tests).

    Usage errors print click's message and give 2, as they do on the command line.
    """
    import click

    try:
        result = app(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        sys.stderr.write("aborted\n")
        return 130
    return result if isinstance(result, int) else 0
