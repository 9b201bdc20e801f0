"""`whale-tracker`: ingest, generate, serve.

    whale-tracker ingest PATH... [--format jsonl|csv|etherscan] [--eth-usd PRICE]
                                 [--min-value-eth ETH] [--strict] [--rejects FILE]
    whale-tracker generate --count N [--seed S] [--format F] [--out FILE]
    whale-tracker serve [--host H] [--port P]

`-` reads standard input (ingest) or writes standard output (generate).

Exit codes of `ingest`:
    0  every record was written (or deliberately skipped/filtered)
    1  finished, but some records were rejected (see the rejects file)
    2  bad usage
    3  --strict: stopped at the first bad record (earlier batches stay written)
    4  the input cannot be used (unreadable, unknown format, an Etherscan error body)
    5  the database is unavailable or refused a write
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path

from database.errors import BulkWriteError, DatabasePackageError, DatabaseUnavailableError
from database.models import Chain
from whale_tracker.sources import Format

EXIT_REJECTS, EXIT_USAGE, EXIT_STRICT, EXIT_SOURCE, EXIT_DATABASE = 1, 2, 3, 4, 5


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a decimal number: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative number: {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whale-tracker",
        description="Ingest, score and serve large on-chain transfers.",
        epilog=__doc__.split("Exit codes", 1)[1].join(("Exit codes", "")) if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    ingest = sub.add_parser("ingest", help="stream files (or -) into whale_transactions")
    ingest.add_argument("paths", nargs="+", metavar="PATH")
    ingest.add_argument("--format", type=Format, choices=list(Format), default=None)
    ingest.add_argument(
        "--chain",
        type=Chain,
        choices=list(Chain),
        default=Chain.ETHEREUM,
        help="chain of records that do not name one (default ethereum)",
    )
    ingest.add_argument(
        "--eth-usd",
        type=_decimal,
        metavar="PRICE",
        help="USD per ETH; default: the latest ETH quote in market_data",
    )
    ingest.add_argument("--min-value-eth", type=_decimal, metavar="ETH")
    ingest.add_argument("--score-floor-eth", type=_decimal, default=Decimal(100), metavar="ETH")
    ingest.add_argument(
        "--score-ceiling-eth", type=_decimal, default=Decimal(100_000), metavar="ETH"
    )
    ingest.add_argument("--strict", action="store_true", help="stop at the first bad record")
    ingest.add_argument("--rejects", type=Path, default=Path("rejects.jsonl"), metavar="FILE")
    ingest.add_argument("--batch-size", type=int, default=10_000)

    generate = sub.add_parser("generate", help="write a deterministic synthetic feed")
    generate.add_argument("--count", type=int, required=True)
    generate.add_argument("--seed", type=int, default=1)
    generate.add_argument("--format", type=Format, choices=list(Format), default=Format.JSONL)
    generate.add_argument("--out", default="-", metavar="FILE")

    serve = sub.add_parser("serve", help="run the read API (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8001)
    return parser


def _ingest(args: argparse.Namespace) -> int:
    from database.engine import Database
    from whale_tracker.ingest import IngestOptions, Progress, StrictModeError, ingest
    from whale_tracker.sources import SourceError

    if args.score_floor_eth <= 0 or args.score_ceiling_eth <= args.score_floor_eth:
        print("error: need 0 < --score-floor-eth < --score-ceiling-eth", file=sys.stderr)
        return EXIT_USAGE
    options = IngestOptions(
        fmt=args.format,
        chain=args.chain,
        eth_usd=args.eth_usd,
        min_value_eth=args.min_value_eth,
        floor_eth=args.score_floor_eth,
        ceiling_eth=args.score_ceiling_eth,
        strict=args.strict,
        batch_size=args.batch_size,
        rejects=args.rejects,
    )
    database = Database()
    try:
        summary = ingest(args.paths, database=database, options=options, progress=Progress())
    except StrictModeError as exc:
        print(f"error: {exc} (--strict: stopped; see {args.rejects})", file=sys.stderr)
        return EXIT_STRICT
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SOURCE
    except (DatabaseUnavailableError, BulkWriteError, DatabasePackageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DATABASE
    finally:
        database.dispose()
    print(summary.render())
    if summary.rejected:
        print(f"rejected records are in {args.rejects}", file=sys.stderr)
        return EXIT_REJECTS
    return 0


def _generate(args: argparse.Namespace) -> int:
    from whale_tracker.generate import write

    if args.count < 0:
        print("error: --count must not be negative", file=sys.stderr)
        return EXIT_USAGE
    if args.out == "-":
        write(sys.stdout, args.format, args.count, seed=args.seed)
    else:
        with open(args.out, "w", encoding="utf-8", newline="") as out:
            write(out, args.format, args.count, seed=args.seed)
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from whale_tracker.api import create_app

    uvicorn.run(create_app(), host=args.host, port=args.port)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = {"ingest": _ingest, "generate": _generate, "serve": _serve}[args.command]
    return command(args)


if __name__ == "__main__":
    sys.exit(main())
