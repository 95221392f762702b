"""API keys: random tokens shown once, stored as SHA-256 digests, compared in constant time.

A key reads ``lka_<prefix>_<secret>``: the prefix finds the row (and is shown in listings),
the digest of the whole key is what is checked. Keys are 190+ random bits, so a plain
SHA-256 suffices (no password stretching needed).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

from lookalike.errors import BadArgument, NotFound
from lookalike.store.base import SCOPES, KeyRow, Scope, ServiceStore

PREFIX: Final = "lka"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def allows(have: str, need: Scope) -> bool:
    """Scopes nest: admin can do what write can, write what read can."""
    rank: dict[str, int] = {s: i for i, s in enumerate(SCOPES)}
    return rank.get(have, -1) >= rank[need]


def create_key(store: ServiceStore, scope: str, name: str = "") -> tuple[str, KeyRow]:
    """A new key: the token (shown once, never stored) and its row."""
    if scope not in SCOPES:
        raise BadArgument(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    prefix = secrets.token_hex(4)
    token = f"{PREFIX}_{prefix}_{secrets.token_urlsafe(24)}"
    return token, store.add_key(name, prefix, digest(token), scope)


def check_key(store: ServiceStore, token: str) -> KeyRow | None:
    """The live key row for ``token``, or None (unknown, malformed, revoked)."""
    parts = token.split("_", 2)  # the secret may itself hold "_"
    if len(parts) != 3 or parts[0] != PREFIX:
        return None
    row = store.key_by_prefix(parts[1])
    if row is None or row.revoked_at is not None:
        return None
    return row if hmac.compare_digest(row.digest, digest(token)) else None


def revoke_key(store: ServiceStore, key_id: int) -> None:
    if not store.revoke_key(key_id):
        raise NotFound(f"no live key with id {key_id}")
