"""Request dependencies: the engine of this process and the caller's API key scope."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from lookalike.errors import Forbidden, Unauthorized
from lookalike.search.engine import Lookalike
from lookalike.serve.keys import allows, check_key
from lookalike.store.base import KeyRow, Scope

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer lka_...`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key")

# last_used_at is written at most this often per key and process (not on every request).
_TOUCH_EVERY_S = 60.0
_touched: dict[int, float] = {}
_touch_lock = threading.Lock()


@dataclass(frozen=True)
class Caller:
    """Who is calling: the key's id (None without auth) and scope."""

    key_id: int | None
    scope: str


def engine(request: Request) -> Lookalike:
    """The engine opened by this server process."""
    found: Lookalike = request.app.state.engine
    return found


def require(scope: Scope) -> Callable[..., Caller]:
    """A dependency admitting callers whose key has ``scope`` (or a wider one)."""

    def check(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        header: Annotated[str | None, Depends(_header)],
    ) -> Caller:
        if not request.app.state.auth:
            return Caller(None, "admin")
        store = engine(request).catalog.service
        # Normally found by the Guard middleware, before the body was read.
        row: KeyRow | None = getattr(request.state, "key", None)
        if row is None:
            token = header or (bearer.credentials if bearer is not None else None)
            if not token:
                raise Unauthorized(
                    "an API key is needed: `Authorization: Bearer KEY` or `X-API-Key`"
                )
            row = check_key(store, token)
            if row is None:
                raise Unauthorized("unknown or revoked API key")
        if not allows(row.scope, scope):
            raise Forbidden(f"this key's scope is {row.scope!r}; {scope!r} is needed")
        now = time.monotonic()
        with _touch_lock:
            due = now - _touched.get(row.id, -_TOUCH_EVERY_S) >= _TOUCH_EVERY_S
            if due:
                _touched[row.id] = now
        if due:
            store.touch_key(row.id)
        return Caller(row.id, row.scope)

    return check


# The engine, as a route parameter: ``def route(lk: Engine) -> ...``.
Engine = Annotated[Lookalike, Depends(engine)]
# Scopes, as route dependencies: ``@router.get(..., dependencies=[Read])``.
Read = Depends(require("read"))
Write = Depends(require("write"))
Admin = Depends(require("admin"))
