"""The embedded catalog: images, paths and vectors in the data folder's SQLite database
(:mod:`lookalike.store.sqlite_db`)."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.store.base import ImageRow, NewImage, PathRow
from lookalike.store.database import Database
from lookalike.store.sqlite_db import SqliteDatabase
from lookalike.store.sqlite_faces import SqliteFaceStore, write_scan
from lookalike.store.sqlite_service import SqliteServiceStore
from lookalike.store.sqlite_util import (
    in_chunks,
    path_param,
    path_value,
    read_generation,
    stack_blobs,
)


class SqliteCatalog:
    """The Catalog of an open SQLite database (:class:`SqliteDatabase`), with its face and
    service stores on the same database (so faces are written in their image's transaction)."""

    def __init__(self, database: Database[sqlite3.Connection]) -> None:
        self.database = database
        self.faces = SqliteFaceStore(database)
        self.service = SqliteServiceStore(database)

    @classmethod
    def open(cls, path: Path) -> SqliteCatalog:
        """The catalog in the SQLite file ``path``: created if missing, migrated if older."""
        return cls(SqliteDatabase(path))

    def schema_version(self) -> int:
        return self.database.schema_version()

    def close(self) -> None:
        self.database.close()

    # -- reads ----------------------------------------------------------------------

    def path_row(self, path: str) -> PathRow | None:
        rows = self.database.query(
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
            rows = self.database.query(
                "SELECT path FROM paths WHERE path = ? OR (path >= ? AND path < ?)",
                [exact, low, high],
            )
            found += [path_value(r[0]) for r in rows]
        return found

    def image_by_sha(self, sha256: str) -> ImageRow | None:
        rows = self.database.query("SELECT id FROM images WHERE sha256 = ?", [sha256])
        if not rows:
            return None
        image_id = int(rows[0][0])
        return self.images([image_id]).get(image_id)

    def images(self, ids: Sequence[int]) -> dict[int, ImageRow]:
        out: dict[int, ImageRow] = {}
        for chunk, marks in in_chunks(ids):
            rows = self.database.query(
                f"SELECT id, sha256, width, height, format, size FROM images WHERE id IN ({marks})",
                chunk,
            )
            paths: dict[int, list[str]] = {}
            for image_id, p in self.database.query(
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
        rows = self.database.query(
            "SELECT id FROM images ORDER BY id LIMIT ? OFFSET ?", [max(0, limit), max(0, offset)]
        )
        found = self.images([int(r[0]) for r in rows])
        return [found[int(r[0])] for r in rows if int(r[0]) in found]

    def missing_vectors(self, image_id: int, wanted: dict[str, str]) -> list[str]:
        have = {
            (str(d), str(v))
            for d, v in self.database.query(
                "SELECT descriptor, version FROM vectors WHERE image_id = ?", [image_id]
            )
        }
        return [name for name, version in wanted.items() if (name, version) not in have]

    def vector_ids(self, descriptor: str, version: str) -> np.ndarray:
        rows = self.database.query(
            "SELECT image_id FROM vectors WHERE descriptor = ? AND version = ? ORDER BY image_id",
            [descriptor, version],
        )
        return np.array([r[0] for r in rows], dtype=np.int64)

    def vectors(self, descriptor: str, version: str) -> tuple[np.ndarray, np.ndarray]:
        rows = self.database.query(
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
            rows += self.database.query(
                f"SELECT image_id, vector FROM vectors WHERE descriptor = ? AND version = ? "
                f"AND image_id IN ({marks}) ORDER BY image_id",
                [descriptor, version, *chunk],
            )
        return stack_blobs(rows)

    def generation(self, descriptor: str) -> int:
        return read_generation(self.database, descriptor)

    def exact_duplicates(self) -> list[ImageRow]:
        rows = self.database.query(
            "SELECT image_id FROM paths GROUP BY image_id HAVING COUNT(*) > 1 ORDER BY image_id"
        )
        found = self.images([int(r[0]) for r in rows])
        return [found[k] for k in sorted(found)]

    def count_images(self) -> int:
        return int(self.database.query("SELECT COUNT(*) FROM images")[0][0])

    def count_paths(self) -> int:
        return int(self.database.query("SELECT COUNT(*) FROM paths")[0][0])

    def all_paths(self) -> list[str]:
        rows = self.database.query("SELECT path FROM paths ORDER BY path")
        return [path_value(r[0]) for r in rows]

    # -- writes ---------------------------------------------------------------------

    def record(self, items: Iterable[NewImage]) -> list[int]:
        ids: list[int] = []
        with self.database.transaction() as db:
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
        with self.database.transaction() as db:
            for path in paths:
                p = path_param(path)
                row = db.execute("SELECT image_id FROM paths WHERE path = ?", [p]).fetchone()
                if row is None:
                    continue
                db.execute("DELETE FROM paths WHERE path = ?", [p])
                if self._drop_orphan(db, int(row[0])):
                    deleted.append(int(row[0]))
        return deleted
