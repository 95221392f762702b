"""Search every indexed face: the faces nearest to a query face, within a distance.

The embeddings are kept in an L2 faiss index by the same
:class:`~lookalike.index.manager.IndexManager` as the image descriptors (one file beside
theirs, caught up with the catalog before each use).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.errors import BadInput
from lookalike.faces import Face
from lookalike.faces.api import main_embedded_face
from lookalike.faces.read import Source, source_label
from lookalike.index.manager import IndexManager
from lookalike.people.scan import FaceSpec
from lookalike.settings import Settings
from lookalike.store.base import FaceStore

__all__ = ["FaceHit", "FaceSearch", "FaceSearcher"]


@dataclass
class FaceHit:
    rank: int
    face_id: int
    image_id: int
    path: str
    box: tuple[int, int, int, int]
    distance: float
    person: str | None
    cluster_id: int | None


@dataclass
class FaceSearch:
    query: str
    face: Face
    results: list[FaceHit]


class FaceSearcher:
    """Searches the indexed faces of one data folder."""

    def __init__(self, settings: Settings, store: FaceStore, index_dir: Path, version: str) -> None:
        self.settings = settings
        self.store = store
        self.spec = FaceSpec(version)
        self.index = IndexManager(
            store,
            index_dir,
            ann_threshold=settings.ann_threshold,
            nprobe=settings.ann_nprobe,
            metric="l2",
        )

    def search(
        self,
        query: Source,
        *,
        k: int = 10,
        face: int | None = None,
        max_distance: float | None = None,
        crop: bool = False,
    ) -> FaceSearch:
        """Indexed faces nearest to the main face of ``query`` (or its face number ``face``),
        within ``max_distance`` (default ``face_threshold``), nearest first."""
        if k <= 0:
            raise BadInput(f"k must be a positive number, got {k}")
        chosen = main_embedded_face(query, self.settings, face=face, crop=crop)
        assert chosen.embedding is not None
        hits = self.search_vector(chosen.embedding, k=k, max_distance=max_distance)
        return FaceSearch(source_label(query), chosen, hits)

    def search_vector(
        self, embedding: np.ndarray, *, k: int = 10, max_distance: float | None = None
    ) -> list[FaceHit]:
        """The ``k`` indexed faces nearest to ``embedding`` within ``max_distance``
        (default ``face_threshold``), nearest first."""
        limit = self.settings.face_threshold if max_distance is None else max_distance
        index = self.index.get(self.spec)
        sq, ids = index.search(np.asarray(embedding, dtype=np.float32).reshape(1, -1), k)
        pairs = [
            (int(i), float(np.sqrt(max(float(s), 0.0))))
            for s, i in zip(sq[0], ids[0], strict=True)
            if i >= 0
        ]
        return self.hits([(i, d) for i, d in pairs if d <= limit])

    def hits(self, pairs: Sequence[tuple[int, float]]) -> list[FaceHit]:
        """The hits of ``(face id, distance)`` pairs, as the face store has them now (faces
        removed meanwhile are left out)."""
        rows = self.store.faces([i for i, _ in pairs])
        hits: list[FaceHit] = []
        for i, d in pairs:
            row = rows.get(i)
            if row is None:  # removed by another process meanwhile
                continue
            hits.append(
                FaceHit(
                    len(hits) + 1, i, row.image_id, row.path, row.box, d, row.person, row.cluster_id
                )
            )
        return hits
