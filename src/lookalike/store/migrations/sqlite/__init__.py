"""The embedded SQLite catalog's schema steps, in order.

Frozen: see :mod:`lookalike.store.migrations`. The version is SQLite's ``PRAGMA user_version``;
:class:`~lookalike.store.sqlite_db.SqliteDatabase` runs the steps a catalog lacks when it opens
it.
"""

from __future__ import annotations

import sqlite3

from lookalike.store.database import Migration
from lookalike.store.migrations.sqlite import (
    v001_initial,
    v002_faces,
    v003_service,
    v004_person_keys,
    v005_shared,
)

MIGRATIONS: tuple[Migration[sqlite3.Connection], ...] = (
    Migration(1, v001_initial.apply),
    Migration(2, v002_faces.apply),
    Migration(3, v003_service.apply),
    Migration(4, v004_person_keys.apply),
    Migration(5, v005_shared.apply),
)

# The schema this code writes and reads.
SCHEMA_VERSION = len(MIGRATIONS)
