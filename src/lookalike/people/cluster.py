"""Grouping unknown faces into people, incrementally, as a photo app does.

Average linkage: a face joins the cluster whose members are, on average, nearest to it, if
that mean distance is within ``threshold`` and the cluster holds no other face of the same
photo (two faces of one photo are two people); otherwise it starts a cluster of its own.
Adding faces never moves a face already placed, so clusters a user has looked at stay put.
(Centroids, the cheaper summary, fail here: the mean of many faces drifts towards an
"average face" close to everyone, and large clusters swallow strangers.)

No face is compared with every clustered face. The mean distance from a face to a cluster
is never below its distance to the cluster's centroid (the norm is convex), so the clusters
a face can join are those whose centroid is within ``threshold``, and the exact mean is
computed for those few only:

- one face (:meth:`ClusterState.add`): the clusters whose centroid is within ``threshold``,
  one matrix-vector product over the centroids (clusters, not faces);
- many faces (:meth:`ClusterState.add_many`): the same for a block of faces at once (one
  matrix product), then the block is placed face by face, the clusters it changed checked
  against their centroids of the moment.

Both give exactly the clusters of the full scan (``tests/test_cluster_scale.py`` checks
them against it). A full re-cluster (:func:`cluster_faces`) runs the same assignment over
every face, best quality first (clean faces make better seeds), then merges clusters whose
mean pairwise distance is within ``threshold`` and which share no photo, closest pair
first: assignment alone splits a person whose first faces were unusual.

The default threshold is set on LFW identities and the press photos (``bench/faces_cluster.py``).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Sequence

import numpy as np

from lookalike.errors import BadInput

__all__ = ["ClusterState", "cluster_faces", "pairwise_scores"]

# Faces compared with the centroids at once by ``add_many``: a (BLOCK, clusters) array.
BLOCK = 256
# Centroids compared at once by ``merge_close``: a (CENTROID_BLOCK, clusters) float64 array.
CENTROID_BLOCK = 256
# Widens every bound: the bounds are computed in float32 by expansion (|a|^2 + |b|^2 - 2ab),
# whose rounding must never drop a cluster that the exact mean would accept.
_SLACK = 1e-3

Progress = Callable[[int, int], None]


class ClusterState:
    """Clustered faces (embeddings, cluster ids, photos); ``add`` places one more.

    Cluster ids are the caller's (e.g. database ids): ``seed`` loads existing members, and
    new clusters get ids one above the largest seen.
    """

    def __init__(self, dim: int = 128) -> None:
        self.dim = dim
        self._rows = np.zeros((0, dim), dtype=np.float32)
        self._labels = np.zeros(0, dtype=np.int64)
        self._photos: dict[int, set[Hashable]] = {}
        # Each cluster's rows, ascending: the exact mean sums them in the full scan's order.
        self._members: dict[int, list[int]] = {}
        self._size = 0
        self._next = 1
        # The largest squared norm of a face: how much room the bounds leave for rounding.
        self._scale = 0.0
        self._centroids = _Centroids(dim)

    def __len__(self) -> int:
        return len(self._photos)

    def ids(self) -> list[int]:
        return sorted(self._photos)

    def labels(self) -> np.ndarray:
        """The cluster id of every face added or seeded so far, in that order."""
        return self._labels[: self._size].copy()

    def seed(self, cluster_id: int, embeddings: np.ndarray, photos: Sequence[Hashable]) -> None:
        """Load faces of an existing cluster: their embeddings and photos."""
        rows = np.asarray(embeddings, dtype=np.float32).reshape(-1, self.dim)
        if len(rows) == 0:
            return
        need = self._size + len(rows)
        self._reserve(need)
        self._rows[self._size : need] = rows
        self._labels[self._size : need] = cluster_id
        self._members.setdefault(cluster_id, []).extend(range(self._size, need))
        self._size = need
        self._photos.setdefault(cluster_id, set()).update(photos)
        self._centroids.add(cluster_id, rows)
        self._next = max(self._next, cluster_id + 1)
        self._scale = max(self._scale, _largest_norm(rows))

    def _reserve(self, need: int) -> None:
        """Room for ``need`` faces (capacity doubles)."""
        if need > len(self._rows):
            cap = max(need, 2 * len(self._rows), 64)
            grown = np.zeros((cap, self.dim), dtype=np.float32)
            grown[: self._size] = self._rows[: self._size]
            labels = np.zeros(cap, dtype=np.int64)
            labels[: self._size] = self._labels[: self._size]
            self._rows, self._labels = grown, labels

    def relabel(self, ids: dict[int, int]) -> None:
        """Rename clusters: ``{old id: new id}`` (the new ids not otherwise in use)."""
        moved = [(new, self._members.pop(old), self._photos.pop(old)) for old, new in ids.items()]
        slots = [self._centroids.slot.pop(old) for old in ids]
        for (new, members, photos), slot in zip(moved, slots, strict=True):
            self._labels[members] = new
            self._members[new], self._photos[new] = members, photos
            self._centroids.slot[new] = slot
            self._centroids.ids[slot] = new
            self._next = max(self._next, new + 1)

    def nearest(
        self, embedding: np.ndarray, photo: Hashable, threshold: float
    ) -> tuple[int | None, float]:
        """The cluster ``embedding`` would join (or None) and its mean distance to it."""
        row = np.asarray(embedding, dtype=np.float32).reshape(self.dim)
        radius = _widened(threshold, max(self._scale, _largest_norm(row[None, :])))
        return self._best(row, photo, threshold, self._centroids.within(row, radius))

    def add(self, embedding: np.ndarray, photo: Hashable, threshold: float) -> int:
        """Place one face: the id of the cluster it joined or started."""
        cid, _ = self.nearest(embedding, photo, threshold)
        return self._place(embedding, photo, cid)

    def add_many(
        self,
        embeddings: np.ndarray,
        photos: Sequence[Hashable],
        threshold: float,
        on_progress: Progress | None = None,
    ) -> np.ndarray:
        """Place faces in the order given, exactly as ``add`` one by one would; returns the
        cluster id of each (int64). ``on_progress(done, total)`` is called after each block.

        A block's distances to the centroids are one matrix product; the clusters changed
        within the block are checked against their centroids of the moment instead.
        """
        rows = np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1, self.dim)
        if len(rows) != len(photos):
            raise BadInput(f"need one photo per embedding row, got {rows.shape} and {len(photos)}")
        out = np.zeros(len(rows), dtype=np.int64)
        radius = _widened(threshold, max(self._scale, _largest_norm(rows)))
        for start in range(0, len(rows), BLOCK):
            block = rows[start : start + BLOCK]
            placed = self._place_block(block, photos[start : start + len(block)], threshold, radius)
            out[start : start + len(block)] = placed
            if on_progress is not None:
                on_progress(start + len(block), len(rows))
        return out

    def _place_block(
        self, block: np.ndarray, photos: Sequence[Hashable], threshold: float, radius: float
    ) -> list[int]:
        """Place the faces of ``block`` one by one; returns their cluster ids."""
        cents = self._centroids
        before = len(cents.slot)
        near = cents.near(block, radius, before)
        changed = _Changed(before, len(block), self.dim)
        placed: list[int] = []
        for i, row in enumerate(block):
            slots = np.concatenate(
                [np.flatnonzero(near[i] & changed.kept), changed.near(row, radius)]
            )
            cid, _ = self._best(row, photos[i], threshold, np.sort(cents.ids[slots]))
            cid = self._place(row, photos[i], cid)
            slot = cents.slot[cid]
            changed.update(slot, cents.means[slot], float(cents.norms[slot]))
            placed.append(cid)
        return placed

    def _place(self, embedding: np.ndarray, photo: Hashable, cid: int | None) -> int:
        """Add one face to cluster ``cid`` (None: a new one); returns its cluster id."""
        cid = self._next if cid is None else cid
        row = np.asarray(embedding, dtype=np.float32).reshape(self.dim)
        # ``seed`` for one face, without its array handling (this runs once per face).
        self._reserve(self._size + 1)
        self._rows[self._size] = row
        self._labels[self._size] = cid
        self._members.setdefault(cid, []).append(self._size)
        self._size += 1
        self._photos.setdefault(cid, set()).add(photo)
        self._centroids.add(cid, row[None, :])
        self._next = max(self._next, cid + 1)
        self._scale = max(self._scale, float(row @ row))
        return cid

    def _best(
        self, row: np.ndarray, photo: Hashable, threshold: float, candidates: np.ndarray
    ) -> tuple[int | None, float]:
        """Of the ``candidates`` (cluster ids, ascending), the one with the least mean
        distance to ``row`` within ``threshold`` that holds no face of ``photo`` (ties: the
        lower id), and that distance; (None, inf) if there is none."""
        if len(candidates) == 0:
            return None, float("inf")
        members = [self._members[int(c)] for c in candidates]
        sizes = np.array([len(m) for m in members])
        rows = np.concatenate([np.asarray(m, dtype=np.int64) for m in members])
        # The full scan's arithmetic, so ties and the threshold fall exactly as they did.
        dist = np.linalg.norm(self._rows[rows] - row, axis=1)
        which = np.repeat(np.arange(len(candidates)), sizes)
        mean = np.bincount(which, weights=dist, minlength=len(candidates)) / sizes
        for i in np.argsort(mean, kind="stable"):
            d = float(mean[i])
            if d > threshold:
                break
            cid = int(candidates[i])
            if photo not in self._photos[cid]:
                return cid, d
        return None, float("inf")

    def merge_close(self, threshold: float) -> dict[int, int]:
        """Merge clusters whose mean pairwise distance is within ``threshold`` and which
        share no photo, closest pair first. Returns ``{old: new}`` for every cluster merged
        away (the larger cluster keeps its id).

        Only pairs whose centroids are within ``threshold`` are looked at: the mean
        distance between two sets is never below the distance of their means (the norm is
        convex), so no pair is missed. Memory stays linear in the number of faces.
        """
        if len(self._photos) < 2:
            return {}
        merge = _Merge(self, threshold)
        merged = merge.run()
        if merged:
            ids, inverse = np.unique(self._labels[: self._size], return_inverse=True)
            final = np.array([merged.get(int(c), int(c)) for c in ids], dtype=np.int64)
            self._labels[: self._size] = final[inverse]
            self._photos = merge.photos
            self._members = {}
            for i, c in enumerate(self._labels[: self._size].tolist()):
                self._members.setdefault(c, []).append(i)
            self._centroids = _Centroids(self.dim)
            for c, m in self._members.items():
                self._centroids.add(c, self._rows[m])
        return merged


class _Centroids:
    """The clusters' centroids, for the bound of ``ClusterState.add``: running float64 sums,
    and a float32 copy scanned with one matrix-vector product."""

    def __init__(self, dim: int) -> None:
        self.slot: dict[int, int] = {}
        self.ids = np.zeros(0, dtype=np.int64)
        self.sums = np.zeros((0, dim), dtype=np.float64)
        self.counts = np.zeros(0, dtype=np.int64)
        self.means = np.zeros((0, dim), dtype=np.float32)
        self.norms = np.zeros(0, dtype=np.float32)

    def add(self, cluster_id: int, rows: np.ndarray) -> None:
        """Count ``rows`` into the cluster's centroid (a new slot for a new cluster)."""
        slot = self.slot.get(cluster_id)
        if slot is None:
            slot = self.slot[cluster_id] = len(self.slot)
            if slot == len(self.ids):
                self._grow(max(64, 2 * len(self.ids)))
            self.ids[slot] = cluster_id
        self.sums[slot] += rows.sum(axis=0, dtype=np.float64)
        self.counts[slot] += len(rows)
        mean = (self.sums[slot] / self.counts[slot]).astype(np.float32)
        self.means[slot] = mean
        self.norms[slot] = mean @ mean

    def _grow(self, cap: int) -> None:
        n = len(self.ids)
        self.ids = np.concatenate([self.ids, np.zeros(cap - n, dtype=np.int64)])
        self.sums = np.concatenate([self.sums, np.zeros((cap - n, self.sums.shape[1]))])
        self.counts = np.concatenate([self.counts, np.zeros(cap - n, dtype=np.int64)])
        self.means = np.concatenate(
            [self.means, np.zeros((cap - n, self.means.shape[1]), dtype=np.float32)]
        )
        self.norms = np.concatenate([self.norms, np.zeros(cap - n, dtype=np.float32)])

    def near(self, block: np.ndarray, radius: float, count: int) -> np.ndarray:
        """(len(block), count) bool: which of the first ``count`` centroids are within
        ``radius`` of each row of ``block`` (one matrix product)."""
        rr = (block * block).sum(axis=1)[:, None]
        sq = self.norms[None, :count] - 2.0 * (block @ self.means[:count].T) + rr
        out: np.ndarray = sq <= radius * radius
        return out

    def within(self, row: np.ndarray, radius: float) -> np.ndarray:
        """Ids (ascending) of the clusters whose centroid is within ``radius`` of ``row``."""
        n = len(self.slot)
        sq = self.norms[:n] - 2.0 * _matvec(self.means[:n], row) + row @ row
        return np.sort(self.ids[:n][sq <= radius * radius])


