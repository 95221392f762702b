"""Clustering and identification at scale, checked against brute force.

The fast paths (centroid bounds, blocks) must give exactly what the full scans give: the
average-linkage rule computed over every clustered face, the closest-pair-first merge over
every pair of clusters, and the dense face-by-gallery distances. The data have structure as
faces do (identities: tight groups of varied size, of varied spread, some near each other)
and photos with several faces, so that the same-photo rule bites.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np
import pytest

import lookalike
from lookalike.faces import embed as embed_module
from lookalike.people import cluster as cluster_module
from lookalike.people.cluster import ClusterState, cluster_faces
from lookalike.people.recognise import CANDIDATES, Match
from lookalike.store.base import FaceRecord, FaceScan, NewImage

THRESHOLDS = (0.45, 0.5, 0.55)


def identities(n: int, people: int, seed: int) -> tuple[np.ndarray, list[int], np.ndarray]:
    """(embeddings (n, 128) float32, photo of each face, quality (n,)): faces around
    ``people`` centres, ~0.5 apart for neighbours; about a third of photos hold 2-3 faces."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0.0, 1.0, 128)
    centres = base / np.linalg.norm(base) + rng.normal(0.0, 0.06, (people, 128))
    who = rng.zipf(1.6, n) % people  # a few people in many photos, most in few
    spread = rng.uniform(0.015, 0.03, people)[who][:, None]
    rows = (centres[who] + rng.normal(0.0, 1.0, (n, 128)) * spread).astype(np.float32)
    photos = [int(p) for p in rng.integers(0, int(n * 0.7), n)]
    return rows, photos, rng.random(n)


def scan_add(state: ScanState, row: np.ndarray, photo: Hashable, threshold: float) -> int:
    """The rule by brute force: the mean distance to every cluster from every member."""
    if state.rows:
        rows = np.stack(state.rows)
        dist = np.linalg.norm(rows - row, axis=1)
        ids, inverse = np.unique(state.labels, return_inverse=True)
        mean = np.bincount(inverse, weights=dist) / np.bincount(inverse)
        for i in np.argsort(mean, kind="stable"):
            if mean[i] > threshold:
                break
            if photo not in state.photos[int(ids[i])]:
                return state.put(row, photo, int(ids[i]))
    return state.put(row, photo, state.next)


