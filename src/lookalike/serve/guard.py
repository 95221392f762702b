"""The gate every request passes before its body is read: Host, cross-site, API key, size.

A pure ASGI middleware, so that a refused request is answered before a single byte of an
upload is parsed or spooled to disk, and a body over the limit is cut off as it streams in
(``Content-Length`` is checked up front; a chunked body is counted). In order:

1. Host: a server on a loopback address (or one without API keys) answers only to loopback
   names and ``allowed_hosts``: a DNS-rebinding page reaches 127.0.0.1 under its own name.
2. Cross-site: a browser request another site started is refused (``Sec-Fetch-Site``),
   except a plain link followed (a GET navigation); a state-changing request whose
   ``Origin`` is not this server's is refused too. curl and other API clients send neither
   header; the web page is same-origin.
3. The API key, from the ``Authorization: Bearer`` or ``X-API-Key`` header only: never a
   cookie or the query string, so nothing a browser sends by itself counts. No CORS header
   is ever sent, so no other site's page may read an answer.
4. The body size.

Every answer also forbids framing (``X-Frame-Options``), so another site cannot show the
web page under a decoy and have the user click it.

Scopes are checked later, per route (``deps.require``), with the key found here.
"""

from __future__ import annotations

import ipaddress
import json
import re
from urllib.parse import urlsplit

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lookalike.errors import BadInput
from lookalike.serve.keys import check_key

# Paths that need a key (when auth is on): the API and the metrics. /healthz, the web
# page, its static files and the OpenAPI description are open.
GUARDED = ("/v1/", "/metrics")
# Methods that change nothing (the rest must come from this server's own page, or no page).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
Headers = dict[bytes, bytes]
# On every answer: no other site may frame a page of this one (and take the user's clicks).
_NOT_FRAMED = (
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
)
# A registered name or an IPv4 address (RFC 3986 unreserved characters), and a port.
_HOST_NAME = re.compile(r"[A-Za-z0-9._~-]+")
_PORT = re.compile(r"[0-9]{1,5}")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 without brackets) is this machine only."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_host(value: str) -> tuple[str, int | None] | None:
    """A Host header's name (lower case, IPv6 without brackets) and port; None if malformed."""
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")) or not _is_ipv6(name):
            return None
        port = rest[1:]
    else:
        name, _, port = value.rpartition(":") if ":" in value else (value, "", "")
        if not _HOST_NAME.fullmatch(name):
            return None
    if port and not _PORT.fullmatch(port):
        return None
    return name.lower().rstrip("."), int(port) if port else None


def _is_ipv6(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv6Address)
    except ValueError:
        return False


def host_policy(configured: list[str], *, bound: str | None, auth: bool) -> frozenset[str] | None:
    """The Host names a server answers to besides the loopback ones, or None: any Host.

    Checked when the server listens on loopback (``bound``) or has no keys (only allowed
    there), or when names are configured. BadInput for a malformed name."""
    names: set[str] = set()
    for given in configured:
        parsed = split_host(given.strip())
        if parsed is None:
            raise BadInput(f"allowed_hosts: {given!r} is not a host name")
        names.add(parsed[0])
    checked = not auth or names or (bound is not None and is_loopback(bound))
    return frozenset(names) if checked else None


async def _reply(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _token(headers: Headers) -> str | None:
    raw = headers.get(b"x-api-key")
    if raw is None:
        scheme, _, value = headers.get(b"authorization", b"").partition(b" ")
        raw = value.strip() if scheme.lower() == b"bearer" else None
    return raw.decode("latin-1") if raw else None


def _same_origin(origin: str, host: str) -> bool:
    """Whether a browser's ``Origin`` names the server the request's ``Host`` names."""
    try:
        parts = urlsplit(origin)
    except ValueError:  # e.g. an unclosed "[" of an IPv6 address
        return False
    ours = split_host(host)
    theirs = split_host(parts.netloc) if parts.scheme in _DEFAULT_PORTS else None
    if ours is None or theirs is None or parts.path or parts.query:
        return False
    default = _DEFAULT_PORTS[parts.scheme]
    return (theirs[0], theirs[1] or default) == (ours[0], ours[1] or default)


def cross_site(method: str, headers: Headers) -> str | None:
    """Why a request another site's page made is refused, or None if it is not one."""
    site = headers.get(b"sec-fetch-site", b"").decode("latin-1")
    followed_link = method == "GET" and headers.get(b"sec-fetch-mode") == b"navigate"
    if site in ("cross-site", "same-site") and not followed_link:
        return f"a {site} request is refused (Sec-Fetch-Site): use this server's own page"
    origin = headers.get(b"origin")
    if method in SAFE_METHODS or origin is None:
        return None
    host = headers.get(b"host", b"").decode("latin-1")
    shown = origin.decode("latin-1")
    if not _same_origin(shown, host):
        return f"a {method} from another origin ({shown[:100]}) is refused"
    return None


def foreign_host(headers: Headers, allowed: frozenset[str]) -> str | None:
    """Why the request's Host is refused, or None if this server answers to it."""
    host = headers.get(b"host", b"").decode("latin-1")
    parsed = split_host(host)
    if parsed is not None and (is_loopback(parsed[0]) or parsed[0] in allowed):
        return None
    return (
        f"this server does not answer to Host {host[:100]!r}: only to loopback names "
        "and LOOKALIKE_ALLOWED_HOSTS"
    )


class Guard:
    def __init__(
        self, app: ASGIApp, *, auth: bool, max_body: int, hosts: frozenset[str] | None
    ) -> None:
        """``hosts``: the Host names answered besides loopback ones (None: any Host)."""
        self.app = app
        self.auth = auth
        self.max_body = max_body
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: Headers = {k.lower(): v for k, v in scope["headers"]}
        refused = self._refusal(scope["method"], headers)
        if refused is not None:
            await _reply(send, *refused)
            return
        if self.auth and scope["path"].startswith(GUARDED):
            token = _token(headers)
            if not token:
                message = "an API key is needed: `Authorization: Bearer KEY` or `X-API-Key: KEY`"
                await _reply(send, 401, "unauthorized", message)
                return
            store = scope["app"].state.engine.catalog.service
            row = await anyio.to_thread.run_sync(check_key, store, token)
            if row is None:
                await _reply(send, 401, "unauthorized", "unknown or revoked API key")
                return
            scope.setdefault("state", {})["key"] = row
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body:
            await _reply(send, *self._too_large())
            return
        await self._limited(scope, receive, send)

    def _refusal(self, method: str, headers: Headers) -> tuple[int, str, str] | None:
        """The status, code and message refusing a request for its Host or its origin."""
        if self.hosts is not None:
            why = foreign_host(headers, self.hosts)
            if why is not None:
                return 400, "bad_host", why
        why = cross_site(method, headers)
        return None if why is None else (403, "cross_site", why)

    def _too_large(self) -> tuple[int, str, str]:
        return 413, "too_large", f"request body over the limit of {self.max_body} bytes"

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
                        await _reply(send, *self._too_large())
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if replied:
                return
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), *_NOT_FRAMED]
            await send(message)

        await self.app(scope, counted_receive, guarded_send)