class _Changed:
    """The clusters changed (joined or started) while a block is placed, with their
    current centroids: the block's distances to them, computed at its start, are stale."""

    def __init__(self, before: int, size: int, dim: int) -> None:
        # Of the clusters there before the block, those unchanged so far.
        self.kept = np.ones(before, dtype=bool)
        self.before = before
        self.slots = np.zeros(size, dtype=np.int64)
        self.means = np.zeros((size, dim), dtype=np.float32)
        self.norms = np.zeros(size, dtype=np.float32)
        self.at: dict[int, int] = {}

    def update(self, slot: int, mean: np.ndarray, norm: float) -> None:
        """Cluster ``slot`` changed: record its centroid now."""
        if slot < self.before:
            self.kept[slot] = False
        i = self.at.setdefault(slot, len(self.at))
        self.slots[i], self.means[i], self.norms[i] = slot, mean, norm

    def near(self, row: np.ndarray, radius: float) -> np.ndarray:
        """Slots of the changed clusters whose centroid is within ``radius`` of ``row``."""
        n = len(self.at)
        sq = self.norms[:n] - 2.0 * _matvec(self.means[:n], row) + row @ row
        found: np.ndarray = self.slots[:n][sq <= radius * radius]
        return found


class _Merge:
    """The merge pass of ``ClusterState.merge_close`` over a snapshot of its clusters."""

    def __init__(self, state: ClusterState, threshold: float) -> None:
        self.threshold = threshold
        self.rows = state._rows[: state._size].astype(np.float64)
        labels = state._labels[: state._size]
        self.ids = [int(c) for c in np.unique(labels)]
        self.pos = {cid: i for i, cid in enumerate(self.ids)}
        self.members = {cid: np.asarray(state._members[cid]) for cid in self.ids}
        self.photos = {cid: set(state._photos[cid]) for cid in self.ids}
        self.centroids = np.stack([self.rows[self.members[c]].mean(axis=0) for c in self.ids])
        self.norms = (self.centroids**2).sum(axis=1)
        self.alive = np.ones(len(self.ids), dtype=bool)
        self.version = dict.fromkeys(self.ids, 0)
        self.heap: list[tuple[float, int, int, int, int]] = []
        self.radius = _widened(threshold, state._scale)

    def run(self) -> dict[int, int]:
        """Merge closest pairs first; returns ``{old: final}`` for each cluster merged away."""
        for start in range(0, len(self.ids), CENTROID_BLOCK):
            stop = min(start + CENTROID_BLOCK, len(self.ids))
            for off, near in enumerate(self._near(np.arange(start, stop))):
                self._push(self.ids[start + off], near[near > start + off])
        into: dict[int, int] = {}
        while self.heap:
            _, a, b, va, vb = heapq.heappop(self.heap)
            pa, pb = self.pos[a], self.pos[b]
            if not (self.alive[pa] and self.alive[pb]) or (va, vb) != (
                self.version[a],
                self.version[b],
            ):
                continue  # a cluster of this pair changed since: its new pairs are queued
            if self.photos[a] & self.photos[b]:
                continue
            keep, gone = (a, b) if len(self.members[a]) >= len(self.members[b]) else (b, a)
            into[gone] = keep
            self._join(keep, gone)
            c = self.centroids[self.pos[keep]]
            sq = self.norms - 2.0 * _matvec(self.centroids, c) + c @ c
            self._push(keep, np.flatnonzero((sq <= self.radius * self.radius) & self.alive))
        return {gone: _root(into, gone) for gone in into}

    def _join(self, keep: int, gone: int) -> None:
        self.members[keep] = np.concatenate([self.members[keep], self.members.pop(gone)])
        self.photos[keep] |= self.photos.pop(gone)
        self.alive[self.pos[gone]] = False
        self.version[keep] += 1
        centroid = self.rows[self.members[keep]].mean(axis=0)
        self.centroids[self.pos[keep]] = centroid
        self.norms[self.pos[keep]] = centroid @ centroid

    def _near(self, positions: np.ndarray) -> list[np.ndarray]:
        """For each cluster position: the positions whose centroid may be within reach."""
        block = self.centroids[positions]
        sq = self.norms[positions][:, None] + self.norms[None, :] - 2.0 * block @ self.centroids.T
        return [np.flatnonzero(row <= self.radius * self.radius) for row in sq]

    def _push(self, a: int, candidates: np.ndarray) -> None:
        for i in candidates:
            b = self.ids[int(i)]
            if b == a or self.photos[a] & self.photos[b]:
                continue
            d = self._mean_distance(a, b)
            if d <= self.threshold:
                lo, hi = min(a, b), max(a, b)
                # Versions in the pair's order: popped, they are checked as (lo, hi).
                heapq.heappush(self.heap, (d, lo, hi, self.version[lo], self.version[hi]))

    def _mean_distance(self, a: int, b: int) -> float:
        ra, rb = self.rows[self.members[a]], self.rows[self.members[b]]
        sq = (ra**2).sum(axis=1)[:, None] + (rb**2).sum(axis=1)[None, :] - 2.0 * ra @ rb.T
        return float(np.sqrt(np.maximum(sq, 0.0)).mean())


