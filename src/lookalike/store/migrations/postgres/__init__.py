"""The shared PostgreSQL catalog's schema steps, in order.

Frozen: see :mod:`lookalike.store.migrations`. Its own chain, not SQLite's: step 1 creates
what SQLite's steps 1 to 5 made, in PostgreSQL's types. The version is the one row of the
``schema_version`` table; :class:`~lookalike.store.postgres_db.PostgresDatabase` runs the steps
a catalog lacks when it opens it, one process at a time.
"""

from __future__ import annotations

import psycopg

from lookalike.store.database import Migration
from lookalike.store.migrations.postgres import v001_initial

MIGRATIONS: tuple[Migration[psycopg.Connection[tuple[object, ...]]], ...] = (
    Migration(1, v001_initial.apply),
)

# The schema this code writes and reads.
SCHEMA_VERSION = len(MIGRATIONS)
