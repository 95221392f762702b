"""Schema 2: faces (per image and face-model version), face scans, people, enrolment
examples and clusters, with the ``face`` and ``gallery`` generation triggers.

Frozen: never edit (see :mod:`lookalike.store.migrations`).
"""

from __future__ import annotations

import sqlite3

from lookalike.store.sqlite_util import run_script

SQL = """
-- AUTOINCREMENT: an id a user has seen never comes back naming someone else.
CREATE TABLE people (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    created_at REAL NOT NULL
);
CREATE TABLE clusters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at REAL NOT NULL
);
-- One row per image whose faces were looked for, with the face-model version: an image
-- with no face is still recorded as scanned.
CREATE TABLE face_scans (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    version TEXT NOT NULL,
    scanned_at REAL NOT NULL
);
CREATE TABLE faces (
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    version TEXT NOT NULL,
    left INTEGER NOT NULL,
    top INTEGER NOT NULL,
    right INTEGER NOT NULL,
    bottom INTEGER NOT NULL,
    score REAL NOT NULL,
    quality REAL NOT NULL,
    usable INTEGER NOT NULL,
    flags TEXT NOT NULL,
    landmarks TEXT NOT NULL,
    embedding BLOB NOT NULL,
    thumb BLOB NOT NULL,
    person_id INTEGER REFERENCES people(id) ON DELETE SET NULL,
    confirmed INTEGER NOT NULL DEFAULT 0,
    cluster_id INTEGER REFERENCES clusters(id) ON DELETE SET NULL,
    UNIQUE (image_id, idx)
);
CREATE INDEX faces_by_person ON faces(person_id);
CREATE INDEX faces_by_cluster ON faces(cluster_id);
CREATE TABLE examples (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    sha256 TEXT NOT NULL,
    face_index INTEGER NOT NULL,
    source TEXT NOT NULL,
    version TEXT NOT NULL,
    left INTEGER NOT NULL,
    top INTEGER NOT NULL,
    right INTEGER NOT NULL,
    bottom INTEGER NOT NULL,
    quality REAL NOT NULL,
    embedding BLOB NOT NULL,
    thumb BLOB NOT NULL,
    added_at REAL NOT NULL,
    UNIQUE (person_id, sha256, face_index)
);
CREATE TRIGGER faces_ins AFTER INSERT ON faces BEGIN
    INSERT INTO generations VALUES ('face', 1)
    ON CONFLICT(descriptor) DO UPDATE SET generation = generation + 1;
END;
CREATE TRIGGER faces_del AFTER DELETE ON faces BEGIN
    INSERT INTO generations VALUES ('face', 1)
    ON CONFLICT(descriptor) DO UPDATE SET generation = generation + 1;
    INSERT INTO generations VALUES ('gallery', 1)
    ON CONFLICT(descriptor) DO UPDATE SET generation = generation + 1;
END;
CREATE TRIGGER faces_person AFTER UPDATE OF person_id, confirmed ON faces BEGIN
    INSERT INTO generations VALUES ('gallery', 1)
    ON CONFLICT(descriptor) DO UPDATE SET generation = generation + 1;
END;
CREATE TRIGGER examples_ins AFTER INSERT ON examples BEGIN
    INSERT INTO generations VALUES ('gallery', 1)
    ON CONFLICT(descriptor) DO UPDATE SET generation = generation + 1;
END;
CREATE TRIGGER examples_del AFTER DELETE ON examples BEGIN
    INSERT INTO generations VALUES ('gallery', 1)
    ON CONFLICT(descriptor) DO UPDATE SET generation = generation + 1;
END;
CREATE TRIGGER examples_upd AFTER UPDATE ON examples BEGIN
    INSERT INTO generations VALUES ('gallery', 1)
    ON CONFLICT(descriptor) DO UPDATE SET generation = generation + 1;
END;
"""


def apply(db: sqlite3.Connection) -> None:
    """Create the schema-2 tables, indexes and triggers (inside the caller's transaction)."""
    run_script(db, SQL)
