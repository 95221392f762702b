"""Typed entries of the result cache: what is stored, under which key, how it is read back.

Two kinds, counted apart (``on_event``, the server's ``/metrics``):

- :data:`VECTORS`, what a query image gives whatever the collection: its descriptor rows and
  its faces with their embeddings, keyed by the SHA-256 of its bytes, the model versions and
  the settings that change them (shared by every catalog using the cache);
- :data:`ANSWERS`, rankings of a search or an identification, keyed also by the options, the
  catalog (:func:`lookalike.backends.catalog_identity`) and its generation counters, so any
  change to the collection makes new keys. A ranking holds ids and scores only: paths,
  names and clusters are read from the catalog when it is used, so a renamed person or an
  image's new path shows as it is now.

Entries come from the network, so nothing is unpickled: arrays are raw bytes behind a JSON
header (:mod:`lookalike.cache.codec`), everything else JSON checked by pydantic. A failing
store or an entry that does not parse is an error event and a miss: the caller computes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError

from lookalike.cache.base import ByteCache, CacheUnavailable, NoCache
from lookalike.cache.codec import pack_array, unpack_array
from lookalike.decode import sha256_hex
from lookalike.faces.detect import Face
from lookalike.faces.embed import EMBEDDING_DIM
from lookalike.settings import Settings

__all__ = [
    "ANSWERS",
    "VECTORS",
    "CacheEvent",
    "FaceRanking",
    "Matches",
    "Part",
    "Ranking",
    "ResultCache",
]

log = logging.getLogger("lookalike.cache")

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

VECTORS = "vectors"
ANSWERS = "answers"
# Bumped when an entry's layout changes: entries of another layout are never read.
FORMAT = 1
# ``on_event(kind, outcome)``: kind VECTORS or ANSWERS, outcome "hit", "miss" or "error".
CacheEvent = Callable[[str, str], None]
# Parts of a key: JSON scalars.
Part = str | int | float | bool | None


class Ranking(BaseModel):
    """A search's hits: ``(image_id, sha256, score)``, best first."""

    hits: list[tuple[int, str, float]]


class FaceRanking(BaseModel):
    """A face search's hits: ``(face_id, distance)``, nearest first."""

    hits: list[tuple[int, float]]


class Matches(BaseModel):
    """An identification: per face ``(person id or None, distance or None,
    [(person id, distance)] nearest first)`` (``Recogniser.identify_vectors``)."""

    matches: list[tuple[int | None, float | None, list[tuple[int, float]]]]


class _StoredFace(BaseModel):
    """A :class:`Face` but its embedding (kept in the entry's array) and chip (not kept)."""

    box: tuple[int, int, int, int]
    score: float
    landmarks: list[tuple[float, float]]
    quality: float
    flags: list[str]
    usable: bool
    yaw: float
    sharpness: float


class _StoredFaces(BaseModel):
    faces: list[_StoredFace]


def _ignore(kind: str, outcome: str) -> None:
    return None