class ScanState:
    """Clustered faces as plain lists, for the brute-force rule."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.labels: list[int] = []
        self.photos: dict[int, set[Hashable]] = {}
        # New clusters get ids above every id seen (as ClusterState numbers them).
        self.next = 1

    def put(self, row: np.ndarray, photo: Hashable, cid: int) -> int:
        self.next = max(self.next, cid + 1)
        self.rows.append(row)
        self.labels.append(cid)
        self.photos.setdefault(cid, set()).add(photo)
        return cid


def greedy_merge(
    rows: np.ndarray, labels: np.ndarray, photos: Sequence[Hashable], threshold: float
) -> np.ndarray:
    """Merge by brute force: of every pair of clusters within ``threshold`` (mean pairwise
    distance) sharing no photo, the closest (then by ids) first, until none is left."""
    rows64 = rows.astype(np.float64)
    members = {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}
    seen = {c: {photos[i] for i in m} for c, m in members.items()}

    def close(a: int, b: int) -> float | None:
        if seen[a] & seen[b]:
            return None
        ra, rb = rows64[members[a]], rows64[members[b]]
        sq = (ra**2).sum(axis=1)[:, None] + (rb**2).sum(axis=1)[None, :] - 2.0 * ra @ rb.T
        d = float(np.sqrt(np.maximum(sq, 0.0)).mean())
        return d if d <= threshold else None

    pairs = {(a, b): close(a, b) for a in members for b in members if a < b}
    while candidates := [(d, a, b) for (a, b), d in pairs.items() if d is not None]:
        _, a, b = min(candidates)
        keep, gone = (a, b) if len(members[a]) >= len(members[b]) else (b, a)
        members[keep] = np.concatenate([members[keep], members.pop(gone)])
        seen[keep] |= seen.pop(gone)
        pairs = {p: d for p, d in pairs.items() if gone not in p and keep not in p}
        pairs.update({(min(keep, c), max(keep, c)): close(keep, c) for c in members if c != keep})
    out = labels.copy()
    for cid, m in members.items():
        out[m] = cid
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_add_one_by_one_and_in_blocks_equal_the_full_scan(seed: int, threshold: float) -> None:
    rows, photos, _ = identities(700, 40, seed)
    scan = ScanState()
    expected = [scan_add(scan, r, p, threshold) for r, p in zip(rows, photos, strict=True)]
    one = ClusterState()
    assert [one.add(r, p, threshold) for r, p in zip(rows, photos, strict=True)] == expected
    blocks = ClusterState()
    assert blocks.add_many(rows, photos, threshold).tolist() == expected
    # The data exercise the rule: clusters of all sizes, and shared photos keep faces out.
    sizes = np.bincount(np.asarray(expected))[1:]
    assert sizes.max() >= 20 and sizes.min() <= 2
    alone = ClusterState().add_many(rows, list(range(len(rows))), threshold)
    assert alone.tolist() != expected


def test_blocks_continue_a_seeded_state_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster_module, "BLOCK", 37)  # many blocks, and a ragged last one
    rows, photos, _ = identities(600, 30, 5)
    first = cluster_faces(rows[:300], photos[:300], threshold=0.5)
    scan, seeded, blocks = ScanState(), ClusterState(), ClusterState()
    for cid in np.unique(first):
        members = np.flatnonzero(first == cid)
        for i in members:
            scan.put(rows[i], photos[i], int(cid))
        seeded.seed(int(cid), rows[members], [photos[i] for i in members])
        blocks.seed(int(cid), rows[members], [photos[i] for i in members])
    expected = [scan_add(scan, rows[i], photos[i], 0.5) for i in range(300, 600)]
    assert [seeded.add(rows[i], photos[i], 0.5) for i in range(300, 600)] == expected
    assert blocks.add_many(rows[300:], photos[300:], 0.5).tolist() == expected


@pytest.mark.parametrize("seed", [1, 4])
def test_merge_close_equals_the_closest_pair_first_over_all_pairs(seed: int) -> None:
    rows, photos, _ = identities(300, 20, seed)
    state = ClusterState()
    # A strict threshold for placing splits people; the merge joins them back.
    placed = state.add_many(rows, photos, 0.4)
    expected = greedy_merge(rows, placed, photos, 0.5)
    moved = state.merge_close(0.5)
    assert moved and state.labels().tolist() == expected.tolist()
    # The merged state goes on placing faces exactly as the scan does.
    scan = ScanState()
    for r, p, c in zip(rows, photos, expected, strict=True):
        scan.put(r, p, int(c))
    scan.next = int(placed.max()) + 1
    extra, extra_photos, _ = identities(100, 25, seed + 10)
    want = [scan_add(scan, r, -p - 1, 0.5) for r, p in zip(extra, extra_photos, strict=True)]
    got = [state.add(r, -p - 1, 0.5) for r, p in zip(extra, extra_photos, strict=True)]
    assert got == want


def test_progress_is_reported_per_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster_module, "BLOCK", 64)
    rows, photos, quality = identities(150, 10, 9)
    seen: list[tuple[int, int]] = []
    cluster_faces(
        rows, photos, threshold=0.5, quality=quality, on_progress=lambda d, t: seen.append((d, t))
    )
    assert seen == [(64, 150), (128, 150), (150, 150)]


# -- identification -----------------------------------------------------------------------


def dense_identify(
    gallery: np.ndarray, labels: np.ndarray, rows: np.ndarray, limit: float
) -> list[Match]:
    """Identification by one dense (faces, known faces) distance array."""
    dist = np.linalg.norm(rows[:, None, :] - gallery[None, :, :], axis=2)
    people = np.unique(labels)
    out: list[Match] = []
    for d in dist:
        best = np.full(len(people), np.inf)
        np.minimum.at(best, np.searchsorted(people, labels), d)
        order = np.argsort(best, kind="stable")[: CANDIDATES + 1]
        ranked = [(int(people[i]), float(best[i])) for i in order]
        pid, dmin = ranked[0]
        out.append((pid if dmin <= limit else None, dmin, ranked))
    return out


def stored_faces(lk: lookalike.Lookalike, rows: np.ndarray) -> list[int]:
    """Record one photo per row, each with that one face; returns the face ids."""
    ids: list[int] = []
    for i, row in enumerate(rows):
        found = FaceRecord((0, 0, 100, 100), 1.0, 0.9, True, [], [(30.0, 40.0)], row, b"")
        scan = FaceScan(lk.people.version, [found])
        (image_id,) = lk.catalog.record(
            [NewImage(f"{i:064x}", f"/photos/{i}.jpg", 1, 1, 640, 480, "JPEG", {}, scan)]
        )
        ids += [f.id for f in lk.catalog.faces.faces_of_image(image_id)]
    return ids


def test_identify_in_blocks_equals_the_dense_distances(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows, _, _ = identities(160, 12, 6)
    who = np.unique(rows[:, 0], return_inverse=True)[1] % 9  # 9 people, known faces mixed
    with lookalike.open(tmp_path / "data") as lk:
        faces = stored_faces(lk, rows[:120])
        for p in range(9):
            lk.people.assign([f for f, w in zip(faces, who, strict=False) if w == p], f"P{p}")
        known = lk.people.gallery.known()
        queries = rows[100:]
        # A threshold that names half the faces.
        limit = float(
            np.median([m[1] for m in dense_identify(known.embeddings, known.labels, queries, 0)])
        )
        expected = dense_identify(known.embeddings, known.labels, queries, limit)
        assert lk.people.identify_vectors(queries, threshold=limit) == expected
        # Blocks of 2 faces against chunks of 13 known faces: people split across chunks.
        monkeypatch.setattr(embed_module, "PAIRS_PER_BLOCK", 26)
        monkeypatch.setattr("lookalike.people.recognise.PAIRS_PER_BLOCK", 26)
        assert lk.people.identify_vectors(queries, threshold=limit) == expected
        assert any(m[0] is not None for m in expected) and any(m[0] is None for m in expected)
