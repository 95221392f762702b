"""The embedded catalog: one SQLite file in the data folder (WAL, versioned schema)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.errors import DataFolderError, SchemaTooNew
from lookalike.store.base import ImageRow, NewImage, PathRow
from lookalike.store.sqlite_faces import SCHEMA_V2, SqliteFaceStore, add_person_keys, write_scan
from lookalike.store.sqlite_service import SCHEMA_V3, SqliteServiceStore
from lookalike.store.sqlite_util import in_chunks, path_param, path_value, stack_blobs

SCHEMA_VERSION = 4


def _run_script(db: sqlite3.Connection, script: str) -> None:
    """Run statements one by one: ``executescript`` would commit the open transaction."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""


def _v1(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
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
        """,
    )


def _v2(db: sqlite3.Connection) -> None:
    """Faces, people, enrolment examples and clusters (lookalike.store.sqlite_faces)."""
    _run_script(db, SCHEMA_V2)


def _v3(db: sqlite3.Connection) -> None:
    """API keys and background jobs of the server (lookalike.store.sqlite_service)."""
    _run_script(db, SCHEMA_V3)


def _v4(db: sqlite3.Connection) -> None:
    """People's names unique caseless in every script (lookalike.store.sqlite_faces)."""
    add_person_keys(db)


# Migration n takes the schema from version n - 1 to n.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _v1, 2: _v2, 3: _v3, 4: _v4}


class SqliteCatalog:
    """Catalog in ``<data_dir>/catalog.sqlite3``.

    One connection shared under a lock: writes are serialised here, and SQLite's
    busy timeout makes other processes wait instead of failing with "database is locked".
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(path), timeout=60.0, isolation_level=None, check_same_thread=False
        )
        try:
            with self._damage_reported():
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("PRAGMA foreign_keys=ON")
                self._migrate()
        except BaseException:
            self._db.close()
            raise
        self.faces = SqliteFaceStore(self)
        self.service = SqliteServiceStore(self)

    # -- plumbing -------------------------------------------------------------------

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
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: taken at once (IMMEDIATE), committed or rolled back whole."""
        with self._lock, self._damage_reported():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        with self._lock, self._damage_reported():
            return self._db.execute(sql, args).fetchall()

    def _migrate(self) -> None:
        with self._tx() as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"{self.path}: catalog schema version {version} is newer than this "
                    f"lookalike supports ({SCHEMA_VERSION}); upgrade lookalike"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[target](db)
                db.execute(f"PRAGMA user_version = {target}")

    def schema_version(self) -> int:
        return int(self._query("PRAGMA user_version")[0][0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- reads ----------------------------------------------------------------------

    def path_row(self, path: str) -> PathRow | None:
        rows = self._query(
            "SELECT path, image_id, size, mtime_ns FROM paths WHERE path = ?", [path_param(path)]
        )
        if not rows:
            return None
        p, image_id, size, mtime_ns = rows[0]
        return PathRow(path_value(p), int(image_id), int(size), int(mtime_ns))

    def paths_under(self, root: str) -> list[str]:
        # Range scans on the primary key: every path starting with "root/". Names that are
        # not UTF-8 are stored as BLOBs (path_param), which sort after all text: a second
        # range over the bytes finds those.
        found: list[str] = []
        bounds: list[tuple[str | bytes, str | bytes, str | bytes]] = []
        if isinstance(path_param(root), str):
            prefix = root.rstrip("/") + "/"
            bounds.append((root, prefix, prefix[:-1] + chr(ord("/") + 1)))
        raw = os.fsencode(root)
        raw_prefix = raw.rstrip(b"/") + b"/"
        bounds.append((raw, raw_prefix, raw_prefix[:-1] + b"0"))
        for exact, low, high in bounds:
            rows = self._query(
                "SELECT path FROM paths WHERE path = ? OR (path >= ? AND path < ?)",
                [exact, low, high],
            )
            found += [path_value(r[0]) for r in rows]
        return found

    def image_by_sha(self, sha256: str) -> ImageRow | None:
        rows = self._query("SELECT id FROM images WHERE sha256 = ?", [sha256])
        if not rows:
            return None
        image_id = int(rows[0][0])
        return self.images([image_id]).get(image_id)

    def images(self, ids: Sequence[int]) -> dict[int, ImageRow]:
        out: dict[int, ImageRow] = {}
        for chunk, marks in in_chunks(ids):
            rows = self._query(
                f"SELECT id, sha256, width, height, format, size FROM images WHERE id IN ({marks})",
                chunk,
            )
            paths: dict[int, list[str]] = {}
            for image_id, p in self._query(
                f"SELECT image_id, path FROM paths WHERE image_id IN ({marks}) ORDER BY path",
                chunk,
            ):
                paths.setdefault(int(image_id), []).append(path_value(p))
            for i, sha, w, h, fmt, size in rows:
                key = int(i)
                out[key] = ImageRow(
                    key,
                    str(sha),
                    int(w),
                    int(h),
                    str(fmt),
                    int(size),
                    tuple(paths.get(key, ())),
                )
        return out

    def image_page(self, offset: int, limit: int) -> list[ImageRow]:
        rows = self._query(
            "SELECT id FROM images ORDER BY id LIMIT ? OFFSET ?", [max(0, limit), max(0, offset)]
        )
        found = self.images([int(r[0]) for r in rows])
        return [found[int(r[0])] for r in rows if int(r[0]) in found]

    def missing_vectors(self, image_id: int, wanted: dict[str, str]) -> list[str]:
        have = {
            (str(d), str(v))
            for d, v in self._query(
                "SELECT descriptor, version FROM vectors WHERE image_id = ?", [image_id]
            )
        }
        return [name for name, version in wanted.items() if (name, version) not in have]

    def vector_ids(self, descriptor: str, version: str) -> np.ndarray:
        rows = self._query(
            "SELECT image_id FROM vectors WHERE descriptor = ? AND version = ? ORDER BY image_id",
            [descriptor, version],
        )
        return np.array([r[0] for r in rows], dtype=np.int64)

    def vectors(self, descriptor: str, version: str) -> tuple[np.ndarray, np.ndarray]:
        rows = self._query(
            "SELECT image_id, vector FROM vectors WHERE descriptor = ? AND version = ? "
            "ORDER BY image_id",
            [descriptor, version],
        )
        return stack_blobs(rows)

    def vectors_for(
        self, descriptor: str, version: str, ids: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like ``vectors`` but only for ``ids`` (those that have this version)."""
        rows: list[Any] = []
        for chunk, marks in in_chunks(ids):
            rows += self._query(
                f"SELECT image_id, vector FROM vectors WHERE descriptor = ? AND version = ? "
                f"AND image_id IN ({marks}) ORDER BY image_id",
                [descriptor, version, *chunk],
            )
        return stack_blobs(rows)

    def generation(self, descriptor: str) -> int:
        rows = self._query("SELECT generation FROM generations WHERE descriptor = ?", [descriptor])
        return int(rows[0][0]) if rows else 0

    def exact_duplicates(self) -> list[ImageRow]:
        rows = self._query(
            "SELECT image_id FROM paths GROUP BY image_id HAVING COUNT(*) > 1 ORDER BY image_id"
        )
        found = self.images([int(r[0]) for r in rows])
        return [found[k] for k in sorted(found)]

    def count_images(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM images")[0][0])

    def count_paths(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM paths")[0][0])

    def all_paths(self) -> list[str]:
        return [path_value(r[0]) for r in self._query("SELECT path FROM paths ORDER BY path")]

    # -- writes ---------------------------------------------------------------------

    def record(self, items: Iterable[NewImage]) -> list[int]:
        ids: list[int] = []
        with self._tx() as db:
            now = time.time()
            for item in items:
                cur = db.execute(
                    "INSERT INTO images (sha256, width, height, format, size, added_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(sha256) DO NOTHING",
                    [item.sha256, item.width, item.height, item.format, item.size, now],
                )
                item.created = cur.rowcount == 1
                image_id = int(
                    db.execute("SELECT id FROM images WHERE sha256 = ?", [item.sha256]).fetchone()[
                        0
                    ]
                )
                old = db.execute(
                    "SELECT image_id FROM paths WHERE path = ?", [path_param(item.path)]
                ).fetchone()
                db.execute(
                    "INSERT INTO paths (path, image_id, size, mtime_ns) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(path) DO UPDATE SET image_id = excluded.image_id, "
                    "size = excluded.size, mtime_ns = excluded.mtime_ns",
                    [path_param(item.path), image_id, item.size, item.mtime_ns],
                )
                if old is not None and int(old[0]) != image_id:
                    # The file changed content: its old image may now be an orphan.
                    self._drop_orphan(db, int(old[0]))
                for name, (version, row) in item.vectors.items():
                    blob = np.ascontiguousarray(row).tobytes()
                    db.execute(
                        "INSERT INTO vectors (descriptor, image_id, version, vector) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT(descriptor, image_id) DO UPDATE SET "
                        "version = excluded.version, vector = excluded.vector "
                        "WHERE version != excluded.version OR vector != excluded.vector",
                        [name, image_id, version, blob],
                    )
                if item.faces is not None:
                    write_scan(db, image_id, item.faces)
                ids.append(image_id)
        return ids

    @staticmethod
    def _drop_orphan(db: sqlite3.Connection, image_id: int) -> bool:
        left = db.execute("SELECT 1 FROM paths WHERE image_id = ? LIMIT 1", [image_id]).fetchone()
        if left is not None:
            return False
        # Vectors and faces first, explicitly, so their triggers bump the index generations.
        db.execute("DELETE FROM vectors WHERE image_id = ?", [image_id])
        db.execute("DELETE FROM faces WHERE image_id = ?", [image_id])
        db.execute("DELETE FROM images WHERE id = ?", [image_id])
        return True

    def remove_paths(self, paths: Iterable[str]) -> list[int]:
        deleted: list[int] = []
        with self._tx() as db:
            for path in paths:
                p = path_param(path)
                row = db.execute("SELECT image_id FROM paths WHERE path = ?", [p]).fetchone()
                if row is None:
                    continue
                db.execute("DELETE FROM paths WHERE path = ?", [p])
                if self._drop_orphan(db, int(row[0])):
                    deleted.append(int(row[0]))
        return deleted
