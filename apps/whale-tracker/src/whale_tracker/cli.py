"""`whale-tracker`: ingest, generate, serve.

Exit codes of `ingest`:
    0    every record was written (or deliberately skipped/filtered)
    1    finished, but some records were rejected (see the rejects file)
    2    bad usage
    3    --strict: stopped at the first bad record (earlier batches stay written)
    4    the input cannot be used (unreadable, unsupported encoding or format, an Etherscan
         error body)
    5    the database is unavailable or refused a write
    6    an unexpected error (a bug): the run is recorded as failed, with the error
    130  interrupted by SIGINT (143: SIGTERM); the run is recorded as failed, with its counts
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import typer

from database.errors import DatabasePackageError
from database.schema import Chain
from service_kit.console import Output, progress, run
from service_kit.serve import add_serve_command
from whale_tracker.ingest.sources import Format

EXIT_REJECTS, EXIT_USAGE, EXIT_STRICT, EXIT_SOURCE, EXIT_DATABASE = 1, 2, 3, 4, 5
EXIT_UNEXPECTED = 6
EXIT_SIGNAL_BASE = 128  # + the signal's number, as shells report it

app = typer.Typer(
    name="whale-tracker",
    help="Ingest, score and serve large on-chain transfers.",
    epilog=__doc__.split("\n\n", 1)[1].replace("\n", "\n\n") if __doc__ else None,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _amount(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise typer.BadParameter(f"not a decimal number: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise typer.BadParameter(f"must be a non-negative number: {text!r}")
    return value


Amount = Annotated[Decimal | None, typer.Option(parser=_amount, metavar="ETH")]


@app.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(metavar="PATH...", help="files, or - for stdin")],
    fmt: Annotated[Format | None, typer.Option("--format", help="default: detected")] = None,
    chain: Annotated[
        Chain, typer.Option(help="chain of records that do not name one")
    ] = Chain.ETHEREUM,
    eth_usd: Annotated[
        Decimal | None,
        typer.Option(
            parser=_amount, metavar="PRICE", help="USD per ETH; default: latest ETH quote"
        ),
    ] = None,
    min_value_eth: Amount = None,
    score_floor_eth: Annotated[Decimal, typer.Option(parser=_amount, metavar="ETH")] = Decimal(100),
    score_ceiling_eth: Annotated[Decimal, typer.Option(parser=_amount, metavar="ETH")] = Decimal(
        100_000
    ),
    strict: Annotated[bool, typer.Option(help="stop at the first bad record")] = False,
    rejects: Annotated[Path, typer.Option(metavar="FILE")] = Path("rejects.jsonl"),
    batch_size: Annotated[int, typer.Option(min=1, max=1_000_000)] = 20_000,
    json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Stream files (or -) into whale_transactions; bad records go to the rejects file."""
    import psycopg
    import sqlalchemy as sa

    from database.sessions import Database
    from whale_tracker.ingest.pipeline import (
        IngestOptions,
        Interrupted,
        StrictModeError,
        Summary,
        ingest,
        input_size,
    )
    from whale_tracker.ingest.sources import SourceError

    if score_floor_eth <= 0 or score_ceiling_eth <= score_floor_eth:
        typer.echo("error: need 0 < --score-floor-eth < --score-ceiling-eth", err=True)
        raise typer.Exit(EXIT_USAGE)
    options = IngestOptions(
        fmt=fmt,
        chain=chain,
        eth_usd=eth_usd,
        min_value_eth=min_value_eth,
        floor_eth=score_floor_eth,
        ceiling_eth=score_ceiling_eth,
        strict=strict,
        batch_size=batch_size,
        rejects=rejects,
    )
    try:
        database = Database()
    except DatabasePackageError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_DATABASE) from None
    total = input_size(paths)  # bytes: an ETA when every input is a file
    try:
        with progress("ingest", total=total) as advance:
            done = 0

            def report(summary: Summary) -> None:
                nonlocal done
                units = summary.bytes_read if total else summary.read
                elapsed = summary.elapsed
                advance(
                    units - done,
                    rows=summary.read,
                    **{"rows/s": summary.read / elapsed if elapsed else 0.0},
                    rejected=sum(summary.rejected.values()),
                )
                done = units

            summary = ingest(paths, database=database, options=options, progress=report)
    except StrictModeError as exc:
        typer.echo(f"error: {exc} (--strict: stopped; see {rejects})", err=True)
        raise typer.Exit(EXIT_STRICT) from None
    except SourceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_SOURCE) from None
    except (DatabasePackageError, sa.exc.SQLAlchemyError, psycopg.Error) as exc:
        typer.echo(f"error: {_one_line(exc)}", err=True)
        raise typer.Exit(EXIT_DATABASE) from None
    except Interrupted as exc:
        typer.echo(f"error: {exc}; the run is recorded as failed", err=True)
        raise typer.Exit(EXIT_SIGNAL_BASE + exc.signum) from None
    except Exception as exc:
        typer.echo(f"error: unexpected {type(exc).__name__}: {_one_line(exc)}", err=True)
        raise typer.Exit(EXIT_UNEXPECTED) from None
    finally:
        database.dispose()
    out = Output(json=json)
    if json:
        out.record("ingest", summary.as_dict())
    else:
        print(summary.render())
    if summary.rejected:
        typer.echo(f"rejected records are in {rejects}", err=True)
        raise typer.Exit(EXIT_REJECTS)
    raise typer.Exit(0)


def _one_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@app.command()
def generate(
    count: Annotated[int, typer.Option(min=0, help="how many transfers")],
    seed: int = 1,
    fmt: Annotated[Format, typer.Option("--format")] = Format.JSONL,
    out: Annotated[str, typer.Option(metavar="FILE", help="- for stdout")] = "-",
) -> None:
    """Write a deterministic synthetic feed (heavy-tailed values, real hash/address shapes)."""
    from whale_tracker.ingest.generate import write

    if out == "-":
        write(sys.stdout, fmt, count, seed=seed)
    else:
        with open(out, "w", encoding="utf-8", newline="") as handle:
            write(handle, fmt, count, seed=seed)


add_serve_command(
    app, factory="whale_tracker.api:create_app", port=8001, summary="Run the read API."
)


def main(argv: Sequence[str] | None = None) -> int:
    return run(app, argv)


if __name__ == "__main__":
    sys.exit(main())
