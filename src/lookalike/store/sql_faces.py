"""Faces, people and clusters in the catalog's database (SQLite's schema steps 2 and 4, the
same tables in PostgreSQL's), with the same SQL on both.

Shares the catalog's database object, so faces are written in the same transaction as their
image. ``"left"`` and ``"right"`` are quoted: PostgreSQL reserves them.
"""

from __future__ import annotations

import json
import time
import unicodedata
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from lookalike.errors import Conflict, NotFound
from lookalike.store.base import (
    CLUSTERS_GENERATION,
    ClusterRow,
    ExampleRow,
    FacePhotos,
    FaceRow,
    FaceScan,
    FaceVectors,
    NewExample,
    PersonRow,
    person_key,
)
from lookalike.store.database import Database, Handle
from lookalike.store.sql_util import (
    blobs_for,
    float_blob,
    in_chunks,
    insert_rows,
    keyset_batches,
    path_value,
    read_generation,
    stack_blobs,
)

# The generation counter (see the catalog's ``generations`` table) of face embeddings.
FACE_GENERATION = "face"
# Bumped when the gallery of known faces (examples, confirmed faces) changes.
GALLERY_GENERATION = "gallery"
# Faces shown per cluster in listings.
SAMPLE_SIZE = 6

_FACE_COLUMNS = (
    'f.id, f.image_id, f.idx, f."left", f.top, f."right", f.bottom, f.score, f.quality, '
    "f.usable, f.flags, f.landmarks, f.person_id, p.name, f.confirmed, f.cluster_id, "
    "(SELECT path FROM paths WHERE paths.image_id = f.image_id ORDER BY path LIMIT 1)"
)
_FACE_FROM = "faces f LEFT JOIN people p ON p.id = f.person_id"


def write_scan(db: Handle, image_id: int, scan: FaceScan) -> None:
    """Store an image's faces (inside the caller's transaction); idempotent.

    A scan by the same version already stored is left alone (keeping names and clusters);
    one by another version replaces the image's faces.
    """
    row = db.execute("SELECT version FROM face_scans WHERE image_id = ?", [image_id]).fetchone()
    if row is not None and str(row[0]) == scan.version:
        return
    db.execute("DELETE FROM faces WHERE image_id = ?", [image_id])
    rows = [
        [
            image_id,
            i,
            scan.version,
            *face.box,
            float(face.score),
            float(face.quality),
            int(face.usable),
            json.dumps(face.flags),
            json.dumps([[round(x, 2), round(y, 2)] for x, y in face.landmarks]),
            float_blob(face.embedding),
            face.thumb,
        ]
        for i, face in enumerate(scan.faces)
    ]
    insert_rows(
        db,
        'faces (image_id, idx, version, "left", top, "right", bottom, score, quality, usable, '
        "flags, landmarks, embedding, thumb)",
        rows,
        "",
    )
    db.execute(
        "INSERT INTO face_scans (image_id, version, scanned_at) VALUES (?, ?, ?) "
        "ON CONFLICT(image_id) DO UPDATE SET version = excluded.version, "
        "scanned_at = excluded.scanned_at",
        [image_id, scan.version, time.time()],
    )


def _bump_clusters(db: Handle) -> None:
    """Count one change to the clusters (inside the caller's transaction)."""
    db.execute(
        "INSERT INTO generations (descriptor, generation) VALUES (?, 1) "
        "ON CONFLICT (descriptor) DO UPDATE SET generation = generations.generation + 1",
        [CLUSTERS_GENERATION],
    )


def _alphabetical(name: str) -> tuple[str, str]:
    """A sort key for names: letters without their accents first ("Élodie" before "Straße"),
    then the caseless name."""
    key = person_key(name)
    bare = "".join(c for c in unicodedata.normalize("NFD", key) if not unicodedata.combining(c))
    return bare, key


def _face_row(r: Sequence[Any]) -> FaceRow:
    return FaceRow(
        id=int(r[0]),
        image_id=int(r[1]),
        idx=int(r[2]),
        box=(int(r[3]), int(r[4]), int(r[5]), int(r[6])),
        score=float(r[7]),
        quality=float(r[8]),
        usable=bool(r[9]),
        flags=tuple(json.loads(r[10])),
        landmarks=tuple((float(x), float(y)) for x, y in json.loads(r[11])),
        person_id=None if r[12] is None else int(r[12]),
        person=None if r[13] is None else str(r[13]),
        confirmed=bool(r[14]),
        cluster_id=None if r[15] is None else int(r[15]),
        path=path_value(r[16] or ""),
    )


