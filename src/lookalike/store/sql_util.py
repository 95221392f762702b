"""Small helpers the SQL stores share on every backend: chunked ``IN (...)`` queries, keyset
batches, blobs to arrays, stored paths back to ``str``, generations."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from lookalike.store.database import Database, Handle, PathParam

# Ids per ``IN (...)`` query: well under SQLite's limit on bound parameters.
CHUNK = 500
# Below every id a table holds: where keyset batches start.
FIRST_KEY = -(2**63)

T = TypeVar("T")


def chunks(values: Sequence[T], size: int = CHUNK) -> Iterator[tuple[list[T], str]]:
    """``values`` in chunks of at most ``size``: ``(chunk, "?,?,...")`` for an ``IN (...)``."""
    for start in range(0, len(values), size):
        chunk = list(values[start : start + size])
        yield chunk, ",".join("?" * len(chunk))


def in_chunks(ids: Sequence[int], size: int = CHUNK) -> Iterator[tuple[list[int], str]]:
    """``ids`` as ints in chunks of at most ``size``: ``(chunk, "?,?,...")``."""
    return chunks([int(i) for i in ids], size)


def insert_rows(
    db: Handle, into: str, rows: Sequence[Sequence[Any]], then: str, *, returning: bool = False
) -> list[Any]:
    """Run ``INSERT INTO {into} VALUES (...), (...) {then}`` for ``rows`` (all of one width),
    one statement per chunk of them; returns the rows it returned when ``returning``.

    One statement for many rows: one round trip on a shared catalog. ``then`` may not
    update one row twice (PostgreSQL refuses that within one statement).
    """
    found: list[Any] = []
    width = len(rows[0]) if rows else 1
    for chunk, _ in chunks(rows, max(1, CHUNK // width)):
        row = "(" + ", ".join("?" * width) + ")"
        cursor = db.execute(
            f"INSERT INTO {into} VALUES {', '.join([row] * len(chunk))} {then}",
            [value for values in chunk for value in values],
        )
        if returning:
            found += cursor.fetchall()
    return found


def keyset_batches(
    database: Database[Any], sql: str, args: Sequence[object], size: int
) -> Iterator[list[Any]]:
    """The rows of ``sql`` in batches of at most ``size``, each its own query (memory: one
    batch). ``sql`` selects an int key first and ends with ``AND key > ? ORDER BY key
    LIMIT ?``, which are bound here: each batch starts after the last key of the one before,
    a range scan of the index whatever the table's size (unlike OFFSET)."""
    after = FIRST_KEY
    while True:
        rows = database.query(sql, [*args, after, size])
        if rows:
            yield rows
        if len(rows) < size:
            return
        after = int(rows[-1][0])


def blobs_for(
    database: Database[Any], sql: str, args: Sequence[object], ids: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """``stack_blobs`` of the ``(id, blob)`` rows ``sql`` selects for ``ids``, in chunks:
    ``sql`` ends in ``IN ({marks})`` (and an ORDER BY), ``args`` bind what comes before."""
    rows: list[Any] = []
    for chunk, marks in in_chunks(ids):
        rows += database.query(sql.format(marks=marks), [*args, *chunk])
    return stack_blobs(rows)


def stack_blobs(rows: Sequence[Sequence[Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``(id, blob)`` (blobs of one size) as ``(ids int64 (n,), uint8 (n, bytes))``."""
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    if not rows:
        return ids, np.zeros((0, 0), dtype=np.uint8)
    blob = b"".join(bytes(r[1]) for r in rows)
    return ids, np.frombuffer(blob, dtype=np.uint8).reshape(len(rows), -1)


def float_blob(vector: np.ndarray) -> bytes:
    """A vector as the float32 bytes a ``vector`` or ``embedding`` column holds."""
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


def path_value(value: str | bytes) -> str:
    """A stored path (``Database.path_param``) as ``str``: bytes decoded with surrogate
    escapes, as ``os.walk`` does."""
    return value if isinstance(value, str) else os.fsdecode(bytes(value))


def byte_ranges(root: str) -> list[tuple[PathParam, PathParam, PathParam]]:
    """The one range of paths stored as file-system bytes that may be ``root`` or inside it
    (``Database.path_ranges``): ``root`` itself, then ``root/`` up to ``root0``."""
    raw = os.fsencode(root)
    prefix = raw.rstrip(b"/") + b"/"
    return [(raw, prefix, prefix[:-1] + b"0")]


def read_generation(database: Database[Any], name: str) -> int:
    """The counter of the ``generations`` table named ``name`` (a descriptor, ``face`` or
    ``gallery``): bumped by triggers on every change it tracks; 0 before the first."""
    rows = database.query("SELECT generation FROM generations WHERE descriptor = ?", [name])
    return int(rows[0][0]) if rows else 0
