"""People and their faces over the catalog: enrol, identify, cluster, name, search.

The face pipeline (``lookalike.faces``) finds and embeds faces; this module stores them with
their images (``scan``), keeps the gallery of known faces (enrolment examples and faces a
user confirmed), recognises faces against it, groups the unknown ones into clusters
(``lookalike.people.cluster``) and searches every stored face (a faiss index kept by the
same :class:`~lookalike.index.manager.IndexManager` as the image descriptors).
"""

from __future__ import annotations

import dataclasses
import io
import os
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from lookalike.decode import Decoded, read_file, sha256_hex
from lookalike.errors import BadInput, Conflict, NotFound
from lookalike.faces import (
    Face,
    StageTimes,
    embed_faces,
    face_distance,
    main_face,
    pairwise_distances,
)
from lookalike.faces.config import Detector, LandmarkCount
from lookalike.faces.read import (
    NamedBytes,
    Source,
    decode_for_faces,
    find_faces,
    read_faces,
    source_label,
)
from lookalike.index.manager import IndexManager
from lookalike.people.cluster import ClusterState
from lookalike.settings import Settings
from lookalike.store.base import (
    ClusterRow,
    ExampleRow,
    FaceRecord,
    FaceRow,
    FaceScan,
    FaceStore,
    FaceVectors,
    NewExample,
    PersonRow,
)

Query = Source

__all__ = [
    "Candidate",
    "ClusterReport",
    "FaceHit",
    "FaceSearch",
    "FaceService",
    "Identified",
    "Query",
    "Verification",
    "face_version",
]

# Candidates (distinct people) reported after the best match.
CANDIDATES = 3
THUMB_QUALITY = 85


def face_version(detector: Detector) -> str:
    """The version of stored faces: embeddings of one version are never mixed with another."""
    return f"dlib-resnet128/{detector}/chip150/v1"


@dataclass(frozen=True)
class _FaceSpec:
    """The face embeddings, as an index spec for IndexManager."""

    version: str
    name: str = "face"
    dim: int = 128
    kind: Literal["float", "binary"] = "float"


@dataclass
class Candidate:
    person: str
    person_id: int
    distance: float

    def to_json(self) -> dict[str, Any]:
        return {"person": self.person, "distance": round(self.distance, 6)}


@dataclass
class Identified:
    """One face of a query image and who it is (``person`` None: unknown)."""

    index: int
    face: Face
    person: str | None
    distance: float | None
    candidates: list[Candidate]

    def to_json(self) -> dict[str, Any]:
        return {
            "face": self.index,
            "box": list(self.face.box),
            "quality": round(self.face.quality, 4),
            "usable": self.face.usable,
            "person": self.person,
            "distance": None if self.distance is None else round(self.distance, 6),
            "candidates": [c.to_json() for c in self.candidates],
        }


@dataclass
class Verification:
    """1:1: whether the main faces of two images are one person."""

    distance: float
    same: bool
    threshold: float
    face_a: Face
    face_b: Face

    def to_json(self) -> dict[str, Any]:
        return {"distance": round(self.distance, 6), "same": self.same, "threshold": self.threshold}


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

    def to_json(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "face_id": self.face_id,
            "path": self.path,
            "box": list(self.box),
            "distance": round(self.distance, 6),
            "person": self.person,
            "cluster": self.cluster_id,
        }


