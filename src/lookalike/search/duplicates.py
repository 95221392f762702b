"""Exact and near-duplicate groups.

Exact duplicates share their bytes (one image, several paths). Near-duplicates are linked
by either of two cheap tests on stored vectors, then grouped by union-find:
- cnn cosine similarity >= threshold (resized, recompressed, cropped, recoloured,
  captioned, blurred and mirrored copies);
- a perceptual hash within a small Hamming distance under any of the 8 rotations/flips,
  computed from the stored hash bits alone (rotated copies, which the cnn vector misses).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lookalike.describe.base import Descriptor
from lookalike.describe.phash import dihedral_variants
from lookalike.index.base import VectorIndex
from lookalike.index.faiss_index import BinaryIndex
from lookalike.index.manager import rows_as
from lookalike.store.base import Catalog, ImageRow

# Neighbours looked at per image; a near-duplicate group larger than this is still
# joined transitively through its members.
NEIGHBOURS = 16
# Hamming distance (of 64 bits) under which two hashes mean the same picture.
PHASH_MAX_DISTANCE = 6


@dataclass
class DuplicateGroup:
    images: list[ImageRow]
    # The weakest link that joined the group (cosine or 1 - hamming / 64).
    score: float


@dataclass
class DuplicateReport:
    exact: list[ImageRow]
    near: list[DuplicateGroup]


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}
        self.weakest: dict[int, float] = {}

    def find(self, a: int) -> int:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int, score: float) -> None:
        ra, rb = self.find(a), self.find(b)
        weakest = min(score, self.weakest.get(ra, 1.0), self.weakest.get(rb, 1.0))
        if ra != rb:
            self.parent[rb] = ra
        self.weakest[ra] = weakest

    def groups(self) -> list[tuple[list[int], float]]:
        out: dict[int, list[int]] = {}
        for a in list(self.parent):
            out.setdefault(self.find(a), []).append(a)
        return [(sorted(m), self.weakest.get(r, 1.0)) for r, m in out.items() if len(m) > 1]


def _pairs(
    index: VectorIndex,
    ids: np.ndarray,
    rows: np.ndarray,
    min_score: float,
    *,
    rescore: bool = False,
) -> list[tuple[int, int, float]]:
    """Pairs of ids whose score reaches ``min_score``. ``rescore``: scores are the cosine
    of the float ``rows`` themselves (``ids`` sorted), not of the index's space (a
    whitened index compares other numbers; the threshold is a cosine of descriptors)."""
    out: list[tuple[int, int, float]] = []
    k = min(NEIGHBOURS, len(index))
    for start in range(0, len(ids), 1024):
        scores, found = index.search(rows[start : start + 1024], k)
        if rescore:
            at = np.searchsorted(ids, found).clip(0, len(ids) - 1)
            scores = np.einsum("qd,qkd->qk", rows[start : start + 1024], rows[at])
        for qi, (srow, frow) in enumerate(zip(scores, found, strict=True)):
            me = int(ids[start + qi])
            for s, other in zip(srow, frow, strict=True):
                if other >= 0 and other != me and s >= min_score:
                    out.append((me, int(other), float(s)))
    return out


def find_duplicates(
    catalog: Catalog,
    *,
    cnn_index: VectorIndex,
    cnn: Descriptor,
    phash: Descriptor,
    threshold: float,
    phash_max_distance: int = PHASH_MAX_DISTANCE,
) -> DuplicateReport:
    """Exact groups from the catalog and near-duplicate groups from stored vectors."""
    uf = _UnionFind()
    ids, raw = catalog.vectors(cnn.name, cnn.version)
    if len(ids) > 1:
        for a, b, s in _pairs(cnn_index, ids, rows_as(cnn, raw), threshold, rescore=True):
            uf.union(a, b, s)
    pids, praw = catalog.vectors(phash.name, phash.version)
    if len(pids) > 1:
        codes = rows_as(phash, praw)
        hashes = BinaryIndex(phash.dim)
        hashes.add(pids, codes)
        min_score = 1.0 - phash_max_distance / phash.dim
        for variant in dihedral_variants(codes):
            for a, b, s in _pairs(hashes, pids, variant, min_score):
                uf.union(a, b, s)
    groups = uf.groups()
    rows = catalog.images([i for members, _ in groups for i in members])
    near = [
        DuplicateGroup([rows[i] for i in members if i in rows], score) for members, score in groups
    ]
    near.sort(key=lambda g: (-len(g.images), -g.score))
    return DuplicateReport(catalog.exact_duplicates(), near)
