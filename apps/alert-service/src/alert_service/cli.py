"""`alert-service`: the rules API and the worker.

    alert-service serve [--host H] [--port P] [--workers N]   the rules API
    alert-service worker [--until-idle]                       evaluator + webhook delivery

Exit codes: 0 success, 1 a clear error (printed without a traceback), 2 bad usage.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Annotated

import typer

from database.errors import DatabasePackageError
from service_kit.console import Output, run
from service_kit.serve import add_serve_command

app = typer.Typer(
    name="alert-service",
    help="Users' alert rules under RLS, evaluation of new stream rows, delivery.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = logging.getLogger("alert_service")


@app.callback()
def _logging(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="warnings and errors only")] = False,
) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(name)s %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)


add_serve_command(
    app, factory="alert_service.api:create_app", port=8002, summary="Run the rules API."
)


@app.command()
def worker(
    until_idle: Annotated[
        bool, typer.Option(help="evaluate what is there, deliver what is due, then exit")
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="with --until-idle: counts as JSON")] = False,
) -> None:
    """Evaluate new whale transactions, quotes, liquidity zones and SMC patterns against the
    rules, and deliver webhooks, until SIGTERM/SIGINT."""
    from alert_service.changes import change_source, change_source_name
    from alert_service.delivery import Deliverer
    from alert_service.evaluator import Evaluator
    from alert_service.supervisor import Supervisor
    from database.sessions import Database
    from database.settings import get_settings

    try:
        database = Database()
        evaluator, deliverer = Evaluator(database), Deliverer(database)
        if until_idle:
            rows = evaluator.catch_up()
            delivered = deliverer.deliver_due()
            Output(json=json).record(
                "worker",
                {
                    "rows": rows,
                    "events": evaluator.stats.events,
                    "webhooks_tried": delivered,
                },
            )
            database.dispose()
            return
        stop = threading.Event()

        def shutdown(signum: int, _: FrameType | None) -> None:
            log.info("signal %d: finishing the batch in hand", signum)
            stop.set()

        signal.signal(signal.SIGTERM, shutdown)
        signal.signal(signal.SIGINT, shutdown)
        settings = get_settings()
        channels = [source.table.value for source in evaluator.sources]
        log.info("listening through %s", change_source_name(settings))
        delivery = Supervisor("delivery", deliverer.run, database).thread(stop)
        delivery.start()
        try:
            # Returns after the batch in hand; the cursor is committed with it.
            evaluation = Supervisor(
                "evaluation",
                lambda s: evaluator.run(
                    s, sources=lambda: change_source(database, settings, channels=channels)
                ),
                database,
            )
            evaluation.run(stop)
        finally:
            stop.set()
            delivery.join(timeout=30)
            database.dispose()
    except DatabasePackageError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def main(argv: Sequence[str] | None = None) -> int:
    return run(app, argv)


if __name__ == "__main__":
    sys.exit(main())