def _matvec(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """``matrix @ vector`` on this thread: BLAS's threads cost far more than they save on
    one vector, many times more when the machine is busy."""
    out: np.ndarray = np.einsum("ij,j->i", matrix, vector)
    return out


def _root(into: dict[int, int], cid: int) -> int:
    """Where cluster ``cid`` ended after a chain of merges."""
    while cid in into:
        cid = into[cid]
    return cid


def _widened(threshold: float, scale: float) -> float:
    """``threshold`` plus room for the rounding of distances computed by expansion among
    vectors whose squared norms are at most ``scale``."""
    return threshold + _SLACK * max(1.0, scale)


def _largest_norm(rows: np.ndarray) -> float:
    """The largest squared norm of ``rows`` (0 for none)."""
    return float((rows.astype(np.float64) ** 2).sum(axis=1).max(initial=0.0))


def cluster_faces(
    embeddings: np.ndarray,
    photos: Sequence[Hashable],
    *,
    threshold: float,
    quality: Sequence[float] | None = None,
    merge: bool = True,
    on_progress: Progress | None = None,
) -> np.ndarray:
    """Cluster labels (int64, 1..k) for every face, from scratch.

    ``photos``: the photo of each face (faces of one photo never share a cluster).
    ``quality``: faces are placed best first (default: in the order given).
    ``on_progress(done, total)``: called as blocks of faces are placed.
    """
    rows = np.asarray(embeddings, dtype=np.float32)
    if rows.ndim != 2 or len(rows) != len(photos):
        raise BadInput(f"need one photo per embedding row, got {rows.shape} and {len(photos)}")
    if len(rows) == 0:
        return np.zeros(0, dtype=np.int64)
    order = (
        np.argsort(-np.asarray(quality, dtype=np.float64), kind="stable")
        if quality is not None
        else np.arange(len(rows))
    )
    state = ClusterState(rows.shape[1])
    state.add_many(rows[order], [photos[i] for i in order], threshold, on_progress)
    if merge:
        state.merge_close(threshold)
    labels = np.zeros(len(rows), dtype=np.int64)
    labels[order] = state.labels()
    # Renumber 1..k in order of first appearance.
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    out: np.ndarray = (rank[inverse] + 1).astype(np.int64)
    return out


def pairwise_scores(truth: Sequence[Hashable], labels: Sequence[Hashable]) -> dict[str, float]:
    """Pairwise precision, recall and F1 of a clustering against true identities.

    A pair of faces is predicted positive when both are in one cluster, and is truly positive
    when both show one person. Singletons predict no pair; precision is 1.0 when no pair is
    predicted at all.
    """
    if len(truth) != len(labels):
        raise BadInput("truth and labels differ in length")
    t = np.unique(np.asarray([str(x) for x in truth]), return_inverse=True)[1]
    p = np.unique(np.asarray([str(x) for x in labels]), return_inverse=True)[1]
    # Pair counts from the contingency table: sum of C(n, 2) over cells, rows, columns.
    table = np.zeros((t.max(initial=-1) + 1, p.max(initial=-1) + 1), dtype=np.int64)
    np.add.at(table, (t, p), 1)

    def pairs(x: np.ndarray) -> int:
        return int((x * (x - 1) // 2).sum())

    both = pairs(table)
    predicted = pairs(table.sum(axis=0))
    actual = pairs(table.sum(axis=1))
    precision = both / predicted if predicted else 1.0
    recall = both / actual if actual else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "pairs": float(actual)}
