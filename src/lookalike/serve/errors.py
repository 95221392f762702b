"""Every error as ``{"error": {"code": ..., "message": ...}}`` with its HTTP status.

lookalike's own errors carry their status (``lookalike.errors``); request validation
failures are 422, unknown routes 404; Busy is 503 with a ``Retry-After`` header. Anything
else is a bug: logged, answered 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from lookalike.answers import ErrorDetail
from lookalike.errors import Busy, LookalikeError

log = logging.getLogger("lookalike.serve")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "bad_input",
}


class ErrorBody(BaseModel):
    """The body of every error answer."""

    error: ErrorDetail


# The error answers every route may give, for the OpenAPI description.
RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "Bad request: not an image, a bad path, a Host this server does not answer to"),
        (401, "No API key, or an unknown or revoked one"),
        (403, "The key's scope does not allow this, a path outside the roots, a cross-site call"),
        (404, "Unknown id"),
        (409, "Conflict: a name already taken"),
        (413, "Upload over the size or pixel limit"),
        (422, "Invalid parameters"),
        (503, "Busy: too many large images being decoded; retry after `Retry-After` seconds"),
    )
}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer", **(headers or {})}
    return JSONResponse(error_body(code, message, **extra), status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the one JSON shape."""

    @app.exception_handler(LookalikeError)
    async def lookalike_error(_: Request, exc: LookalikeError) -> JSONResponse:
        if isinstance(exc, Busy):
            # Expected under load, not a fault: the client is told when to come back.
            headers = {"Retry-After": str(exc.retry_after)}
            return error_response(exc.status, exc.code, exc.message, headers)
        if exc.status >= 500:
            log.error("server error: %s", exc.message)
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body')}: {e.get('msg', '')}"
            for e in exc.errors()
        ]
        return error_response(422, "bad_input", "; ".join(problems) or "invalid request")

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = _CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, "internal", "internal error (see the server log)")
