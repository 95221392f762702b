"""The catalog over a SQL database object: images, paths and vectors, in the data folder's
SQLite file (:mod:`lookalike.store.sqlite_db`) or a shared PostgreSQL
(:mod:`lookalike.store.postgres_db`), with the same SQL on both."""

from __future__ import annotations

import itertools
import operator
import os
import time
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from lookalike.store.base import ImageRow, NewImage, PathRow
from lookalike.store.database import Database, Handle, PathParam
from lookalike.store.sql_faces import SqlFaceStore, write_scan
from lookalike.store.sql_service import SqlServiceStore
from lookalike.store.sql_util import (
    CHUNK,
    blobs_for,
    chunks,
    in_chunks,
    insert_rows,
    keyset_batches,
    path_value,
    read_generation,
    stack_blobs,
)


class SqlCatalog:
    """The Catalog of an open database (SQLite or PostgreSQL), with its face and service
    stores on the same database (so faces are written in their image's transaction)."""

    def __init__(self, database: Database[Handle]) -> None:
        self.database = database
        self.faces = SqlFaceStore(database)
        self.service = SqlServiceStore(database)

    @property
    def where(self) -> str:
        return self.database.where

    def schema_version(self) -> int:
        return self.database.schema_version()

    def close(self) -> None:
        self.database.close()

    # -- reads ----------------------------------------------------------------------

    def path_row(self, path: str) -> PathRow | None:
        rows = self.database.query(
            "SELECT path, image_id, size, mtime_ns FROM paths WHERE path = ?",
            [self.database.path_param(path)],
        )
        if not rows:
            return None
        p, image_id, size, mtime_ns = rows[0]
        return PathRow(path_value(p), int(image_id), int(size), int(mtime_ns))

    def paths_under(self, root: str) -> list[str]:
        where, args = self._in_folder(root)
        rows = self.database.query(f"SELECT path FROM paths WHERE {where} ORDER BY path", args)
        return [path_value(r[0]) for r in rows]

    def _in_folder(self, root: str) -> tuple[str, list[PathParam]]:
        """A condition on ``path`` matching ``root`` and every path inside it, and its
        arguments: range scans on the primary key, one per range where the database keeps
        paths (SQLite: text, and BLOBs for names not UTF-8)."""
        ranges = self.database.path_ranges(root)
        where = " OR ".join(["(path = ? OR (path >= ? AND path < ?))"] * len(ranges))
        return f"({where})", [value for bounds in ranges for value in bounds]

    def image_by_sha(self, sha256: str) -> ImageRow | None:
        rows = self.database.query("SELECT id FROM images WHERE sha256 = ?", [sha256])
        if not rows:
            return None
        image_id = int(rows[0][0])
        return self.images([image_id]).get(image_id)

    def known_sha256(self, shas: Collection[str]) -> set[str]:
        found: set[str] = set()
        for chunk, marks in chunks(list(dict.fromkeys(shas))):
            select = f"SELECT sha256 FROM images WHERE sha256 IN ({marks})"
            found |= {str(r[0]) for r in self.database.query(select, chunk)}
        return found

    def images(self, ids: Sequence[int]) -> dict[int, ImageRow]:
        # One statement per chunk (a round trip each on a shared catalog): each image's
        # row once per path, its paths in order. The ids are named for both tables:
        # PostgreSQL does not carry them across an outer join, and would scan all paths.
        rows: dict[int, tuple[Sequence[Any], list[str]]] = {}
        for chunk, marks in in_chunks(ids, CHUNK // 2):
            for *image, p in self.database.query(
                "SELECT i.id, i.sha256, i.width, i.height, i.format, i.size, p.path "
                f"FROM images i LEFT JOIN paths p ON p.image_id = i.id AND p.image_id IN ({marks}) "
                f"WHERE i.id IN ({marks}) ORDER BY i.id, p.path",
                [*chunk, *chunk],
            ):
                _, paths = rows.setdefault(int(image[0]), (image, []))
                if p is not None:
                    paths.append(path_value(p))
        return {
            key: ImageRow(key, str(sha), int(w), int(h), str(fmt), int(size), tuple(paths))
            for key, ((_, sha, w, h, fmt, size), paths) in rows.items()
        }

    def image_page(
        self,
        offset: int,
        limit: int,
        *,
        newest: bool = False,
        folder: str | None = None,
        after: int | None = None,
    ) -> list[ImageRow]:
        conditions: list[str] = []
        args: list[object] = []
        if folder is not None:
            inside, bounds = self._in_folder(folder)
            conditions.append(f"id IN (SELECT image_id FROM paths WHERE {inside})")
            args += bounds
        if after is not None:
            conditions.append("id < ?" if newest else "id > ?")
            args.append(after)
        where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
        order = "DESC" if newest else "ASC"
        rows = self.database.query(
            f"SELECT id FROM images {where}ORDER BY id {order} LIMIT ? OFFSET ?",
            [*args, max(0, limit), max(0, offset)],
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

    def vector_batches(
        self, descriptor: str, version: str, size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Like ``vectors``, ``size`` rows at a time (memory: one batch)."""
        sql = (
            "SELECT image_id, vector FROM vectors WHERE descriptor = ? AND version = ? "
            "AND image_id > ? ORDER BY image_id LIMIT ?"
        )
        for rows in keyset_batches(self.database, sql, [descriptor, version], size):
            yield stack_blobs(rows)

    def vectors_for(
        self, descriptor: str, version: str, ids: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like ``vectors`` but only for ``ids`` (those that have this version)."""
        sql = (
            "SELECT image_id, vector FROM vectors WHERE descriptor = ? AND version = ? "
            "AND image_id IN ({marks}) ORDER BY image_id"
        )
        return blobs_for(self.database, sql, [descriptor, version], ids)

    def generation(self, descriptor: str) -> int:
        return read_generation(self.database, descriptor)

    def exact_duplicates(self) -> list[ImageRow]:
        rows = self.database.query(
            "SELECT image_id FROM paths GROUP BY image_id HAVING COUNT(*) > 1 ORDER BY image_id"
        )
        found = self.images([int(r[0]) for r in rows])
        return [found[k] for k in sorted(found)]

    def count_images(self, folder: str | None = None) -> int:
        if folder is None:
            return int(self.database.query("SELECT COUNT(*) FROM images")[0][0])
        inside, args = self._in_folder(folder)
        sql = f"SELECT COUNT(DISTINCT image_id) FROM paths WHERE {inside}"
        return int(self.database.query(sql, args)[0][0])

    def folders(self) -> list[tuple[str, int]]:
        # Folder names are not SQL (no portable dirname): the paths are read an id range at
        # a time, and each image counts once in every folder above one of its paths. Memory:
        # one range, and a count per folder (or per set of folders, for images in several).
        held: Counter[str | frozenset[str]] = Counter()
        for rows in self._paths_by_image():
            for _, group in itertools.groupby(rows, key=operator.itemgetter(0)):
                folders = {os.path.dirname(path_value(p)) for _, p in group}
                held[folders.pop() if len(folders) == 1 else frozenset(folders)] += 1
        under: Counter[str] = Counter()
        listed: set[str] = set()
        for key, count in held.items():
            if isinstance(key, str):
                listed.add(key)
                above: Iterable[str] = _chain(key)
            else:
                listed |= key
                above = set().union(*map(_chain, key))
            for folder in above:
                under[folder] += count
        return [(folder, under[folder]) for folder in sorted(listed)]

    def _paths_by_image(self) -> Iterator[list[Any]]:
        """The ``(image_id, path)`` rows, by image id, in ranges of ``FOLDER_RANGE`` ids."""
        ids = FOLDER_RANGE
        top = int(self.database.query("SELECT COALESCE(MAX(image_id), 0) FROM paths")[0][0])
        sql = "SELECT image_id, path FROM paths WHERE image_id > ? AND image_id <= ?"
        for start in range(0, top, ids):
            yield self.database.query(f"{sql} ORDER BY image_id", [start, start + ids])

    def count_paths(self) -> int:
        return int(self.database.query("SELECT COUNT(*) FROM paths")[0][0])

    def all_paths(self) -> list[str]:
        rows = self.database.query("SELECT path FROM paths ORDER BY path")
        return [path_value(r[0]) for r in rows]

    # -- writes ---------------------------------------------------------------------

    def record(self, items: Iterable[NewImage]) -> list[int]:
        # A few statements per batch, not per image: on a shared catalog each is a round trip.
        batch = list(items)
        with self.database.transaction() as db:
            ids = _image_ids(db, batch)
            left = self._write_paths(db, batch, ids)
            # The files that changed content: the images they left may now be orphans.
            dropped = {image_id for image_id in sorted(left) if self._drop_orphan(db, image_id)}
            kept = [(item, i) for item, i in zip(batch, ids, strict=True) if i not in dropped]
            _write_vectors(db, kept)
            for item, image_id in kept:
                if item.faces is not None:
                    write_scan(db, image_id, item.faces)
        return ids

    def _write_paths(self, db: Handle, batch: Sequence[NewImage], ids: Sequence[int]) -> set[int]:
        """Point each item's path at its image (of one path twice, the last item wins);
        returns the ids of the images that paths were moved away from."""
        keys = [self.database.path_param(item.path) for item in batch]
        select = "SELECT path, image_id FROM paths WHERE path"
        pointing = {
            _as_bound(p): image_id
            for p, image_id in _ids_where_in(db, select, list(dict.fromkeys(keys)))
        }
        rows: dict[PathParam, tuple[PathParam, int, int, int]] = {}
        left: set[int] = set()
        for key, item, image_id in zip(keys, batch, ids, strict=True):
            old = pointing.get(key)
            if old is not None and old != image_id:
                left.add(old)
            pointing[key] = image_id
            rows[key] = (key, image_id, item.size, item.mtime_ns)
        insert_rows(
            db,
            "paths (path, image_id, size, mtime_ns)",
            list(rows.values()),
            "ON CONFLICT(path) DO UPDATE SET image_id = excluded.image_id, "
            "size = excluded.size, mtime_ns = excluded.mtime_ns",
        )
        return left

    @staticmethod
    def _drop_orphan(db: Handle, image_id: int) -> bool:
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
                p = self.database.path_param(path)
                row = db.execute("SELECT image_id FROM paths WHERE path = ?", [p]).fetchone()
                if row is None:
                    continue
                db.execute("DELETE FROM paths WHERE path = ?", [p])
                if self._drop_orphan(db, int(row[0])):
                    deleted.append(int(row[0]))
        return deleted


def _image_ids(db: Handle, batch: Sequence[NewImage]) -> list[int]:
    """The id of each item's content, stored now if new: ``item.created`` is True for the
    first item of each SHA-256 whose content this batch stored.

    Idempotent under concurrent writers: of several transactions inserting one SHA-256,
    one inserts and the others, once it commits, find its row.
    """
    first: dict[str, NewImage] = {}
    for item in batch:
        first.setdefault(item.sha256, item)
    now = time.time()
    rows = [(i.sha256, i.width, i.height, i.format, i.size, now) for i in first.values()]
    inserted = insert_rows(
        db,
        "images (sha256, width, height, format, size, added_at)",
        rows,
        "ON CONFLICT(sha256) DO NOTHING RETURNING id, sha256",
        returning=True,
    )
    found = {str(sha): int(image_id) for image_id, sha in inserted}
    created = set(found)
    stored = [sha for sha in first if sha not in found]
    select = "SELECT sha256, id FROM images WHERE sha256"
    found |= {str(sha): image_id for sha, image_id in _ids_where_in(db, select, stored)}
    for item in batch:
        item.created = item.sha256 in created and first[item.sha256] is item
    return [found[item.sha256] for item in batch]


# Image ids whose paths ``folders`` reads at a time.
FOLDER_RANGE = 50_000


def _chain(folder: str) -> tuple[str, ...]:
    """``folder`` and every folder above it, up to the root."""
    chain = [folder]
    while (parent := os.path.dirname(chain[-1])) != chain[-1]:
        chain.append(parent)
    return tuple(chain)


def _ids_where_in(db: Handle, select: str, values: Sequence[Any]) -> list[tuple[Any, int]]:
    """The ``(value, id)`` rows of ``{select} IN (...)`` for ``values``, a statement per chunk."""
    found: list[tuple[Any, int]] = []
    for chunk, marks in chunks(values):
        rows = db.execute(f"{select} IN ({marks})", chunk).fetchall()
        found += [(value, int(key)) for value, key in rows]
    return found


def _as_bound(value: Any) -> PathParam:
    """A ``path`` column's value as ``Database.path_param`` binds it (bytes, not a view)."""
    return value if isinstance(value, str) else bytes(value)


def _write_vectors(db: Handle, kept: Sequence[tuple[NewImage, int]]) -> None:
    """Store each item's vectors for its image (of one image twice, the last item's); a
    vector stored as it is stays untouched, so its descriptor's generation is not bumped."""
    rows = {
        (name, image_id): (name, image_id, version, np.ascontiguousarray(row).tobytes())
        for item, image_id in kept
        for name, (version, row) in item.vectors.items()
    }
    insert_rows(
        db,
        "vectors (descriptor, image_id, version, vector)",
        list(rows.values()),
        "ON CONFLICT(descriptor, image_id) DO UPDATE SET "
        "version = excluded.version, vector = excluded.vector "
        "WHERE vectors.version != excluded.version OR vectors.vector != excluded.vector",
    )
