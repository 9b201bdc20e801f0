"""The package's errors as HTTP answers, in one place for every app.

| error                      | status | body                                   |
|----------------------------|--------|----------------------------------------|
| InvalidTokenError          | 401    | `{"detail": reason}` + WWW-Authenticate |
| UnknownUserError           | 401    | the same: the token names no user       |
| NotFoundError              | 404    | `{"detail": "no such …"}`              |
| ConflictError              | 409    | `{"detail": rule, "field": field}`     |
| a body over the limit      | 413    | `{"detail": …}` (sent by app.BodyLimit) |
| InvalidInputError          | 422    | FastAPI's shape: `{"detail": [{loc, msg, type}]}` |
| a body that is not UTF-8   | 422    | the same shape (FastAPI alone says 400) |
| DatabaseUnavailableError   | 503    | `{"detail": "database unavailable"}`   |
| no pooled connection free  | 503    | `{"detail": "database busy"}` + Retry-After |
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException

from database.errors import (
    ConflictError,
    DatabaseUnavailableError,
    InvalidInputError,
    NotFoundError,
    UnknownUserError,
    rule_message,
)
from service_kit.tokens import InvalidTokenError

log = logging.getLogger("service_kit")


# -- the bodies of error answers, for the OpenAPI documents ------------------------------


class ErrorMessage(BaseModel):
    detail: str


class ConflictMessage(BaseModel):
    detail: str
    field: str


class Problem(BaseModel):
    model_config = ConfigDict(extra="allow")  # FastAPI adds `input` and `ctx`
    loc: list[str | int]
    msg: str
    type: str | None = None


class ValidationMessage(BaseModel):
    detail: list[Problem]


#: Shared by every endpoint's OpenAPI `responses=`: what the error handlers can answer.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        "description": "Missing, malformed, expired or forged access token, or its user is gone",
        "model": ErrorMessage,
    },
    404: {"description": "No such row, or not one the caller may see", "model": ErrorMessage},
    409: {"description": "The write conflicts with what is stored", "model": ConflictMessage},
    413: {"description": "Request body too large", "model": ErrorMessage},
    422: {
        "description": "A parameter or field breaks a rule (named in `detail[].loc`)",
        "model": ValidationMessage,
    },
    503: {"description": "The database is unavailable", "model": ErrorMessage},
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses=` entries for these statuses."""
    return {status: ERROR_RESPONSES[status] for status in statuses}


def unauthorized(reason: str) -> JSONResponse:
    return JSONResponse(
        {"detail": reason},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def invalid_input_body(exc: InvalidInputError, *, location: str = "query") -> dict[str, Any]:
    """FastAPI's own 422 shape: `loc` starts with where the value came from."""
    detail = []
    for error in exc.errors:
        # List indexes stay numbers, as in FastAPI's own answers (`["body", "channels", 1]`).
        loc = [p if isinstance(p, int) else str(p) for p in error.get("loc", [])]
        loc = loc or list(exc.field.split("."))
        if loc[0] not in ("body", "query", "path", "header"):
            loc = [location, *loc]
        detail.append({"loc": loc, "msg": error.get("msg", exc.rule), "type": error.get("type")})
    return {"detail": detail}


def install_error_handlers(app: FastAPI) -> None:
    """Map the package's vocabulary to HTTP for `app`."""

    @app.exception_handler(RequestValidationError)
    async def _request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's shape, with each rule in words where its pattern is a known one.
        errors = [{**e, "msg": rule_message(e)} for e in exc.errors()]
        return JSONResponse(jsonable_encoder({"detail": errors}), status_code=422)

    @app.exception_handler(InvalidTokenError)
    async def _token(_: Request, exc: InvalidTokenError) -> JSONResponse:
        return unauthorized(exc.reason)

    @app.exception_handler(UnknownUserError)
    async def _unknown_user(_: Request, exc: UnknownUserError) -> JSONResponse:
        return unauthorized("token's user does not exist")

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        # FastAPI answers 400 for a body it cannot decode (not UTF-8); the documents promise 422
        # for every malformed input, with the same shape as any other.
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):
            problem = {"loc": ["body"], "msg": "the body is not valid JSON", "type": "json_invalid"}
            return JSONResponse({"detail": [problem]}, status_code=422)
        return await http_exception_handler(request, exc)

    @app.exception_handler(NotFoundError)
    async def _not_found(_: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse({"detail": f"no such {exc.what}"}, status_code=404)

    @app.exception_handler(ConflictError)
    async def _conflict(_: Request, exc: ConflictError) -> JSONResponse:
        return JSONResponse({"detail": exc.rule, "field": exc.field}, status_code=409)

    @app.exception_handler(InvalidInputError)
    async def _invalid(request: Request, exc: InvalidInputError) -> JSONResponse:
        location = "body" if request.method in ("POST", "PUT", "PATCH") else "query"
        return JSONResponse(invalid_input_body(exc, location=location), status_code=422)

    @app.exception_handler(DatabaseUnavailableError)
    async def _unavailable(_: Request, exc: DatabaseUnavailableError) -> JSONResponse:
        log.error("database unavailable: %s", exc)  # host and reason: for the operator only
        return JSONResponse({"detail": "database unavailable"}, status_code=503)

    @app.exception_handler(sa_exc.TimeoutError)
    async def _busy(_: Request, exc: sa_exc.TimeoutError) -> JSONResponse:
        # Every pooled connection stayed taken for DB_POOL_TIMEOUT: more requests than the
        # worker's pool serves. The client may come back; the operator sizes the pool.
        log.warning("no database connection free: %s", exc)
        return JSONResponse(
            {"detail": "database busy"}, status_code=503, headers={"Retry-After": "1"}
        )
