"""Schema 5: what several machines sharing one catalog need: ``meta`` (values the first
node writes and every node checks, such as the reference vectors workers compare theirs
with) and ``job_chunks`` (a queued job's chunks, each finished once however often a worker
takes it).

Frozen: never edit (see :mod:`lookalike.store.migrations`).
"""

from __future__ import annotations

import sqlite3

from lookalike.store.sqlite_util import run_script

SQL = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE job_chunks (
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    chunk INTEGER NOT NULL,
    files INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued',
    report TEXT,
    error TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (job_id, chunk)
);
"""


def apply(db: sqlite3.Connection) -> None:
    """Create the schema-5 tables (inside the caller's transaction)."""
    run_script(db, SQL)
