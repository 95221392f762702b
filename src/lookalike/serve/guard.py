"""The gate every request passes before its body is read: API key, then body size.

A pure ASGI middleware, so that a caller without a valid key is answered 401 before a
single byte of an upload is parsed or spooled to disk, and a body over the limit is cut
off as it streams in (``Content-Length`` is checked up front; a chunked body is counted).
Scopes are checked later, per route (``deps.require``), with the key found here.
"""

from __future__ import annotations

import json

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lookalike.serve.keys import check_key

# Paths that need a key (when auth is on): the API and the metrics. /healthz, the web
# page, its static files and the OpenAPI description are open.
GUARDED = ("/v1/", "/metrics")


def _token(headers: list[tuple[bytes, bytes]]) -> str | None:
    found: dict[bytes, bytes] = {k.lower(): v for k, v in headers}
    raw = found.get(b"x-api-key")
    if raw is None:
        auth = found.get(b"authorization", b"")
        scheme, _, value = auth.partition(b" ")
        raw = value.strip() if scheme.lower() == b"bearer" else None
    return raw.decode("latin-1") if raw else None


async def _reply(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app: ASGIApp, *, auth: bool, max_body: int) -> None:
        self.app = app
        self.auth = auth
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        path: str = scope["path"]
        if self.auth and path.startswith(GUARDED):
            token = _token(headers)
            if not token:
                await _reply(
                    send,
                    401,
                    "unauthorized",
                    "an API key is needed: `Authorization: Bearer KEY` or `X-API-Key: KEY`",
                )
                return
            store = scope["app"].state.engine.catalog.service
            row = await anyio.to_thread.run_sync(check_key, store, token)
            if row is None:
                await _reply(send, 401, "unauthorized", "unknown or revoked API key")
                return
            scope.setdefault("state", {})["key"] = row
        length = dict(headers).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body:
            await _reply(
                send, 413, "too_large", f"request body over the limit of {self.max_body} bytes"
            )
            return
        await self._limited(scope, receive, send)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app, counting the body as it streams in; past the limit, answer 413
        ourselves, tell the app the client left, and drop whatever it still sends."""
        seen = 0
        started = replied = False

        async def counted_receive() -> Message:
            nonlocal seen, replied
            message: Message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body and not replied:
                    replied = True
                    if not started:
                        await _reply(
                            send,
                            413,
                            "too_large",
                            f"request body over the limit of {self.max_body} bytes",
                        )
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if replied:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted_receive, guarded_send)
