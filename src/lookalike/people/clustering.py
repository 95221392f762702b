"""The clusters of unknown faces in a data folder: grouping new faces, and the user's edits.

New usable faces are first recognised against the known people; the rest are placed by
:class:`~lookalike.people.cluster.ClusterState` (the algorithm) among the stored clusters.
Users merge clusters, move faces, and name a cluster to make it a person.

The stored clusters are read into a ClusterState once per process and kept: a run (an
upload, a small index run) places only its new faces. The copy is read again when the
store's ``clusters`` generation moved other than by this process's last write (another
process placed, merged, moved or named faces, or re-clustered) or when the count of
clustered faces differs from the copy's (clustered faces were deleted with their image).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from lookalike.errors import BadInput, Conflict, NotFound
from lookalike.people.cluster import ClusterState, Progress
from lookalike.people.gallery import Gallery, clean_name
from lookalike.people.recognise import Recogniser
from lookalike.settings import Settings
from lookalike.store.base import (
    CLUSTERS_GENERATION,
    ClusterRow,
    FaceRow,
    FaceStore,
    FaceVectors,
    PersonRow,
)

__all__ = ["ClusterReport", "Clustering"]


@dataclass
class ClusterReport:
    """What one clustering run did."""

    # Unknown faces looked at = recognised + joined + started.
    faces: int = 0
    recognised: int = 0  # matched to a known person
    joined: int = 0  # joined a cluster (an existing one, or one started in this run)
    started: int = 0  # started a new cluster
    merged: int = 0  # clusters merged away (full re-cluster)
    clusters: int = 0  # clusters now
    people: dict[str, int] = field(default_factory=dict)  # recognised per person


class Clustering:
    """Groups the unknown faces of one data folder and applies the user's cluster edits."""

    def __init__(
        self,
        settings: Settings,
        store: FaceStore,
        gallery: Gallery,
        recogniser: Recogniser,
        version: str,
    ) -> None:
        self.settings = settings
        self.store = store
        self.gallery = gallery
        self.recogniser = recogniser
        self.version = version
        # One clustering run at a time in this process, over its copy of the stored
        # clusters: (``clusters`` generation, state), kept between runs (see ``_state``).
        self._lock = threading.Lock()
        self._cached: tuple[int, ClusterState] | None = None

    def cluster(
        self,
        *,
        full: bool = False,
        threshold: float | None = None,
        on_progress: Progress | None = None,
    ) -> ClusterReport:
        """Recognise and group the unknown faces; only new faces move unless ``full``.

        New usable faces are first matched against the known people (``face_threshold``);
        the rest join the nearest cluster (mean distance within ``face_cluster_threshold``,
        never two faces of one photo) or start one. ``full`` first forgets every cluster and
        every recognised (unconfirmed) name, then places all faces again and merges close
        clusters: manual cluster edits are lost, names given by the user are kept.
        ``on_progress(done, total)``: faces placed so far. Returns what the run did.
        """
        limit = self.settings.face_cluster_threshold if threshold is None else threshold
        with self._lock:
            if full:
                self._cached = None
                self.store.reset_clusters()
            report = ClusterReport()
            todo = self.store.unprocessed(self.version)
            report.faces = len(todo.ids)
            keep = np.ones(len(todo.ids), dtype=bool)
            if len(todo.ids):
                keep, report.people = self.recogniser.recognise(todo)
                report.recognised = sum(report.people.values())
            if keep.any() or full:
                self._group(todo, keep, limit, full, report, on_progress)
            report.clusters = len(self.store.clusters())
            return report

    def _group(
        self,
        todo: FaceVectors,
        keep: np.ndarray,
        limit: float,
        full: bool,
        report: ClusterReport,
        on_progress: Progress | None,
    ) -> None:
        """Place the kept faces of ``todo`` among the clusters and store where they went."""
        generation, state = self._state(todo.embeddings.shape[1] if todo.embeddings.size else 128)
        before = set(state.ids())
        order = [int(i) for i in np.argsort(-todo.quality, kind="stable") if keep[i]]
        placed = state.add_many(
            todo.embeddings[order], [int(todo.image_ids[i]) for i in order], limit, on_progress
        )
        labels = [int(c) for c in placed]
        seen = set(before)
        for c in labels:
            report.joined += c in seen
            report.started += c not in seen
            seen.add(c)
        if full:
            moved = state.merge_close(limit)
            report.merged = len(moved)
            labels = [moved.get(c, c) for c in labels]
        # Clusters started here get negative ids: the store numbers them in its transaction,
        # so two processes clustering at once cannot pick the same new id.
        fresh = {c: -(i + 1) for i, c in enumerate(sorted(set(labels) - before))}
        face_ids = [int(todo.ids[i]) for i in order]
        if not face_ids:
            return
        stored = self.store.assign_clusters(face_ids, [fresh.get(c, c) for c in labels])
        state.relabel({c: stored[f] for c, f in fresh.items()})
        # Only this write changed the clusters since the state was read: keep it for the
        # next run (full: merged clusters renumber faces already placed; read it again).
        if not full and self.store.generation(CLUSTERS_GENERATION) == generation + 1:
            self._cached = (generation + 1, state)

    def _state(self, dim: int) -> tuple[int, ClusterState]:
        """The stored clusters as a ClusterState, and the ``clusters`` generation it is of:
        this process's copy while no other has changed a cluster or deleted a clustered
        face, else read again."""
        generation = self.store.generation(CLUSTERS_GENERATION)
        # Taken out while in use: a run that fails half-way leaves no half-placed copy.
        cached, self._cached = self._cached, None
        if cached is not None and cached[0] == generation:
            clustered = self.store.count_faces(self.version)["clustered"]
            if clustered == len(cached[1].labels()):
                return cached
        state = ClusterState(dim)
        clustered_faces = self.store.clustered(self.version)
        for cid in np.unique(clustered_faces.labels):
            members = clustered_faces.labels == cid
            state.seed(
                int(cid),
                clustered_faces.embeddings[members],
                clustered_faces.image_ids[members].tolist(),
            )
        return generation, state

    def clusters(self, *, min_size: int = 1) -> list[ClusterRow]:
        """The clusters with at least ``min_size`` faces, largest first."""
        return [c for c in self.store.clusters() if c.size >= min_size]

    def cluster_faces(self, cluster_id: int) -> list[FaceRow]:
        """A cluster's faces, best quality first; NotFound if it does not exist."""
        found = self.store.faces_of_cluster(cluster_id)
        if not found:
            raise NotFound(f"cluster {cluster_id} not found")
        return found

    def merge_clusters(self, ids: Sequence[int]) -> int:
        """Merge clusters into the first; returns how many faces moved."""
        if len(ids) < 2:
            raise BadInput("give at least two clusters to merge")
        return self.store.merge_clusters(ids[0], ids[1:])

    def move_faces(self, face_ids: Sequence[int], cluster_id: int | None) -> int:
        """Move faces to a cluster (None: a new one of their own); returns the cluster id.

        A face that had a person loses it (the user says it belongs elsewhere).
        """
        if not face_ids:
            raise BadInput("give at least one face to move")
        found = self.store.faces(face_ids)
        missing = [f for f in face_ids if f not in found]
        if missing:
            raise NotFound(f"face {missing[0]} not found")
        if cluster_id is not None and not any(c.id == cluster_id for c in self.store.clusters()):
            raise NotFound(f"cluster {cluster_id} not found")
        target = -1 if cluster_id is None else cluster_id
        self.store.set_person(face_ids, None, confirmed=False)
        return self.store.assign_clusters(face_ids, [target] * len(face_ids))[target]

    def name_cluster(self, cluster_id: int, name: str, *, merge: bool = False) -> PersonRow:
        """Make a cluster a person: its faces are confirmed and join the gallery.

        An existing name (in any case) is refused (Conflict) unless ``merge``: naming must
        not silently add faces to someone. Returns the person.
        """
        name = clean_name(name)
        faces = self.cluster_faces(cluster_id)
        person = self.store.person(name)
        if person is not None and not merge:
            raise Conflict(
                f"a person named {person.name!r} exists already: to add cluster "
                f"{cluster_id}'s faces to them, name it again with merge (--merge)"
            )
        # Created here unless it exists (or another process created it meanwhile): the
        # store refuses a second person of the same name, so without merge that is a
        # Conflict too.
        person = self.store.add_person(name, exist_ok=merge)
        self.store.set_person([f.id for f in faces], person.id, confirmed=True)
        return self.gallery.person(person.name)
