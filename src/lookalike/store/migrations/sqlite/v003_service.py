"""Schema 3: the server's API keys (stored hashed) and background jobs.

Frozen: never edit (see :mod:`lookalike.store.migrations`).
"""

from __future__ import annotations

import sqlite3

from lookalike.store.sqlite_util import run_script

SQL = """
CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL UNIQUE,
    digest TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL,
    last_used_at REAL
);
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    status TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    report TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
"""


def apply(db: sqlite3.Connection) -> None:
    """Create the schema-3 tables (inside the caller's transaction)."""
    run_script(db, SQL)
