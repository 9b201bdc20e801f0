"""`create_service_app`: the parts every HTTP app on the database has, assembled once.

State (`app.state.database`, `app.state.verifier`), a lifespan that disposes the engines, a
request-body limit counted as the body streams (a chunked body cannot slip past it), NUL
characters refused in every path, query and body, the error → HTTP mapping and `GET /health`.
Each app adds its own routes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from database.sessions import Database
from service_kit.errors import install_error_handlers
from service_kit.health import router as health_router
from service_kit.params import refuse_nul
from service_kit.tokens import TokenVerifier


class BodyLimit:
    """ASGI middleware: a 413 once a request body passes `limit` bytes, declared or streamed."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _reject(send, self.limit)
            return
        seen = 0
        rejected = False

        # Past the limit the 413 is sent from here and the app is told the client went away:
        # raising instead would reach FastAPI's body parser, which turns any error into a 400.
        async def counted() -> Message:
            nonlocal seen, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    rejected = True
                    await _reject(send, self.limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            if not rejected:  # the app's own answer, after the 413, goes nowhere
                await send(message)

        await self.app(scope, counted, guarded)


async def _reject(send: Send, limit: int) -> None:
    body = b'{"detail":"request body over %d bytes"}' % limit
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_service_app(
    *,
    title: str,
    version: str,
    database: Database | None = None,
    verifier: TokenVerifier | None = None,
    max_body_bytes: int = 16_384,
    **fastapi_options: Any,
) -> FastAPI:
    """A FastAPI app with the shared parts; `database`/`verifier` default to the settings'."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await app.state.database.adispose()

    app = FastAPI(
        title=title,
        version=version,
        lifespan=lifespan,
        dependencies=[Depends(refuse_nul)],
        **fastapi_options,
    )
    app.state.database = database or Database()
    app.state.verifier = verifier
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    install_error_handlers(app)
    app.include_router(health_router)
    return app
