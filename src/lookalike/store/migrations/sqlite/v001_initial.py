"""Schema 1: images (keyed by SHA-256), their paths, descriptor vectors, and the generation
counters that triggers bump on every vector change.

Frozen: never edit (see :mod:`lookalike.store.migrations`).
"""

from __future__ import annotations

import sqlite3

from lookalike.store.sqlite_util import run_script

# Indented as first released: SQLite keeps this text in sqlite_master.
SQL = """
        CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            sha256 TEXT NOT NULL UNIQUE,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            format TEXT NOT NULL,
            size INTEGER NOT NULL,
            added_at REAL NOT NULL
        );
        CREATE TABLE paths (
            path TEXT PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL
        );
        CREATE INDEX paths_by_image ON paths(image_id);
        CREATE TABLE vectors (
            descriptor TEXT NOT NULL,
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            version TEXT NOT NULL,
            vector BLOB NOT NULL,
            PRIMARY KEY (descriptor, image_id)
        );
        CREATE INDEX vectors_by_image ON vectors(image_id);
        -- Bumped by triggers on every vector change, so a persisted vector index knows
        -- whether it still reflects the catalog (see lookalike.index.manager).
        CREATE TABLE generations (
            descriptor TEXT PRIMARY KEY,
            generation INTEGER NOT NULL
        );
        CREATE TRIGGER vectors_ins AFTER INSERT ON vectors BEGIN
            INSERT INTO generations VALUES (NEW.descriptor, 1)
            ON CONFLICT(descriptor) DO UPDATE SET generation = generation + 1;
        END;
        CREATE TRIGGER vectors_del AFTER DELETE ON vectors BEGIN
            INSERT INTO generations VALUES (OLD.descriptor, 1)
            ON CONFLICT(descriptor) DO UPDATE SET generation = generation + 1;
        END;
        CREATE TRIGGER vectors_upd AFTER UPDATE ON vectors BEGIN
            INSERT INTO generations VALUES (NEW.descriptor, 1)
            ON CONFLICT(descriptor) DO UPDATE SET generation = generation + 1;
        END;
        """


def apply(db: sqlite3.Connection) -> None:
    """Create the schema-1 tables, indexes and triggers (inside the caller's transaction)."""
    run_script(db, SQL)
