"""Redis, or a Redis Cluster, as the result cache's store (redis-py).

Every call is bounded by ``cache_timeout_s`` (to connect, and to answer) and never retried:
a cache that does not answer in time is a miss, and the answer is computed locally. After a
failure Redis is left alone for ``cache_retry_s`` (so a dead cache does not cost every request
a timeout), then the client is built anew and tried again: it reconnects by itself when Redis
is back. The first failure after a good spell is logged once, as a warning; the recovery too.

URLs: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for TLS, and a cluster
as ``redis+cluster://[[user]:password@]host:port,host:port,...`` (``rediss+cluster://``):
any of its nodes, the client finds the rest.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException, RedisError
from redis.retry import Retry

from lookalike.cache.base import CacheUnavailable
from lookalike.errors import Unavailable

__all__ = ["RedisCache", "RedisTarget", "parse_url"]

log = logging.getLogger("lookalike.cache")

T = TypeVar("T")

DEFAULT_PORT = 6379
SCHEMES = {"redis": (False, False), "rediss": (False, True)}
SCHEMES |= {"redis+cluster": (True, False), "rediss+cluster": (True, True)}
# What a failing Redis, cluster or network raises (a cluster with no node up: the latter).
FAILURES = (RedisError, RedisClusterException, OSError)


@dataclass(frozen=True)
class RedisTarget:
    """A parsed cache URL."""

    cluster: bool
    ssl: bool
    nodes: tuple[tuple[str, int], ...]
    db: int
    username: str | None
    password: str | None
    shown: str  # the URL without its password, for messages


def parse_url(url: str) -> RedisTarget:
    """The cache at ``url``; Unavailable (naming the cache) if the URL is malformed."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise _bad(url, f"the scheme must be one of {', '.join(sorted(SCHEMES))}://")
    cluster, ssl = SCHEMES[scheme.lower()]
    if "?" in rest or "#" in rest:
        raise _bad(url, "options (?...) are not supported; use the cache_* settings")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username, _, password = userinfo.partition(":") if at else ("", "", "")
    nodes = tuple(_node(url, part) for part in hosts.split(","))
    if not cluster and len(nodes) != 1:
        raise _bad(url, "a single Redis has one host:port; a cluster is redis+cluster://")
    db = _db(url, path)
    if cluster and db != 0:
        raise _bad(url, "a Redis Cluster has only database 0")
    shown_user = f"{username}:***@" if password else (f"{username}@" if username else "")
    return RedisTarget(
        cluster=cluster,
        ssl=ssl,
        nodes=nodes,
        db=db,
        username=unquote(username) or None,
        password=unquote(password) or None,
        shown=f"{scheme}://{shown_user}{hosts}" + (f"/{db}" if not cluster else ""),
    )


def _bad(url: str, why: str) -> Unavailable:
    # The URL is not echoed whole: it may hold a password.
    scheme = url.partition("://")[0][:20] if "://" in url else "?"
    return Unavailable(f"cache URL ({scheme}://...) is malformed: {why}")


def _node(url: str, text: str) -> tuple[str, int]:
    """``(host, port)`` of ``host[:port]`` or ``[v6]:port``."""
    if text.startswith("["):
        host, close, tail = text[1:].partition("]")
        if not close or (tail and not tail.startswith(":")):
            raise _bad(url, f"bad address {text!r}")
        port_text = tail[1:]
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise _bad(url, "a host is needed" if not text else f"bad address {text!r}")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _bad(url, f"bad port {port_text!r}")
    return host, int(port_text)


def _db(url: str, path: str) -> int:
    if not path:
        return 0
    if not path.isdigit():
        raise _bad(url, f"the database must be a number, not {path!r}")
    return int(path)


def connect(target: RedisTarget, timeout_s: float) -> redis.Redis | RedisCluster:
    """A client for ``target``: bounded timeouts, no retries (a slow cache is a miss)."""
    common: dict[str, Any] = {
        "username": target.username,
        "password": target.password,
        "ssl": target.ssl,
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(NoBackoff(), 0),
    }
    if target.cluster:
        nodes = [ClusterNode(host, port) for host, port in target.nodes]  # type: ignore[no-untyped-call]
        return RedisCluster(startup_nodes=nodes, **common)
    ((host, port),) = target.nodes
    return redis.Redis(host=host, port=port, db=target.db, **common)


class RedisCache:
    """A Redis (or Redis Cluster) that may fail: see the module's docstring."""

    def __init__(self, target: RedisTarget, *, timeout_s: float, retry_s: float) -> None:
        self.target = target
        self.where = target.shown
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self._lock = threading.Lock()
        self._client: redis.Redis | RedisCluster | None = None
        self._resting_until = 0.0  # time.monotonic() before which Redis is not asked
        self._failing = False

    def get(self, key: str) -> bytes | None:
        found = self._call(lambda client: client.get(key))
        if found is not None and not isinstance(found, bytes):
            raise CacheUnavailable(f"{self.where}: unexpected answer {type(found).__name__}")
        return found

    def put(self, key: str, value: bytes, ttl_s: int) -> None:
        if self._resting():  # the lookup before it failed already: not counted twice
            return
        self._call(lambda client: client.set(key, value, ex=ttl_s))

    def ping(self) -> bool:
        try:
            return bool(self._call(lambda client: client.ping()))
        except CacheUnavailable:
            return False

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            _close_quietly(client)

    def _call(self, op: Callable[[Any], T]) -> T:
        """``op(client)``, or CacheUnavailable while resting or when it fails."""
        if self._resting():
            raise CacheUnavailable(f"{self.where}: resting after a failure")
        try:
            result = op(self._connected())
        except FAILURES as exc:
            self._failed(exc)
            raise CacheUnavailable(f"{self.where}: {exc}") from exc
        if self._failing:
            self._recovered()
        return result

    def _resting(self) -> bool:
        return time.monotonic() < self._resting_until

    def _connected(self) -> redis.Redis | RedisCluster:
        with self._lock:
            if self._client is None:
                # A cluster client asks its nodes for the slot map here.
                self._client = connect(self.target, self.timeout_s)
            return self._client

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self._resting_until = time.monotonic() + self.retry_s
            first = not self._failing
            self._failing = True
            # Built anew on the next try: a cluster client re-reads the slot map then.
            client, self._client = self._client, None
        if client is not None:
            _close_quietly(client)
        if first:
            log.warning(
                "cache %s does not answer (%s): answers are computed without it until it "
                "does (this is logged once)",
                self.where,
                str(exc) or type(exc).__name__,
            )

    def _recovered(self) -> None:
        with self._lock:
            was, self._failing = self._failing, False
        if was:
            log.warning("cache %s answers again", self.where)


def _close_quietly(client: redis.Redis | RedisCluster) -> None:
    with contextlib.suppress(*FAILURES):  # closing a broken connection: nothing left to do
        client.close()
