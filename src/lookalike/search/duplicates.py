"""Exact duplicates, edited copies of one photo, and shots of one scene.

Exact duplicates share their bytes (one image, several paths). Otherwise pairs of images
are found by two cheap tests on stored vectors:
- cnn cosine similarity >= a candidate threshold, among each image's nearest neighbours;
- a perceptual hash within a small Hamming distance under any of the 8 rotations/flips,
  computed from the stored hash bits alone (rotated copies, which the cnn vector misses).

Each candidate pair is then verified on the pixels (``search/verify.py``: local features,
RANSAC, a photometric check). Verified pairs are edited copies of one photo: grouped by
union-find into ``near``. Pairs that fail verification but pass the old vector test (cosine
>= ``threshold``, or the hash test) look alike without being copies, mostly shots of one
scene seconds apart: grouped into ``scenes``. A pair with an image whose files are all gone,
unreadable or changed since indexing cannot be verified: when it passes the vector test it
is grouped into ``unverified``, never into ``near``.

Without verification (``verify=False``) every pair passing the vector test is in ``near``,
as before verification existed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from lookalike.describe.base import Descriptor
from lookalike.describe.phash import dihedral_variants
from lookalike.index.base import VectorIndex
from lookalike.index.faiss_index import BinaryIndex
from lookalike.index.manager import rows_as
from lookalike.search.verify import FeatureCache, Kind, Verdict, verify_pair
from lookalike.store.base import Catalog, ImageRow

# Neighbours looked at per image; a group larger than this is still joined transitively
# through its members.
NEIGHBOURS = 16
# Hamming distance (of 64 bits) under which two hashes mean the same picture.
PHASH_MAX_DISTANCE = 6
# Pairs queued per verifying thread at a time (their images' features are held meanwhile).
VERIFY_WINDOW = 8

Progress = Callable[[int, int], None]


@dataclass
class DuplicateGroup:
    images: list[ImageRow]
    # The weakest link that joined the group (cosine or 1 - hamming / 64).
    score: float


@dataclass
class DuplicateReport:
    exact: list[ImageRow]
    # Edited copies of one photo (verified on the pixels unless verification was off).
    near: list[DuplicateGroup]
    # Alike but not copies of each other: mostly other shots of one scene.
    scenes: list[DuplicateGroup] = field(default_factory=list)
    # Alike by their vectors, but a file could not be read to verify them.
    unverified: list[DuplicateGroup] = field(default_factory=list)
    # Pairs verified on the pixels, and images whose features were computed.
    pairs_verified: int = 0
    images_read: int = 0


@dataclass(frozen=True)
class Candidates:
    """Candidate pairs (smaller id first) with their best vector score."""

    scores: dict[tuple[int, int], float]
    # Pairs passing the old vector test: cosine >= threshold, or the hash test.
    alike: set[tuple[int, int]]


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


def candidates(
    catalog: Catalog,
    *,
    cnn_index: VectorIndex,
    cnn: Descriptor,
    phash: Descriptor,
    threshold: float,
    candidate_threshold: float,
    phash_max_distance: int = PHASH_MAX_DISTANCE,
) -> Candidates:
    """Pairs within ``candidate_threshold`` (cnn) or the hash test, each with its best score."""
    scores: dict[tuple[int, int], float] = {}
    alike: set[tuple[int, int]] = set()

    def add(a: int, b: int, s: float, passes: bool) -> None:
        key = (min(a, b), max(a, b))
        scores[key] = max(s, scores.get(key, -1.0))
        if passes:
            alike.add(key)

    ids, raw = catalog.vectors(cnn.name, cnn.version)
    if len(ids) > 1:
        lowest = min(threshold, candidate_threshold)
        for a, b, s in _pairs(cnn_index, ids, rows_as(cnn, raw), lowest, rescore=True):
            add(a, b, s, s >= threshold)
    pids, praw = catalog.vectors(phash.name, phash.version)
    if len(pids) > 1:
        codes = rows_as(phash, praw)
        hashes = BinaryIndex(phash.dim)
        hashes.add(pids, codes)
        min_score = 1.0 - phash_max_distance / phash.dim
        for variant in dihedral_variants(codes):
            for a, b, s in _pairs(hashes, pids, variant, min_score):
                add(a, b, s, True)
    return Candidates(scores, alike)


def bounded(found: Candidates, per_image: int) -> list[tuple[int, int]]:
    """The candidate pairs to verify: best score first, each image in at most ``per_image``
    of them; returned sorted by the smaller id, so each image's pairs come together."""
    taken: Counter[int] = Counter()
    kept: list[tuple[int, int]] = []
    for pair in sorted(found.scores, key=lambda p: -found.scores[p]):
        a, b = pair
        if taken[a] < per_image and taken[b] < per_image:
            taken[a] += 1
            taken[b] += 1
            kept.append(pair)
    return sorted(kept)


