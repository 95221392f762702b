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

from .test_people import add_photo

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


# -- one process's clusters kept between runs --------------------------------------------


def expected_cluster(lk: lookalike.Lookalike, face_id: int) -> int | None:
    """The cluster the rule puts a stored unclustered face in, from the stored clusters
    read afresh (None: a new one)."""
    state = ClusterState()
    stored = lk.catalog.faces.clustered(lk.people.version)
    for cid in np.unique(stored.labels):
        members = stored.labels == cid
        state.seed(int(cid), stored.embeddings[members], stored.image_ids[members].tolist())
    _, blobs = lk.catalog.faces.vectors_for("face", lk.people.version, [face_id])
    row = blobs[0].view(np.float32)
    image = lk.catalog.faces.faces([face_id])[face_id].image_id
    cid, _ = state.nearest(row, image, lk.settings.face_cluster_threshold)
    return cid


def place_new(lk: lookalike.Lookalike, other: lookalike.Lookalike, name: str, person: int) -> int:
    """Add a photo of ``person`` and cluster it in ``lk``: it goes where the rule over the
    stored clusters (read afresh, by ``other``) says, whatever ``other`` did before.
    Returns the photo's id."""
    image = add_photo(lk, name, person)
    (new,) = lk.catalog.faces.faces_of_image(image)
    want = expected_cluster(other, new.id)
    before = {c.id for c in lk.people.clusters()}
    lk.people.cluster()
    got = lk.catalog.faces.faces([new.id])[new.id].cluster_id
    assert got == want if want is not None else got not in before
    return image


def cluster_of(lk: lookalike.Lookalike, image: int) -> int:
    found = lk.catalog.faces.faces_of_image(image)[0].cluster_id
    assert found is not None
    return found


def test_a_process_keeps_its_clusters_and_reads_them_again_after_others_edit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with lookalike.open(tmp_path / "d") as a, lookalike.open(tmp_path / "d") as b:
        reads: list[int] = []
        real = a.catalog.faces.clustered
        monkeypatch.setattr(a.catalog.faces, "clustered", lambda v: reads.append(1) or real(v))
        photos = {
            f"{p}{i}": add_photo(a, f"{p}{i}.jpg", n) for i in range(3) for n, p in enumerate("ab")
        }
        a.people.cluster()
        photos["a3"] = place_new(a, b, "a3.jpg", 0)
        photos["c0"] = place_new(a, b, "c0.jpg", 2)
        assert len(reads) == 1  # its own writes kept the copy current: read once
        # Another process merges the two people: a person-0 face is then far from the
        # mean of the merged cluster and starts its own (the stale copy would join it).
        zero, one = cluster_of(a, photos["a0"]), cluster_of(a, photos["b0"])
        assert zero != one
        b.people.merge_clusters([zero, one])
        place_new(a, b, "a4.jpg", 0)
        # ... moves a face out, names a cluster, re-clusters all.
        (c0,) = a.catalog.faces.faces_of_image(photos["c0"])
        b.people.move_faces([c0.id], None)
        place_new(a, b, "c1.jpg", 2)
        b.people.name_cluster(cluster_of(b, photos["c0"]), "Cee")
        place_new(a, b, "b3.jpg", 1)
        b.people.cluster(full=True)
        place_new(a, b, "b4.jpg", 1)
        place_new(a, b, "b5.jpg", 1)
        # ... deletes a clustered face (with its photo).
        reads.clear()
        b.catalog.remove_paths(["/photos/b3.jpg"])
        place_new(a, b, "b6.jpg", 1)
        assert len(reads) == 1
