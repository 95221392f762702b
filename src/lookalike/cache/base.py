"""The protocol of a cache backend, and the backend of no cache at all."""

from __future__ import annotations

from typing import Protocol


class CacheUnavailable(Exception):
    """The cache did not answer (down, slow, refusing): the caller computes the answer."""


class ByteCache(Protocol):
    """Bytes under string keys, each with a time to live."""

    # What the cache is, for messages (a URL without its password), or "" for none.
    where: str

    def get(self, key: str) -> bytes | None:
        """The bytes under ``key``, or None; CacheUnavailable if the cache does not answer."""
        ...

    def put(self, key: str, value: bytes, ttl_s: int) -> None:
        """Store ``value`` under ``key`` for ``ttl_s`` seconds; CacheUnavailable if the cache
        does not answer."""
        ...

    def ping(self) -> bool:
        """Whether the cache answers now."""
        ...

    def close(self) -> None: ...


class NoCache:
    """No cache: nothing is kept, every lookup misses."""

    where = ""

    def get(self, key: str) -> bytes | None:
        return None

    def put(self, key: str, value: bytes, ttl_s: int) -> None:
        return None

    def ping(self) -> bool:
        return False

    def close(self) -> None:
        return None
