"""Run an app with uvicorn: the `serve` command every app's CLI has, written once."""

from __future__ import annotations

from typing import Annotated

import typer


def add_serve_command(cli: typer.Typer, *, factory: str, port: int, summary: str) -> None:
    """Give `cli` a `serve [--host] [--port] [--workers]` command running `factory`
    ("module:function" returning the FastAPI app). Imported only when the command runs."""

    @cli.command(help=summary)
    def serve(
        host: str = "127.0.0.1",
        port: Annotated[int, typer.Option(min=1, max=65535)] = port,
        workers: Annotated[
            int, typer.Option(min=1, max=64, help="processes (one per core serves the most)")
        ] = 1,
        access_log: Annotated[
            bool, typer.Option(help="a line per request (off behind a proxy that logs)")
        ] = True,
    ) -> None:
        import uvicorn

        # Every worker process builds its own app, and so its own connection pools.
        uvicorn.run(
            factory,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=access_log,
        )