class ResultCache:
    """Typed get-or-compute over a :class:`ByteCache` (see the module's docstring)."""

    def __init__(
        self,
        store: ByteCache,
        settings: Settings,
        *,
        scope: str,
        on_event: CacheEvent | None = None,
    ) -> None:
        self.store = store
        self.enabled = not isinstance(store, NoCache)
        self.scope = scope
        self.ttl_s = settings.cache_ttl_s
        self.max_bytes = settings.cache_max_bytes
        self.prefix = settings.cache_prefix
        self.on_event: CacheEvent = on_event or _ignore
        self._told: set[str] = set()

    def key(self, entry: str, parts: Sequence[Part], *, scoped: bool) -> str:
        """The store's key of an entry: prefix, entry name, hash of the parts (bounded)."""
        named = [FORMAT, entry, self.scope if scoped else "", *parts]
        digest = sha256_hex(json.dumps(named, separators=(",", ":")).encode())
        return f"{self.prefix}:{entry}:{digest}"

    # -- VECTORS --------------------------------------------------------------------------

    def rows(
        self,
        parts: Sequence[Part],
        compute: Callable[[], np.ndarray],
        fits: Callable[[np.ndarray], bool],
    ) -> np.ndarray:
        """A query's descriptor rows: from the cache when there (and ``fits(rows)``), else
        ``compute()``, then stored."""
        key = self.key("rows", parts, scoped=False)

        def parse(data: bytes) -> np.ndarray:
            rows, _ = unpack_array(data)
            if not fits(rows):
                raise ValueError(f"rows of shape {rows.shape} and type {rows.dtype} do not fit")
            return rows

        found = self._read(VECTORS, key, parse)
        if found is not None:
            return found
        rows = compute()
        self._write(VECTORS, key, lambda: pack_array(rows))
        return rows

    def faces(self, parts: Sequence[Part], compute: Callable[[], list[Face]]) -> list[Face]:
        """A query's faces, embedded: from the cache when there, else ``compute()``, then
        stored. Faces from the cache carry no chip."""
        key = self.key("faces", parts, scoped=False)
        found = self._read(VECTORS, key, _unpack_faces)
        if found is not None:
            return found
        faces = compute()
        if all(f.embedding is not None for f in faces):
            self._write(VECTORS, key, lambda: _pack_faces(faces))
        return faces

    # -- ANSWERS --------------------------------------------------------------------------

    def answer(
        self, entry: str, parts: Sequence[Part], model: type[M], use: Callable[[M], T | None]
    ) -> T | None:
        """``use(ranking)`` of the ranking stored under ``parts``, or None: none stored, the
        cache failed, or ``use`` found it no longer fits the catalog (None, a miss)."""
        key = self.key(entry, parts, scoped=True)
        return self._read(ANSWERS, key, lambda data: use(model.model_validate_json(data)))

    def keep(self, entry: str, parts: Sequence[Part], ranking: BaseModel) -> None:
        """Store ``ranking`` under ``parts`` (see :meth:`answer`)."""
        key = self.key(entry, parts, scoped=True)
        self._write(ANSWERS, key, lambda: ranking.model_dump_json().encode())

    # -- the store ------------------------------------------------------------------------

    def _read(self, kind: str, key: str, parse: Callable[[bytes], T | None]) -> T | None:
        try:
            data = self.store.get(key)
        except CacheUnavailable:  # logged once by the store
            self.on_event(kind, "error")
            return None
        if data is None:
            self.on_event(kind, "miss")
            return None
        try:
            value = parse(data)
        except (ValueError, ValidationError, TypeError) as exc:
            self.on_event(kind, "error")
            self._tell_garbage(key, exc)
            return None
        self.on_event(kind, "miss" if value is None else "hit")
        return value

    def _write(self, kind: str, key: str, data: Callable[[], bytes]) -> None:
        value = data()
        if len(value) > self.max_bytes:
            return
        try:
            self.store.put(key, value, self.ttl_s)
        except CacheUnavailable:  # logged once by the store
            self.on_event(kind, "error")

    def _tell_garbage(self, key: str, exc: Exception) -> None:
        entry = key.rsplit(":", 2)[-2]
        if entry in self._told:
            return
        self._told.add(entry)
        log.warning(
            "cache %s: an unreadable %s entry (%s) was computed again and replaced (this "
            "is logged once per kind of entry)",
            self.store.where,
            entry,
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
        )


def _pack_faces(faces: Sequence[Face]) -> bytes:
    stored = [_StoredFace.model_validate(f, from_attributes=True).model_dump() for f in faces]
    embeddings = [np.asarray(f.embedding, dtype=np.float32).ravel() for f in faces]
    array = np.stack(embeddings) if embeddings else np.zeros((0, EMBEDDING_DIM), np.float32)
    return pack_array(array, {"faces": stored})


def _unpack_faces(data: bytes) -> list[Face]:
    array, meta = unpack_array(data)
    stored = _StoredFaces.model_validate(meta).faces
    if array.dtype != np.float32 or array.shape != (len(stored), EMBEDDING_DIM):
        raise ValueError("the embeddings do not match the faces")
    return [_face(s, e) for s, e in zip(stored, array, strict=True)]


def _face(stored: _StoredFace, embedding: np.ndarray) -> Face:
    fields: dict[str, Any] = stored.model_dump()
    return Face(**fields, embedding=embedding)