def _vectors(rows: list[Any]) -> FaceVectors:
    """FaceVectors from rows of (id, image_id, label, quality, embedding)."""
    n = len(rows)
    emb = (
        np.frombuffer(b"".join(bytes(r[4]) for r in rows), dtype=np.float32).reshape(n, -1)
        if n
        else np.zeros((0, 128), dtype=np.float32)
    )
    return FaceVectors(
        ids=np.array([r[0] for r in rows], dtype=np.int64),
        image_ids=np.array([r[1] for r in rows], dtype=np.int64),
        labels=np.array([r[2] or 0 for r in rows], dtype=np.int64),
        quality=np.array([r[3] for r in rows], dtype=np.float32),
        embeddings=emb,
    )


class SqlFaceStore:
    """The FaceStore of an open database (SQLite or PostgreSQL)."""

    def __init__(self, database: Database[Handle]) -> None:
        self.database = database

    # -- faces --------------------------------------------------------------------------

    def face_scanned(self, image_id: int, version: str) -> bool:
        rows = self.database.query(
            "SELECT 1 FROM face_scans WHERE image_id = ? AND version = ?", [image_id, version]
        )
        return bool(rows)

    def generation(self, name: str) -> int:
        return read_generation(self.database, name)

    def vector_ids(self, name: str, version: str) -> np.ndarray:
        rows = self.database.query("SELECT id FROM faces WHERE version = ? ORDER BY id", [version])
        return np.array([r[0] for r in rows], dtype=np.int64)

    def vectors(self, name: str, version: str) -> tuple[np.ndarray, np.ndarray]:
        rows = self.database.query(
            "SELECT id, embedding FROM faces WHERE version = ? ORDER BY id", [version]
        )
        return stack_blobs(rows)

    def vector_batches(
        self, name: str, version: str, size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        sql = "SELECT id, embedding FROM faces WHERE version = ? AND id > ? ORDER BY id LIMIT ?"
        for rows in keyset_batches(self.database, sql, [version], size):
            yield stack_blobs(rows)

    def vectors_for(
        self, name: str, version: str, ids: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        sql = "SELECT id, embedding FROM faces WHERE version = ? AND id IN ({marks}) ORDER BY id"
        return blobs_for(self.database, sql, [version], ids)

    def faces(self, ids: Sequence[int]) -> dict[int, FaceRow]:
        out: dict[int, FaceRow] = {}
        for chunk, marks in in_chunks(ids):
            for r in self.database.query(
                f"SELECT {_FACE_COLUMNS} FROM {_FACE_FROM} WHERE f.id IN ({marks})", chunk
            ):
                row = _face_row(r)
                out[row.id] = row
        return out

    def _faces_where(self, where: str, args: Sequence[object]) -> list[FaceRow]:
        rows = self.database.query(
            f"SELECT {_FACE_COLUMNS} FROM {_FACE_FROM} WHERE {where} ORDER BY f.quality DESC, f.id",
            args,
        )
        return [_face_row(r) for r in rows]

    def faces_of_image(self, image_id: int) -> list[FaceRow]:
        rows = self.database.query(
            f"SELECT {_FACE_COLUMNS} FROM {_FACE_FROM} WHERE f.image_id = ? ORDER BY f.idx",
            [image_id],
        )
        return [_face_row(r) for r in rows]

    def faces_of_person(self, person_id: int) -> list[FaceRow]:
        return self._faces_where("f.person_id = ?", [person_id])

    def faces_of_cluster(self, cluster_id: int) -> list[FaceRow]:
        return self._faces_where("f.cluster_id = ?", [cluster_id])

    def _images_where(self, column: str, owner: int, offset: int, limit: int) -> FacePhotos:
        """A page of the images with faces whose ``column`` is ``owner``, newest first."""
        where = f"FROM faces WHERE {column} = ?"
        (total,), *_ = self.database.query(f"SELECT COUNT(DISTINCT image_id) {where}", [owner])
        rows = self.database.query(
            f"SELECT image_id, id {where} AND image_id IN (SELECT image_id {where} "
            "GROUP BY image_id ORDER BY image_id DESC LIMIT ? OFFSET ?) "
            "ORDER BY image_id DESC, idx",
            [owner, owner, max(0, limit), max(0, offset)],
        )
        images: dict[int, list[int]] = {}
        for image_id, face_id in rows:
            images.setdefault(int(image_id), []).append(int(face_id))
        return FacePhotos(int(total), [(i, tuple(f)) for i, f in images.items()])

    def images_of_person(self, person_id: int, offset: int, limit: int) -> FacePhotos:
        return self._images_where("person_id", person_id, offset, limit)

    def images_of_cluster(self, cluster_id: int, offset: int, limit: int) -> FacePhotos:
        return self._images_where("cluster_id", cluster_id, offset, limit)

    def face_thumb(self, face_id: int) -> bytes | None:
        rows = self.database.query("SELECT thumb FROM faces WHERE id = ?", [face_id])
        return bytes(rows[0][0]) if rows else None

    def count_faces(self, version: str) -> dict[str, int]:
        (n, usable, named, clustered, todo), *_ = self.database.query(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE usable <> 0), COUNT(person_id), "
            "COUNT(cluster_id), COUNT(*) FILTER (WHERE usable <> 0 AND person_id IS NULL "
            "AND cluster_id IS NULL) FROM faces WHERE version = ?",
            [version],
        )
        return {
            "faces": int(n),
            "usable": int(usable),
            "named": int(named),
            "clustered": int(clustered),
            "unprocessed": int(todo),
        }

    def people_in_images(self, image_ids: Sequence[int]) -> set[tuple[int, int]]:
        out: set[tuple[int, int]] = set()
        for chunk, marks in in_chunks(image_ids):
            out |= {
                (int(i), int(p))
                for i, p in self.database.query(
                    f"SELECT image_id, person_id FROM faces WHERE person_id IS NOT NULL "
                    f"AND image_id IN ({marks})",
                    chunk,
                )
            }
        return out

    def unprocessed(self, version: str) -> FaceVectors:
        return _vectors(
            self.database.query(
                "SELECT id, image_id, 0, quality, embedding FROM faces WHERE version = ? "
                "AND usable <> 0 AND person_id IS NULL AND cluster_id IS NULL ORDER BY id",
                [version],
            )
        )

    def clustered(self, version: str) -> FaceVectors:
        return _vectors(
            self.database.query(
                "SELECT id, image_id, cluster_id, quality, embedding FROM faces "
                "WHERE version = ? AND cluster_id IS NOT NULL ORDER BY id",
                [version],
            )
        )

    def gallery(self, version: str) -> FaceVectors:
        return _vectors(
            self.database.query(
                "SELECT -id, 0, person_id, quality, embedding FROM examples WHERE version = ? "
                "UNION ALL "
                "SELECT id, image_id, person_id, quality, embedding FROM faces "
                "WHERE version = ? AND confirmed <> 0 AND person_id IS NOT NULL",
                [version, version],
            )
        )

    def assign_clusters(
        self, face_ids: Sequence[int], cluster_ids: Sequence[int]
    ) -> dict[int, int]:
        with self.database.transaction() as db:
            _bump_clusters(db)
            now = time.time()
            ids: dict[int, int] = {}
            for cid in sorted({int(c) for c in cluster_ids}):
                if cid > 0 and db.execute("SELECT 1 FROM clusters WHERE id = ?", [cid]).fetchone():
                    ids[cid] = cid
                    continue
                # New (negative), or removed meanwhile by another process: a fresh cluster.
                row = db.execute(
                    "INSERT INTO clusters (created_at) VALUES (?) RETURNING id", [now]
                ).fetchone()
                ids[cid] = int(row[0])
            db.executemany(
                "UPDATE faces SET cluster_id = ? WHERE id = ?",
                [(ids[int(c)], int(f)) for f, c in zip(face_ids, cluster_ids, strict=True)],
            )
            self._drop_empty_clusters(db)
            return ids

    def set_person(self, face_ids: Sequence[int], person_id: int | None, confirmed: bool) -> None:
        with self.database.transaction() as db:
            clustered = False
            for fid in face_ids:
                found = db.execute(
                    "SELECT cluster_id FROM faces WHERE id = ?", [int(fid)]
                ).fetchone()
                if found is None:
                    raise NotFound(f"face {fid} not found")
                clustered = clustered or found[0] is not None
            if clustered and person_id is not None:
                _bump_clusters(db)
            # A named face leaves its cluster; one un-named keeps it.
            cluster = "cluster_id" if person_id is None else "NULL"
            db.executemany(
                f"UPDATE faces SET person_id = ?, confirmed = ?, cluster_id = {cluster} "
                "WHERE id = ?",
                [(person_id, int(confirmed), int(f)) for f in face_ids],
            )
            self._drop_empty_clusters(db)

    @staticmethod
    def _drop_empty_clusters(db: Handle) -> None:
        db.execute(
            "DELETE FROM clusters WHERE NOT EXISTS "
            "(SELECT 1 FROM faces WHERE faces.cluster_id = clusters.id)"
        )

    def reset_clusters(self) -> int:
        with self.database.transaction() as db:
            _bump_clusters(db)
            n = int(db.execute("SELECT COUNT(*) FROM clusters").fetchone()[0])
            db.execute("UPDATE faces SET cluster_id = NULL WHERE cluster_id IS NOT NULL")
            db.execute(
                "UPDATE faces SET person_id = NULL WHERE person_id IS NOT NULL AND confirmed = 0"
            )
            db.execute("DELETE FROM clusters")
            return n

    def clusters(self) -> list[ClusterRow]:
        rows = self.database.query(
            "SELECT cluster_id, id FROM faces WHERE cluster_id IS NOT NULL "
            "ORDER BY cluster_id, quality DESC, id"
        )
        members: dict[int, list[int]] = {}
        for cid, fid in rows:
            members.setdefault(int(cid), []).append(int(fid))
        out = [ClusterRow(c, len(f), tuple(f[:SAMPLE_SIZE])) for c, f in members.items()]
        out.sort(key=lambda c: (-c.size, c.id))
        return out

    def merge_clusters(self, into: int, others: Sequence[int]) -> int:
        with self.database.transaction() as db:
            _bump_clusters(db)
            for cid in [into, *others]:
                if db.execute("SELECT 1 FROM clusters WHERE id = ?", [cid]).fetchone() is None:
                    raise NotFound(f"cluster {cid} not found")
            moved = 0
            for cid in others:
                if cid == into:
                    continue
                moved += db.execute(
                    "UPDATE faces SET cluster_id = ? WHERE cluster_id = ?", [into, cid]
                ).rowcount
            self._drop_empty_clusters(db)
            return moved

    # -- people -------------------------------------------------------------------------

    _PERSON = (
        "SELECT p.id, p.name, "
        "(SELECT COUNT(*) FROM examples e WHERE e.person_id = p.id), "
        "(SELECT COUNT(*) FROM faces f WHERE f.person_id = p.id), p.created_at FROM people p"
    )

    @staticmethod
    def _person_row(r: Sequence[Any]) -> PersonRow:
        return PersonRow(int(r[0]), str(r[1]), int(r[2]), int(r[3]), float(r[4]))

    def add_person(self, name: str, *, exist_ok: bool = False) -> PersonRow:
        key = person_key(name)
        with self.database.transaction() as db:
            # The transaction holds the write lock: no other process adds a name between
            # this look-up and the insert (and the UNIQUE index would refuse it).
            found = db.execute("SELECT name FROM people WHERE name_key = ?", [key]).fetchone()
            if found is not None and not exist_ok:
                raise Conflict(f"a person named {str(found[0])!r} exists already")
            if found is None:
                db.execute(
                    "INSERT INTO people (name, name_key, created_at) VALUES (?, ?, ?)",
                    [name, key, time.time()],
                )
            return self._person_row(
                db.execute(f"{self._PERSON} WHERE p.name_key = ?", [key]).fetchone()
            )

    def person(self, name: str) -> PersonRow | None:
        rows = self.database.query(f"{self._PERSON} WHERE p.name_key = ?", [person_key(name)])
        return self._person_row(rows[0]) if rows else None

    def person_by_id(self, person_id: int) -> PersonRow | None:
        rows = self.database.query(f"{self._PERSON} WHERE p.id = ?", [person_id])
        return self._person_row(rows[0]) if rows else None

    def people(self) -> list[PersonRow]:
        people = [self._person_row(r) for r in self.database.query(self._PERSON)]
        return sorted(people, key=lambda p: (_alphabetical(p.name), p.id))

    def rename_person(self, person_id: int, name: str) -> None:
        key = person_key(name)
        with self.database.transaction() as db:
            # The transaction holds the write lock: the check stands until the update.
            taken = db.execute(
                "SELECT 1 FROM people WHERE name_key = ? AND id <> ?", [key, person_id]
            ).fetchone()
            if taken is not None:
                raise Conflict(f"a person named {name!r} exists already")
            cur = db.execute(
                "UPDATE people SET name = ?, name_key = ? WHERE id = ?", [name, key, person_id]
            )
            if cur.rowcount == 0:
                raise NotFound(f"person {person_id} not found")

    def merge_people(self, into: int, others: Sequence[int]) -> None:
        with self.database.transaction() as db:
            for pid in others:
                if pid == into:
                    continue
                db.execute("UPDATE faces SET person_id = ? WHERE person_id = ?", [into, pid])
                # An example given for both people is kept once (the other copy goes with
                # the person deleted below).
                db.execute(
                    "UPDATE examples SET person_id = ? WHERE person_id = ? AND NOT EXISTS "
                    "(SELECT 1 FROM examples e WHERE e.person_id = ? "
                    "AND e.sha256 = examples.sha256 AND e.face_index = examples.face_index)",
                    [into, pid, into],
                )
                db.execute("DELETE FROM people WHERE id = ?", [pid])

    def remove_person(self, person_id: int) -> None:
        with self.database.transaction() as db:
            # Its faces become unknown again (and are clustered with the others).
            db.execute(
                "UPDATE faces SET person_id = NULL, confirmed = 0 WHERE person_id = ?",
                [person_id],
            )
            db.execute("DELETE FROM people WHERE id = ?", [person_id])

    def add_examples(self, person_id: int, examples: Sequence[NewExample]) -> list[int]:
        ids: list[int] = []
        with self.database.transaction() as db:
            now = time.time()
            for ex in examples:
                f = ex.face
                db.execute(
                    "INSERT INTO examples (person_id, sha256, face_index, source, version, "
                    '"left", top, "right", bottom, quality, embedding, thumb, added_at) '
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(person_id, sha256, face_index) DO UPDATE SET "
                    "source = excluded.source, version = excluded.version, "
                    '"left" = excluded."left", top = excluded.top, "right" = excluded."right", '
                    "bottom = excluded.bottom, quality = excluded.quality, "
                    "embedding = excluded.embedding, thumb = excluded.thumb "
                    "WHERE examples.version != excluded.version",
                    [
                        person_id,
                        ex.sha256,
                        ex.face_index,
                        ex.source,
                        ex.version,
                        *f.box,
                        float(f.quality),
                        float_blob(f.embedding),
                        f.thumb,
                        now,
                    ],
                )
                row = db.execute(
                    "SELECT id FROM examples WHERE person_id = ? AND sha256 = ? AND face_index = ?",
                    [person_id, ex.sha256, ex.face_index],
                ).fetchone()
                ids.append(int(row[0]))
        return ids

    def examples(self, person_id: int) -> list[ExampleRow]:
        rows = self.database.query(
            "SELECT id, person_id, sha256, face_index, source, "
            '"left", top, "right", bottom, quality '
            "FROM examples WHERE person_id = ? ORDER BY id",
            [person_id],
        )
        return [
            ExampleRow(
                int(r[0]),
                int(r[1]),
                str(r[2]),
                int(r[3]),
                str(r[4]),
                (int(r[5]), int(r[6]), int(r[7]), int(r[8])),
                float(r[9]),
            )
            for r in rows
        ]

    def example_thumb(self, example_id: int) -> bytes | None:
        rows = self.database.query("SELECT thumb FROM examples WHERE id = ?", [example_id])
        return bytes(rows[0][0]) if rows else None

    def remove_example(self, person_id: int, example_id: int) -> bool:
        with self.database.transaction() as db:
            cur = db.execute(
                "DELETE FROM examples WHERE id = ? AND person_id = ?", [example_id, person_id]
            )
            return cur.rowcount > 0
