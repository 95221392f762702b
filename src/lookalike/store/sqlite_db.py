"""The embedded catalog's database: one SQLite file in the data folder (WAL, versioned schema),
shared by the catalog, face and service stores (a :class:`~lookalike.store.database.Database`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lookalike.errors import DataFolderError
from lookalike.store import sqlite_util
from lookalike.store.database import Migration, PathParam, pending_migrations
from lookalike.store.migrations.sqlite import MIGRATIONS

PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON")


class SqliteDatabase:
    """The SQLite file ``path``, created if missing and migrated to the last step of
    ``migrations`` (SchemaTooNew if it is newer).

    One connection shared under a lock: writes are serialised here, and SQLite's
    busy timeout makes other processes wait instead of failing with "database is locked".
    """

    def __init__(
        self, path: Path, migrations: Sequence[Migration[sqlite3.Connection]] = MIGRATIONS
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.where = str(path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(path), timeout=60.0, isolation_level=None, check_same_thread=False
        )
        try:
            with self._damage_reported():
                for pragma in PRAGMAS:
                    self._db.execute(pragma)
                self._migrate(migrations)
        except BaseException:
            self._db.close()
            raise

    @contextmanager
    def _damage_reported(self) -> Iterator[None]:
        """SQLite's "not a database" / "malformed" errors as a DataFolderError that says
        what to do (constraint, locking and other operational errors pass through)."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if type(exc) is not sqlite3.DatabaseError:
                raise
            raise DataFolderError(
                f"{self.path}: not a lookalike catalog, or damaged ({exc}); move it aside "
                "to start a new catalog, or restore it from a backup"
            ) from None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: taken at once (IMMEDIATE), committed or rolled back whole.
        Yields the connection to run its statements on."""
        with self._lock, self._damage_reported():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        """The rows of one read statement."""
        with self._lock, self._damage_reported():
            return self._db.execute(sql, args).fetchall()

    def _migrate(self, migrations: Sequence[Migration[sqlite3.Connection]]) -> None:
        """Apply the steps the file lacks, in one transaction with the version they reach."""
        with self.transaction() as db:
            found = int(db.execute("PRAGMA user_version").fetchone()[0])
            for step in pending_migrations(found, migrations, self.where):
                step.apply(db)
                db.execute(f"PRAGMA user_version = {int(step.version)}")

    def schema_version(self) -> int:
        """The file's ``user_version``: the last schema step applied to it."""
        return int(self.query("PRAGMA user_version")[0][0])

    def path_param(self, path: str) -> PathParam:
        """UTF-8 text, or the bytes of a name that is not UTF-8 as a BLOB (one column)."""
        return sqlite_util.path_param(path)

    def path_ranges(self, root: str) -> list[tuple[PathParam, PathParam, PathParam]]:
        return sqlite_util.path_ranges(root)

    def close(self) -> None:
        with self._lock:
            self._db.close()