@dataclass
class FaceSearch:
    query: str
    face: Face
    results: list[FaceHit]

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "box": list(self.face.box),
            "results": [h.to_json() for h in self.results],
        }


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

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _jpeg(chip: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(chip).save(buf, "JPEG", quality=THUMB_QUALITY)
    return buf.getvalue()


class FaceService:
    """Faces and people of one data folder (``Lookalike.people``)."""

    def __init__(self, settings: Settings, store: FaceStore, index_dir: Path) -> None:
        self.settings = settings
        self.store = store
        self.version = face_version(settings.face_detector)
        self.spec = _FaceSpec(self.version)
        self.index = IndexManager(
            store,
            index_dir,
            ann_threshold=settings.ann_threshold,
            nprobe=settings.ann_nprobe,
            metric="l2",
        )
        self._gallery: tuple[int, FaceVectors] | None = None
        self._lock = threading.Lock()

    # -- analysis -------------------------------------------------------------------------

    def decode(self, query: Query) -> Decoded:
        """A query image decoded for face work (JPEGs reduced to ``face_decode_side``)."""
        return decode_for_faces(query, self.settings)

    def analyze(
        self,
        decoded: Decoded,
        *,
        detector: Detector | None = None,
        landmarks: LandmarkCount = 5,
        crop: bool = False,
        timings: StageTimes | None = None,
    ) -> list[Face]:
        """The faces of a decoded image, in the original image's pixels, embedded."""
        return find_faces(
            decoded,
            self.settings,
            detector=detector,
            landmarks=landmarks,
            crop=crop,
            timings=timings,
        )

    def faces_of(self, query: Query, *, crop: bool = False) -> list[Face]:
        """Decode and analyse one query image."""
        return read_faces(query, self.settings, crop=crop)

    def detect(self, decoded: Decoded) -> list[Face]:
        """The faces of a decoded image with their chips, not yet embedded (thread-safe:
        indexing runs this in its decoder threads, see :meth:`scans`)."""
        return find_faces(decoded, self.settings, embeddings=False)

    def scans(self, found: Sequence[Sequence[Face]]) -> list[FaceScan]:
        """Embed the faces of several images in one batch: what is stored with each."""
        pending = [f for faces in found for f in faces if f.embedding is None]
        if pending:
            embed_faces(pending)
        return [FaceScan(self.version, [_record(f) for f in faces]) for faces in found]

    def scan(self, decoded: Decoded) -> FaceScan:
        """The faces of one image as they are stored with it."""
        return self.scans([self.detect(decoded)])[0]

    def verify(
        self, a: Query, b: Query, *, threshold: float | None = None, crop: bool = False
    ) -> Verification:
        """Compare the main faces (largest usable) of two images; BadInput if one has none."""
        thr = self.settings.face_threshold if threshold is None else threshold
        fa = _pick_face(self.faces_of(a, crop=crop), None, source_label(a), main=True)
        fb = _pick_face(self.faces_of(b, crop=crop), None, source_label(b), main=True)
        assert fa.embedding is not None and fb.embedding is not None
        distance = float(face_distance(fa.embedding, fb.embedding))
        return Verification(distance, distance <= thr, thr, fa, fb)

    # -- people ---------------------------------------------------------------------------

    def person(self, name: str) -> PersonRow:
        found = self.store.person(name)
        if found is None:
            raise NotFound(f"no person named {name!r}")
        return found

    def people(self) -> list[PersonRow]:
        return self.store.people()

    def enrol(
        self,
        name: str,
        images: Sequence[Query],
        *,
        face: int | None = None,
        crop: bool = False,
    ) -> tuple[PersonRow, list[int]]:
        """Add example faces of ``name`` (created if new); returns it and the example ids.

        Every image must hold exactly one usable face, or ``face`` picks one (its position
        as ``faces detect`` lists them, from 0). Nothing is stored unless all images pass.
        """
        name = _clean_name(name)
        if not images:
            raise BadInput("give at least one image of the person")
        examples: list[NewExample] = []
        for query in images:
            decoded = self.decode(query)
            found = self.analyze(decoded, crop=crop)
            chosen = _pick_face(found, face, source_label(query))
            data = query if isinstance(query, bytes) else None
            if isinstance(query, NamedBytes):
                data = query.data
            if isinstance(query, str | Path):
                data = read_file(Path(query))
            sha = sha256_hex(data) if data is not None else _pixels_hash(decoded.image)
            source = source_label(query)
            if isinstance(query, str | Path):
                source = os.path.abspath(os.fspath(query))
            examples.append(
                NewExample(sha, found.index(chosen), source, self.version, _record(chosen))
            )
        person = self.store.person(name) or self.store.add_person(name)
        ids = self.store.add_examples(person.id, examples)
        return self.person(person.name), ids

    def rename(self, name: str, new_name: str) -> PersonRow:
        person = self.person(name)
        new_name = _clean_name(new_name)
        other = self.store.person(new_name)
        if other is not None and other.id != person.id:
            raise Conflict(
                f"a person named {other.name!r} exists already: use `people merge` to make them one"
            )
        self.store.rename_person(person.id, new_name)
        return self.person(new_name)

    def merge(self, names: Sequence[str], into: str) -> PersonRow:
        """Make the people ``names`` one with ``into`` (their faces and examples move)."""
        target = self.person(into)
        others = [self.person(n).id for n in names]
        self.store.merge_people(target.id, [p for p in others if p != target.id])
        return self.person(target.name)

    def remove(self, name: str) -> None:
        """Forget a person: examples deleted, their faces become unknown again."""
        self.store.remove_person(self.person(name).id)

    def remove_example(self, name: str, example_id: int) -> None:
        person = self.person(name)
        if not self.store.remove_example(person.id, example_id):
            raise NotFound(f"{person.name} has no example {example_id}")

    def examples(self, name: str) -> list[ExampleRow]:
        return self.store.examples(self.person(name).id)

    def faces_of_person(self, name: str) -> list[FaceRow]:
        return self.store.faces_of_person(self.person(name).id)

    def assign(self, face_ids: Sequence[int], name: str) -> PersonRow:
        """Confirm indexed faces as ``name`` (created if new): they join its gallery."""
        name = _clean_name(name)
        person = self.store.person(name) or self.store.add_person(name)
        self.store.set_person(face_ids, person.id, confirmed=True)
        return self.person(person.name)

    # -- identification -------------------------------------------------------------------

    def gallery(self) -> FaceVectors:
        """Known faces (examples and confirmed faces), cached until they change."""
        generation = self.store.generation("gallery")
        with self._lock:
            if self._gallery is None or self._gallery[0] != generation:
                self._gallery = (generation, self.store.gallery(self.version))
            return self._gallery[1]

    def identify_vectors(
        self, embeddings: np.ndarray, *, threshold: float | None = None
    ) -> list[tuple[int | None, float | None, list[tuple[int, float]]]]:
        """For each embedding: (person id or None, best distance, [(person id, distance)]
        for the nearest distinct people, best first)."""
        thr = self.settings.face_threshold if threshold is None else threshold
        gallery = self.gallery()
        rows = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if len(gallery.ids) == 0 or len(rows) == 0:
            return [(None, None, []) for _ in range(len(rows))]
        dist = pairwise_distances(rows, gallery.embeddings)
        people = np.unique(gallery.labels)
        out: list[tuple[int | None, float | None, list[tuple[int, float]]]] = []
        for d in dist:
            best = np.full(len(people), np.inf)
            np.minimum.at(best, np.searchsorted(people, gallery.labels), d)
            order = np.argsort(best, kind="stable")[: CANDIDATES + 1]
            ranked = [(int(people[i]), float(best[i])) for i in order]
            pid, dmin = ranked[0]
            out.append((pid if dmin <= thr else None, dmin, ranked))
        return out

    def identify(
        self, query: Query, *, threshold: float | None = None, crop: bool = False
    ) -> list[Identified]:
        """Every face of ``query`` with the person it shows, or unknown."""
        faces = self.faces_of(query, crop=crop)
        vectors = [f.embedding for f in faces if f.embedding is not None]
        answers = self.identify_vectors(np.array(vectors), threshold=threshold) if faces else []
        # A person appears once in a photo: when several faces match one person, the
        # closest keeps the name and the others are unknown (with that person a candidate).
        closest: dict[int, tuple[float, int]] = {}
        for i, (pid, dist, _) in enumerate(answers):
            if pid is not None and dist is not None and dist < closest.get(pid, (np.inf, -1))[0]:
                closest[pid] = (dist, i)
        names = {p.id: p.name for p in self.store.people()}
        out: list[Identified] = []
        for i, (face, (pid, dist, ranked)) in enumerate(zip(faces, answers, strict=True)):
            if pid is not None and closest[pid][1] != i:
                pid = None
            candidates = [Candidate(names[p], p, d) for p, d in ranked if p != pid and p in names]
            person = names.get(pid) if pid is not None else None
            out.append(Identified(i, face, person, dist, candidates[:CANDIDATES]))
        return out

    # -- clustering -----------------------------------------------------------------------

    def cluster(self, *, full: bool = False, threshold: float | None = None) -> ClusterReport:
        """Recognise and group the unknown faces; only new faces move unless ``full``.

        New usable faces are first matched against the known people (``face_threshold``);
        the rest join the nearest cluster (mean distance within ``face_cluster_threshold``,
        never two faces of one photo) or start one. ``full`` first forgets every cluster and
        every recognised (unconfirmed) name, then places all faces again and merges close
        clusters: manual cluster edits are lost, names given by the user are kept.
        """
        thr = self.settings.face_cluster_threshold if threshold is None else threshold
        report = ClusterReport()
        if full:
            self.store.reset_clusters()
        todo = self.store.unprocessed(self.version)
        report.faces = len(todo.ids)
        keep = np.ones(len(todo.ids), dtype=bool)
        if len(todo.ids):
            keep = self._recognise(todo, report)
        state = ClusterState(todo.embeddings.shape[1] if todo.embeddings.size else 128)
        clustered = self.store.clustered(self.version)
        for cid in np.unique(clustered.labels):
            members = clustered.labels == cid
            state.seed(
                int(cid), clustered.embeddings[members], clustered.image_ids[members].tolist()
            )
        before = set(state.ids())
        seen = set(before)
        order = [i for i in np.argsort(-todo.quality, kind="stable") if keep[i]]
        face_ids: list[int] = []
        labels: list[int] = []
        for i in order:
            cid = state.add(todo.embeddings[i], int(todo.image_ids[i]), thr)
            face_ids.append(int(todo.ids[i]))
            labels.append(cid)
            if cid in seen:
                report.joined += 1
            else:
                report.started += 1
                seen.add(cid)
        if full:
            moved = state.merge_close(thr)
            report.merged = len(moved)
            labels = [moved.get(c, c) for c in labels]
        # Clusters started here get negative ids: the store numbers them in its transaction,
        # so two processes clustering at once cannot pick the same new id.
        fresh = {c: -(i + 1) for i, c in enumerate(sorted(set(labels) - before))}
        if face_ids:
            self.store.assign_clusters(face_ids, [fresh.get(c, c) for c in labels])
        report.clusters = len(self.store.clusters())
        return report

    def _recognise(self, todo: FaceVectors, report: ClusterReport) -> np.ndarray:
        """Name the faces of ``todo`` that match a known person; returns the rest (mask)."""
        answers = self.identify_vectors(todo.embeddings)
        keep = np.ones(len(todo.ids), dtype=bool)
        # One person appears once per photo: of several matches in a photo keep the closest,
        # and none when the photo already has a face named as that person.
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
        names = {p.id: p.name for p in self.store.people()}
        for pid, ids in by_person.items():
            self.store.set_person(ids, pid, confirmed=False)
            report.people[names.get(pid, str(pid))] = len(ids)
            report.recognised += len(ids)
        return keep

    def clusters(self, *, min_size: int = 1) -> list[ClusterRow]:
        return [c for c in self.store.clusters() if c.size >= min_size]

    def cluster_faces(self, cluster_id: int) -> list[FaceRow]:
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

        An existing name is refused (Conflict) unless ``merge``: naming must not silently
        add faces to someone.
        """
        name = _clean_name(name)
        faces = self.cluster_faces(cluster_id)
        person = self.store.person(name)
        if person is not None and not merge:
            raise Conflict(
                f"a person named {person.name!r} exists already: to add cluster "
                f"{cluster_id}'s faces to them, name it again with merge (--merge)"
            )
        if person is None:
            person = self.store.add_person(name)
        self.store.set_person([f.id for f in faces], person.id, confirmed=True)
        return self.person(person.name)

    # -- search ---------------------------------------------------------------------------

    def search(
        self,
        query: Query,
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
        found = self.faces_of(query, crop=crop)
        chosen = _pick_face(found, face, source_label(query), main=True)
        assert chosen.embedding is not None
        hits = self.search_vector(chosen.embedding, k=k, max_distance=max_distance)
        return FaceSearch(source_label(query), chosen, hits)

    def search_vector(
        self, embedding: np.ndarray, *, k: int = 10, max_distance: float | None = None
    ) -> list[FaceHit]:
        limit = self.settings.face_threshold if max_distance is None else max_distance
        index = self.index.get(self.spec)
        sq, ids = index.search(np.asarray(embedding, dtype=np.float32).reshape(1, -1), k)
        pairs = [
            (int(i), float(np.sqrt(max(float(s), 0.0))))
            for s, i in zip(sq[0], ids[0], strict=True)
            if i >= 0
        ]
        pairs = [(i, d) for i, d in pairs if d <= limit]
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

    def thumbnail(self, face_id: int) -> Image.Image:
        """The aligned chip of an indexed face."""
        data = self.store.face_thumb(face_id)
        if data is None:
            raise NotFound(f"face {face_id} not found")
        return Image.open(io.BytesIO(data)).convert("RGB")

    def example_thumbnail(self, example_id: int) -> Image.Image:
        data = self.store.example_thumb(example_id)
        if data is None:
            raise NotFound(f"example {example_id} not found")
        return Image.open(io.BytesIO(data)).convert("RGB")

    def stats(self) -> dict[str, int]:
        counts = self.store.count_faces(self.version)
        counts["people"] = len(self.store.people())
        counts["clusters"] = len(self.store.clusters())
        return counts


def _record(face: Face) -> FaceRecord:
    if face.embedding is None or face.chip is None:
        raise BadInput("face has no embedding to store")
    return FaceRecord(
        box=face.box,
        score=face.score,
        quality=face.quality,
        usable=face.usable,
        flags=list(face.flags),
        landmarks=list(face.landmarks),
        embedding=face.embedding,
        thumb=_jpeg(face.chip),
    )


def _pick_face(faces: list[Face], face: int | None, source: str, *, main: bool = False) -> Face:
    """The face chosen by number, the only usable face, or (``main``) the main face."""
    if face is not None:
        if not 0 <= face < len(faces):
            raise BadInput(
                f"{source}: {len(faces)} face(s) found; --face must be 0 to {len(faces) - 1}"
                if faces
                else f"{source}: no face found"
            )
        return faces[face]
    if not faces:
        raise BadInput(f"{source}: no face found")
    if main:
        chosen = main_face(faces)
        assert chosen is not None
        return chosen
    usable = [f for f in faces if f.usable]
    if len(usable) != 1:
        detail = f"{len(faces)} faces found, {len(usable)} usable"
        if len(usable) == 0:
            flags = sorted({flag for f in faces for flag in f.flags})
            detail += f" ({', '.join(flags)})" if flags else ""
        raise BadInput(
            f"{source}: {detail}; an example must show exactly one usable face "
            "(pick one by its number, from 0 as `faces detect` lists them: --face N, or the "
            "`face` field of the API)"
        )
    return usable[0]


def _clean_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned:
        raise BadInput("a person's name cannot be empty")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in cleaned):
        raise BadInput("a person's name cannot hold control or invisible characters")
    if len(cleaned) > 200:
        raise BadInput("a person's name must be at most 200 characters")
    return cleaned


def _pixels_hash(image: Image.Image) -> str:
    return sha256_hex(image.tobytes() + f"{image.size}{image.mode}".encode())
