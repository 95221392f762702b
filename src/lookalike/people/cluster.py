"""Grouping unknown faces into people, incrementally, as a photo app does.

Average linkage: a face joins the cluster whose members are, on average, nearest to it, if
that mean distance is within ``threshold`` and the cluster holds no other face of the same
photo (two faces of one photo are two people); otherwise it starts a cluster of its own.
Adding faces never moves a face already placed, so clusters a user has looked at stay put.
(Centroids, the cheaper summary, fail here: the mean of many faces drifts towards an
"average face" close to everyone, and large clusters swallow strangers.)

A full re-cluster (:func:`cluster_faces`) runs the same assignment over every face, best
quality first (clean faces make better seeds), then merges clusters whose mean pairwise
distance is within ``threshold`` and which share no photo, closest pair first: assignment
alone splits a person whose first faces were unusual.

The default threshold is set on LFW identities and the press photos (``bench/faces_cluster.py``).
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Sequence

import numpy as np

from lookalike.errors import BadInput

__all__ = ["ClusterState", "cluster_faces", "pairwise_scores"]


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
        self._size = 0
        self._next = 1

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
        if need > len(self._rows):
            cap = max(need, 2 * len(self._rows), 64)
            grown = np.zeros((cap, self.dim), dtype=np.float32)
            grown[: self._size] = self._rows[: self._size]
            labels = np.zeros(cap, dtype=np.int64)
            labels[: self._size] = self._labels[: self._size]
            self._rows, self._labels = grown, labels
        self._rows[self._size : need] = rows
        self._labels[self._size : need] = cluster_id
        self._size = need
        self._photos.setdefault(cluster_id, set()).update(photos)
        self._next = max(self._next, cluster_id + 1)

    def nearest(
        self, embedding: np.ndarray, photo: Hashable, threshold: float
    ) -> tuple[int | None, float]:
        """The cluster ``embedding`` would join (or None) and its mean distance to it."""
        if self._size == 0:
            return None, float("inf")
        rows, labels = self._rows[: self._size], self._labels[: self._size]
        dist = np.linalg.norm(rows - np.asarray(embedding, dtype=np.float32), axis=1)
        ids, inverse = np.unique(labels, return_inverse=True)
        mean = np.bincount(inverse, weights=dist) / np.bincount(inverse)
        for i in np.argsort(mean, kind="stable"):
            d = float(mean[i])
            if d > threshold:
                break
            cid = int(ids[i])
            if photo not in self._photos[cid]:
                return cid, d
        return None, float("inf")

    def add(self, embedding: np.ndarray, photo: Hashable, threshold: float) -> int:
        """Place one face: the id of the cluster it joined or started."""
        cid, _ = self.nearest(embedding, photo, threshold)
        if cid is None:
            cid = self._next
        self.seed(cid, np.asarray(embedding)[None, :], [photo])
        return cid

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
        rows = self._rows[: self._size].astype(np.float64)
        labels = self._labels[: self._size]
        ids = [int(c) for c in np.unique(labels)]
        pos = {cid: i for i, cid in enumerate(ids)}
        members = {cid: np.flatnonzero(labels == cid) for cid in ids}
        photos = {cid: set(self._photos[cid]) for cid in ids}
        centroids = np.stack([rows[members[c]].mean(axis=0) for c in ids])
        alive = np.ones(len(ids), dtype=bool)
        version = dict.fromkeys(ids, 0)

        def mean_distance(a: int, b: int) -> float:
            ra, rb = rows[members[a]], rows[members[b]]
            sq = (ra**2).sum(axis=1)[:, None] + (rb**2).sum(axis=1)[None, :] - 2.0 * ra @ rb.T
            return float(np.sqrt(np.maximum(sq, 0.0)).mean())

        heap: list[tuple[float, int, int, int, int]] = []

        def push_pairs(a: int, candidates: np.ndarray) -> None:
            for i in candidates:
                b = ids[int(i)]
                if b == a or photos[a] & photos[b]:
                    continue
                d = mean_distance(a, b)
                if d <= threshold:
                    heapq.heappush(heap, (d, min(a, b), max(a, b), version[a], version[b]))

        for start in range(0, len(ids), 512):
            block = centroids[start : start + 512]
            dist = np.linalg.norm(block[:, None, :] - centroids[None, :, :], axis=2)
            for off, row in enumerate(dist):
                a_pos = start + off
                near = np.flatnonzero(row <= threshold)
                push_pairs(ids[a_pos], near[near > a_pos])

        merged: dict[int, int] = {}
        while heap:
            _, a, b, va, vb = heapq.heappop(heap)
            if not (alive[pos[a]] and alive[pos[b]]) or (va, vb) != (version[a], version[b]):
                continue  # a cluster of this pair changed since: its new pairs are queued
            if photos[a] & photos[b]:
                continue
            keep, gone = (a, b) if len(members[a]) >= len(members[b]) else (b, a)
            members[keep] = np.concatenate([members[keep], members.pop(gone)])
            photos[keep] |= photos.pop(gone)
            alive[pos[gone]] = False
            version[keep] += 1
            centroids[pos[keep]] = rows[members[keep]].mean(axis=0)
            merged = {old: (keep if new == gone else new) for old, new in merged.items()}
            merged[gone] = keep
            near = np.linalg.norm(centroids - centroids[pos[keep]], axis=1) <= threshold
            push_pairs(keep, np.flatnonzero(near & alive))
        if merged:
            self._labels[: self._size] = [merged.get(int(c), int(c)) for c in labels]
            self._photos = photos
        return merged


def cluster_faces(
    embeddings: np.ndarray,
    photos: Sequence[Hashable],
    *,
    threshold: float,
    quality: Sequence[float] | None = None,
    merge: bool = True,
) -> np.ndarray:
    """Cluster labels (int64, 1..k) for every face, from scratch.

    ``photos``: the photo of each face (faces of one photo never share a cluster).
    ``quality``: faces are placed best first (default: in the order given).
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
    for i in order:
        state.add(rows[i], photos[i], threshold)
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
