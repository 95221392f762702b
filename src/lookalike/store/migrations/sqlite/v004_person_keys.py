"""Schema 4: people's names unique by :func:`~lookalike.store.base.person_key` (a
``name_key`` column with a UNIQUE index), not by SQLite's NOCASE, which folds ASCII only.

Frozen: never edit (see :mod:`lookalike.store.migrations`); should ``person_key`` ever change,
a later step recomputes the keys.
"""

from __future__ import annotations

import sqlite3

from lookalike.store.base import person_key


def apply(db: sqlite3.Connection) -> None:
    """Add and fill ``people.name_key`` (inside the caller's transaction). Of existing names
    that fold to one key the first keeps it and the others get " (2)", " (3)"...: nothing is
    merged behind the user's back."""
    # NOCASE's UNIQUE on ``name`` stays (SQLite cannot drop it without rebuilding the table
    # that faces and examples refer to): names equal under NOCASE have one key anyway.
    db.execute("ALTER TABLE people ADD COLUMN name_key TEXT NOT NULL DEFAULT ''")
    rows = [(int(i), str(n)) for i, n in db.execute("SELECT id, name FROM people ORDER BY id")]
    # A new name must not fold to any existing one, nor (by NOCASE) clash with one.
    taken = {person_key(name) for _, name in rows}
    kept: set[str] = set()
    for person_id, name in rows:
        shown, key = name, person_key(name)
        if key in kept:
            n = 2
            while person_key(f"{name} ({n})") in taken:
                n += 1
            shown = f"{name} ({n})"
            key = person_key(shown)
            taken.add(key)
        kept.add(key)
        db.execute("UPDATE people SET name = ?, name_key = ? WHERE id = ?", [shown, key, person_id])
    db.execute("CREATE UNIQUE INDEX people_by_key ON people(name_key)")