def verify_all(
    pairs: list[tuple[int, int]],
    rows: dict[int, ImageRow],
    features: FeatureCache,
    progress: Progress | None = None,
) -> dict[tuple[int, int], Verdict]:
    """A verdict per pair, ``features.workers`` pairs at a time (OpenCV and the decoders
    release the GIL); each image's features are dropped after its last pair, so memory is
    bounded by the images of the pairs in flight and of those still to come."""
    left = Counter(i for pair in pairs for i in pair)
    out: dict[tuple[int, int], Verdict] = {}
    window = VERIFY_WINDOW * features.workers
    with ThreadPoolExecutor(features.workers, thread_name_prefix="verify") as pool:
        for start in range(0, len(pairs), window):
            chunk = pairs[start : start + window]
            verdicts = pool.map(partial(_verify_one, rows=rows, features=features), chunk)
            for pair, verdict in zip(chunk, verdicts, strict=True):
                out[pair] = verdict
                for i in pair:
                    left[i] -= 1
                    if left[i] == 0:
                        features.release(i)
                if progress is not None:
                    progress(len(out), len(pairs))
    return out


def _verify_one(
    pair: tuple[int, int], *, rows: dict[int, ImageRow], features: FeatureCache
) -> Verdict:
    ra, rb = rows.get(pair[0]), rows.get(pair[1])
    fa = features.get(ra) if ra is not None else None
    fb = features.get(rb) if rb is not None else None
    if fa is None or fb is None or rb is None:
        return Verdict(Kind.UNREADABLE, 0, 0.0)
    return verify_pair(fa, fb, partial(features.flipped, rb, fb), features.config)


def _grouped(
    links: list[tuple[int, int, float]], rows: dict[int, ImageRow]
) -> list[DuplicateGroup]:
    uf = _UnionFind()
    for a, b, s in links:
        uf.union(a, b, s)
    groups = [
        DuplicateGroup([rows[i] for i in members if i in rows], score)
        for members, score in uf.groups()
    ]
    groups = [g for g in groups if len(g.images) > 1]
    groups.sort(key=lambda g: (-len(g.images), -g.score))
    return groups


def find_duplicates(
    catalog: Catalog,
    *,
    cnn_index: VectorIndex,
    cnn: Descriptor,
    phash: Descriptor,
    threshold: float,
    features: FeatureCache | None,
    candidate_threshold: float,
    pairs_per_image: int = NEIGHBOURS,
    progress: Progress | None = None,
) -> DuplicateReport:
    """Exact groups from the catalog; near (copies), scene and unverified groups from the
    candidate pairs of stored vectors, verified with ``features`` (None: not verified)."""
    found = candidates(
        catalog,
        cnn_index=cnn_index,
        cnn=cnn,
        phash=phash,
        threshold=threshold,
        candidate_threshold=candidate_threshold if features is not None else threshold,
    )
    exact = catalog.exact_duplicates()
    if features is None:
        near = [(a, b, found.scores[(a, b)]) for a, b in sorted(found.alike)]
        rows = catalog.images(sorted({i for a, b, _ in near for i in (a, b)}))
        return DuplicateReport(exact, _grouped(near, rows))
    pairs = bounded(found, pairs_per_image)
    rows = catalog.images(sorted({i for pair in pairs for i in pair}))
    verdicts = verify_all(pairs, rows, features, progress)
    links: dict[Kind, list[tuple[int, int, float]]] = {kind: [] for kind in Kind}
    for pair, verdict in verdicts.items():
        if verdict.kind is Kind.COPY or pair in found.alike:
            links[verdict.kind].append((*pair, found.scores[pair]))
    return DuplicateReport(
        exact,
        _grouped(links[Kind.COPY], rows),
        _grouped(links[Kind.SCENE], rows),
        _grouped(links[Kind.UNREADABLE], rows),
        pairs_verified=len(pairs),
        images_read=features.computed,
    )
