"""Who a face is: the nearest person of the gallery within ``face_threshold``, or unknown.

A face is compared with every known face (:meth:`Gallery.known`); a person's distance is
that of their nearest known face. Faces and the gallery are compared in blocks, so memory
stays bounded however many faces are identified at once (a full re-cluster: all of them).
A person appears once in a photo: of several faces of one photo that match one person, the
closest keeps the name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lookalike.faces import Face, pairwise_distances
from lookalike.faces.api import embed
from lookalike.faces.embed import PAIRS_PER_BLOCK
from lookalike.faces.read import Source
from lookalike.people.gallery import Gallery
from lookalike.settings import Settings
from lookalike.store.base import FaceStore, FaceVectors

__all__ = ["CANDIDATES", "Candidate", "Identified", "Match", "Recogniser"]

# Candidates (distinct people) reported after the best match.
CANDIDATES = 3

# (person id or None, best distance or None, [(person id, distance)] nearest first).
Match = tuple[int | None, float | None, list[tuple[int, float]]]


@dataclass
class Candidate:
    person: str
    person_id: int
    distance: float


@dataclass
class Identified:
    """One face of a query image and who it is (``person`` None: unknown)."""

    index: int
    face: Face
    person: str | None
    distance: float | None
    candidates: list[Candidate]


class Recogniser:
    """Recognises faces against the gallery of one data folder."""

    def __init__(self, settings: Settings, store: FaceStore, gallery: Gallery) -> None:
        self.settings = settings
        self.store = store
        self.gallery = gallery

    def identify_vectors(
        self, embeddings: np.ndarray, *, threshold: float | None = None
    ) -> list[Match]:
        """For each embedding: (person id or None, best distance, [(person id, distance)]
        for the nearest distinct people, best first)."""
        limit = self.settings.face_threshold if threshold is None else threshold
        known = self.gallery.known()
        rows = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if len(known.ids) == 0 or len(rows) == 0:
            return [(None, None, []) for _ in range(len(rows))]
        order = np.argsort(known.labels, kind="stable")
        gallery, labels = known.embeddings[order], known.labels[order]
        people = np.unique(labels)
        person = np.searchsorted(people, labels)
        chunk = min(len(gallery), PAIRS_PER_BLOCK)
        step = max(1, PAIRS_PER_BLOCK // chunk)
        out: list[Match] = []
        for start in range(0, len(rows), step):
            for best in _nearest_per_person(rows[start : start + step], gallery, person, chunk):
                nearest = np.argsort(best, kind="stable")[: CANDIDATES + 1]
                ranked = [(int(people[i]), float(best[i])) for i in nearest]
                pid, dmin = ranked[0]
                out.append((pid if dmin <= limit else None, dmin, ranked))
        return out

    def identify(
        self, query: Source, *, threshold: float | None = None, crop: bool = False
    ) -> list[Identified]:
        """Every face of ``query`` with the person it shows, or unknown."""
        faces = embed(query, self.settings, crop=crop)
        return self.name_faces(faces, self.match_faces(faces, threshold=threshold))

    def match_faces(self, faces: Sequence[Face], *, threshold: float | None = None) -> list[Match]:
        """:meth:`identify_vectors` of embedded faces (one Match per face)."""
        vectors = [f.embedding for f in faces if f.embedding is not None]
        return self.identify_vectors(np.array(vectors), threshold=threshold) if faces else []

    def name_faces(self, faces: Sequence[Face], answers: Sequence[Match]) -> list[Identified]:
        """Each face with the person of its Match, by the people's names now."""
        # When several faces match one person, the closest keeps the name and the others
        # are unknown (with that person a candidate).
        closest: dict[int, tuple[float, int]] = {}
        for i, (pid, dist, _) in enumerate(answers):
            if pid is not None and dist is not None and dist < closest.get(pid, (np.inf, -1))[0]:
                closest[pid] = (dist, i)
        names = self._names()
        out: list[Identified] = []
        for i, (face, (pid, dist, ranked)) in enumerate(zip(faces, answers, strict=True)):
            if pid is not None and closest[pid][1] != i:
                pid = None
            candidates = [Candidate(names[p], p, d) for p, d in ranked if p != pid and p in names]
            person = names.get(pid) if pid is not None else None
            out.append(Identified(i, face, person, dist, candidates[:CANDIDATES]))
        return out

    def recognise(self, todo: FaceVectors) -> tuple[np.ndarray, dict[str, int]]:
        """Name the faces of ``todo`` that match a known person (stored as recognised, not
        confirmed). Returns the mask of the faces left unknown and how many faces each
        person got."""
        answers = self.identify_vectors(todo.embeddings)
        keep = np.ones(len(todo.ids), dtype=bool)
        # Of several matches in a photo keep the closest, and none when the photo already
        # has a face named as that person.
        photos = {int(i) for i in todo.image_ids}
        named = self.store.people_in_images(sorted(photos)) if photos else set()
        best: dict[tuple[int, int], tuple[float, int]] = {}
        for i, (pid, dist, _) in enumerate(answers):
            if pid is None or dist is None:
                continue
            key = (int(todo.image_ids[i]), pid)
            if key in named:
                continue
            if key not in best or dist < best[key][0]:
                best[key] = (dist, i)
        by_person: dict[int, list[int]] = {}
        for (_, pid), (_, i) in best.items():
            by_person.setdefault(pid, []).append(int(todo.ids[i]))
            keep[i] = False
        names = self._names()
        counts: dict[str, int] = {}
        for pid, ids in by_person.items():
            self.store.set_person(ids, pid, confirmed=False)
            counts[names.get(pid, str(pid))] = len(ids)
        return keep, counts

    def _names(self) -> dict[int, str]:
        return {p.id: p.name for p in self.store.people()}


def _nearest_per_person(
    rows: np.ndarray, gallery: np.ndarray, person: np.ndarray, chunk: int
) -> np.ndarray:
    """(len(rows), people) float64: each row's distance to each person's nearest known
    face. ``gallery`` is sorted by ``person`` (its people's positions, 0..people-1);
    compared ``chunk`` known faces at a time."""
    best = np.full((len(rows), int(person[-1]) + 1), np.inf)
    for start in range(0, len(gallery), chunk):
        dist = pairwise_distances(rows, gallery[start : start + chunk])
        runs_of = person[start : start + chunk]
        runs = np.flatnonzero(np.r_[True, runs_of[1:] != runs_of[:-1]])
        cols = runs_of[runs]
        best[:, cols] = np.minimum(best[:, cols], np.minimum.reduceat(dist, runs, axis=1))
    return best
