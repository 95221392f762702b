"""Small helpers the SQLite stores and migrations share: scripts run inside a transaction,
chunked ``IN (...)`` queries, blobs to arrays, paths in and out of the database, generations."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from lookalike.store.database import Database

# Ids per ``IN (...)`` query: well under SQLite's limit on bound parameters.
CHUNK = 500


def run_script(db: sqlite3.Connection, script: str) -> None:
    """Run ``script``'s statements one by one: ``executescript`` would commit the open
    transaction."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""


def in_chunks(ids: Sequence[int]) -> Iterator[tuple[list[int], str]]:
    """``ids`` in chunks of at most CHUNK: ``(chunk, "?,?,...")`` for an ``IN (...)``."""
    wanted = [int(i) for i in ids]
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        yield chunk, ",".join("?" * len(chunk))


def stack_blobs(rows: Sequence[Sequence[Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``(id, blob)`` (blobs of one size) as ``(ids int64 (n,), uint8 (n, bytes))``."""
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    if not rows:
        return ids, np.zeros((0, 0), dtype=np.uint8)
    blob = b"".join(bytes(r[1]) for r in rows)
    return ids, np.frombuffer(blob, dtype=np.uint8).reshape(len(rows), -1)


def path_param(path: str) -> str | bytes:
    """``path`` as stored in a ``path`` column: text when it is valid UTF-8, otherwise its
    file-system bytes as a BLOB (a name that is not UTF-8 arrives with surrogate escapes,
    which SQLite text cannot hold). Lossless: :func:`path_value` gives ``path`` back."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def path_value(value: str | bytes) -> str:
    """A stored path as ``str`` (BLOBs decoded with surrogate escapes, as ``os.walk`` does)."""
    return value if isinstance(value, str) else os.fsdecode(bytes(value))


def read_generation(database: Database[sqlite3.Connection], name: str) -> int:
    """The counter of the ``generations`` table named ``name`` (a descriptor, ``face`` or
    ``gallery``): bumped by triggers on every change it tracks; 0 before the first."""
    rows = database.query("SELECT generation FROM generations WHERE descriptor = ?", [name])
    return int(rows[0][0]) if rows else 0
