"""People and their faces over the catalog: ``Lookalike.people``, a front over the parts.

Each job has its module: the face functions (:mod:`lookalike.faces.api`: detect, embed,
verify), faces as stored (:mod:`~lookalike.people.scan`), people and examples
(:mod:`~lookalike.people.gallery`), recognition (:mod:`~lookalike.people.recognise`),
clustering (:mod:`~lookalike.people.clustering`, over the algorithm in
:mod:`~lookalike.people.cluster`) and face search (:mod:`~lookalike.people.search`).
:class:`FaceService` builds them for one data folder under one ``Settings`` and answers
for all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.cache import NoCache, ResultCache
from lookalike.cache.results import FaceRanking, Matches, Part
from lookalike.decode import Decoded, sha256_hex
from lookalike.errors import BadInput
from lookalike.faces import Encoder, Face, StageTimes, api
from lookalike.faces.api import Verification, choose_face
from lookalike.faces.config import Detector, LandmarkCount
from lookalike.faces.read import NamedBytes, Source, decode_for_faces, find_faces, source_bytes
from lookalike.index.manager import IndexManager
from lookalike.people.cluster import Progress
from lookalike.people.clustering import Clustering, ClusterReport
from lookalike.people.gallery import Gallery
from lookalike.people.recognise import Candidate, Identified, Match, Recogniser
from lookalike.people.scan import FaceSpec, chip_image, embed_scans, face_version, find_unembedded
from lookalike.people.search import FaceHit, FaceSearch, FaceSearcher
from lookalike.settings import Settings
from lookalike.store.base import ClusterRow, ExampleRow, FaceRow, FaceScan, FaceStore, PersonRow

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


class FaceService:
    """Faces and people of one data folder (``Lookalike.people``)."""

    def __init__(
        self,
        settings: Settings,
        store: FaceStore,
        index_dir: Path,
        *,
        cache: ResultCache | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        # Query faces and rankings by the query's SHA-256 (none: a no-op cache).
        self.cache = cache or ResultCache(NoCache(), settings, scope="")
        self.version = face_version(settings.face_detector)
        self.encoder = Encoder.from_settings(settings)
        self.gallery = Gallery(settings, store, self.version)
        self.recogniser = Recogniser(settings, store, self.gallery)
        self.clustering = Clustering(settings, store, self.gallery, self.recogniser, self.version)
        self.searcher = FaceSearcher(settings, store, index_dir, self.version)

    @property
    def spec(self) -> FaceSpec:
        """The face embeddings as an index spec (for ``reindex``)."""
        return self.searcher.spec

    @property
    def index(self) -> IndexManager:
        """The manager of the face index file."""
        return self.searcher.index

    # -- faces of images: lookalike.faces.api, lookalike.people.scan ----------------------

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
        """Decode one query image; returns its faces, embedded (from the result cache when
        it has them: without chips)."""
        cached = self._cacheable(query)
        return self._faces(*cached, crop) if cached else api.embed(query, self.settings, crop=crop)

    def verify(
        self, a: Query, b: Query, *, threshold: float | None = None, crop: bool = False
    ) -> Verification:
        """Compare the main faces (largest usable) of two images; BadInput if one has none."""
        if not self.cache.enabled:
            return api.verify(a, b, self.settings, threshold=threshold, crop=crop)
        face_a, face_b = (self._main_face(q, crop) for q in (a, b))
        return api.compare(face_a, face_b, self.settings, threshold=threshold)

    def _cacheable(self, query: Query) -> tuple[NamedBytes, str] | None:
        """A query's bytes and their SHA-256 when the result cache may answer for it."""
        if not self.cache.enabled or isinstance(query, Image.Image):
            return None
        named = source_bytes(query)
        return named, sha256_hex(named.data)

    def _face_parts(self, digest: str, crop: bool) -> list[Part]:
        """What a query's faces depend on: its bytes, the face model and the settings
        that move, find or flag faces (key parts of the result cache)."""
        s = self.settings
        return [
            digest,
            self.version,
            crop,
            s.face_decode_side,
            s.face_detect_max_side,
            s.face_cnn_max_side,
            s.face_min_size,
            s.face_min_quality,
        ]

    def _faces(self, named: NamedBytes, digest: str, crop: bool) -> list[Face]:
        return self.cache.faces(
            self._face_parts(digest, crop),
            lambda: api.embed(named, self.settings, crop=crop),
        )

    def _main_face(self, query: Query, crop: bool) -> Face:
        """The main face of ``query``, embedded, through the cache."""
        cached = self._cacheable(query)
        if cached is None:
            return api.main_embedded_face(query, self.settings, crop=crop)
        named, digest = cached
        return choose_face(self._faces(named, digest, crop), None, named.name, main=True)

    def detect(self, decoded: Decoded) -> list[Face]:
        """The faces of a decoded image with their chips, not yet embedded (thread-safe:
        indexing runs this in its decoder threads, see :meth:`scans`)."""
        return find_unembedded(decoded, self.settings)

    def scans(self, found: Sequence[Sequence[Face]]) -> list[FaceScan]:
        """Embed the faces of several images in one batch: what is stored with each."""
        return embed_scans(found, self.version, self.encoder)

    def scan(self, decoded: Decoded) -> FaceScan:
        """The faces of one image as they are stored with it."""
        return self.scans([self.detect(decoded)])[0]

    def thumbnail(self, face_id: int) -> Image.Image:
        """The aligned chip of an indexed face."""
        return chip_image(self.store.face_thumb(face_id), f"face {face_id} not found")

    def stats(self) -> dict[str, int]:
        """Counts of faces (all, usable, named, clustered, unprocessed), people, clusters."""
        counts = self.store.count_faces(self.version)
        counts["people"] = len(self.store.people())
        counts["clusters"] = len(self.store.clusters())
        return counts

    # -- people: lookalike.people.gallery -------------------------------------------------

    def person(self, name: str) -> PersonRow:
        """The person called ``name`` (any case); NotFound if there is none."""
        return self.gallery.person(name)

    def people(self) -> list[PersonRow]:
        """Everyone, by name."""
        return self.gallery.people()

    def enrol(
        self,
        name: str,
        images: Sequence[Query],
        *,
        face: int | None = None,
        crop: bool = False,
    ) -> tuple[PersonRow, list[int]]:
        """Add example faces of ``name`` (see :meth:`Gallery.enrol`); returns the person and
        the example ids."""
        return self.gallery.enrol(name, images, face=face, crop=crop)

    def rename(self, name: str, new_name: str) -> PersonRow:
        """Rename a person; Conflict if ``new_name`` is someone else's."""
        return self.gallery.rename(name, new_name)

    def merge(self, names: Sequence[str], into: str) -> PersonRow:
        """Make the people ``names`` one with ``into``; returns the person who remains."""
        return self.gallery.merge(names, into)

    def remove(self, name: str) -> None:
        """Forget a person: examples deleted, their faces become unknown again."""
        self.gallery.remove(name)

    def remove_example(self, name: str, example_id: int) -> None:
        """Delete one of a person's examples."""
        self.gallery.remove_example(name, example_id)

    def examples(self, name: str) -> list[ExampleRow]:
        """A person's enrolment examples."""
        return self.gallery.examples(name)

    def faces_of_person(self, name: str) -> list[FaceRow]:
        """A person's indexed faces, best quality first."""
        return self.gallery.faces_of_person(name)

    def assign(self, face_ids: Sequence[int], name: str) -> PersonRow:
        """Confirm indexed faces as ``name`` (created if new); returns the person."""
        return self.gallery.assign(face_ids, name)

    def example_thumbnail(self, example_id: int) -> Image.Image:
        """The aligned chip of an example."""
        return self.gallery.example_thumbnail(example_id)

    # -- recognition: lookalike.people.recognise ------------------------------------------

    def identify_vectors(
        self, embeddings: np.ndarray, *, threshold: float | None = None
    ) -> list[Match]:
        """For each embedding: (person id or None, best distance, nearest people)."""
        return self.recogniser.identify_vectors(embeddings, threshold=threshold)

    def identify(
        self, query: Query, *, threshold: float | None = None, crop: bool = False
    ) -> list[Identified]:
        """Every face of ``query`` with the person it shows, or unknown (its faces and
        their matches from the result cache when there, names as they are now)."""
        cached = self._cacheable(query)
        if cached is None:
            return self.recogniser.identify(query, threshold=threshold, crop=crop)
        named, digest = cached
        faces = self._faces(named, digest, crop)
        limit = self.settings.face_threshold if threshold is None else threshold
        # The gallery's generation is read first: a ranking is never older than its key.
        parts = [*self._face_parts(digest, crop), self.store.generation("gallery"), limit]

        def fits(ranking: Matches) -> list[Match] | None:
            # Matches of another number of faces are of other faces: not used.
            return ranking.matches if len(ranking.matches) == len(faces) else None

        found = self.cache.answer("identify", parts, Matches, fits)
        if found is None:
            found = self.recogniser.match_faces(faces, threshold=limit)
            self.cache.keep("identify", parts, Matches(matches=found))
        return self.recogniser.name_faces(faces, found)

    # -- clusters: lookalike.people.clustering --------------------------------------------

    def cluster(
        self,
        *,
        full: bool = False,
        threshold: float | None = None,
        on_progress: Progress | None = None,
    ) -> ClusterReport:
        """Recognise and group the unknown faces (see :meth:`Clustering.cluster`)."""
        return self.clustering.cluster(full=full, threshold=threshold, on_progress=on_progress)

    def clusters(self, *, min_size: int = 1) -> list[ClusterRow]:
        """The clusters with at least ``min_size`` faces, largest first."""
        return self.clustering.clusters(min_size=min_size)

    def cluster_faces(self, cluster_id: int) -> list[FaceRow]:
        """A cluster's faces, best quality first."""
        return self.clustering.cluster_faces(cluster_id)

    def merge_clusters(self, ids: Sequence[int]) -> int:
        """Merge clusters into the first; returns how many faces moved."""
        return self.clustering.merge_clusters(ids)

    def move_faces(self, face_ids: Sequence[int], cluster_id: int | None) -> int:
        """Move faces to a cluster (None: a new one); returns the cluster id."""
        return self.clustering.move_faces(face_ids, cluster_id)

    def name_cluster(self, cluster_id: int, name: str, *, merge: bool = False) -> PersonRow:
        """Make a cluster a person (Conflict for an existing name unless ``merge``)."""
        return self.clustering.name_cluster(cluster_id, name, merge=merge)

    # -- face search: lookalike.people.search ---------------------------------------------

    def search(
        self,
        query: Query,
        *,
        k: int = 10,
        face: int | None = None,
        max_distance: float | None = None,
        crop: bool = False,
    ) -> FaceSearch:
        """Indexed faces nearest to the main face of ``query`` (see
        :meth:`FaceSearcher.search`; through the result cache when there is one)."""
        cached = self._cacheable(query)
        if cached is None:
            return self.searcher.search(query, k=k, face=face, max_distance=max_distance, crop=crop)
        if k <= 0:
            raise BadInput(f"k must be a positive number, got {k}")
        named, digest = cached
        chosen = choose_face(self._faces(named, digest, crop), face, named.name, main=True)
        assert chosen.embedding is not None
        limit = self.settings.face_threshold if max_distance is None else max_distance
        # The face index's generation is read first: a ranking is never older than its key.
        generation = self.store.generation(self.spec.name)
        parts = [*self._face_parts(digest, crop), generation, k, face, limit]
        hits = self.cache.answer(
            "face-search", parts, FaceRanking, lambda r: self.searcher.hits(r.hits)
        )
        if hits is None:
            hits = self.searcher.search_vector(chosen.embedding, k=k, max_distance=limit)
            ranking = FaceRanking(hits=[(h.face_id, h.distance) for h in hits])
            self.cache.keep("face-search", parts, ranking)
        return FaceSearch(named.name, chosen, hits)

    def search_vector(
        self, embedding: np.ndarray, *, k: int = 10, max_distance: float | None = None
    ) -> list[FaceHit]:
        """The indexed faces nearest to ``embedding``, nearest first."""
        return self.searcher.search_vector(embedding, k=k, max_distance=max_distance)
