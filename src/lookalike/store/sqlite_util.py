"""What the SQLite database and its frozen migrations share: scripts run inside a transaction,
and how a path is stored in SQLite (text, or a BLOB for a name that is not UTF-8)."""

from __future__ import annotations

import os
import sqlite3

from lookalike.store.database import PathParam
from lookalike.store.sql_util import byte_ranges


def run_script(db: sqlite3.Connection, script: str) -> None:
    """Run ``script``'s statements one by one: ``executescript`` would commit the open
    transaction."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""


def path_param(path: str) -> PathParam:
    """``path`` as SQLite stores it: text when it is valid UTF-8, otherwise its file-system
    bytes as a BLOB (a name that is not UTF-8 arrives with surrogate escapes, which SQLite
    text cannot hold). Lossless: ``sql_util.path_value`` gives ``path`` back."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def path_ranges(root: str) -> list[tuple[PathParam, PathParam, PathParam]]:
    """The ranges of stored paths that may be ``root`` or inside it: text, then (BLOBs sort
    after all text) the file-system bytes, which is where names that are not UTF-8 are."""
    bounds: list[tuple[PathParam, PathParam, PathParam]] = []
    if isinstance(path_param(root), str):
        prefix = root.rstrip("/") + "/"
        bounds.append((root, prefix, prefix[:-1] + chr(ord("/") + 1)))
    return bounds + byte_ranges(root)
