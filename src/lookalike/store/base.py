"""The catalog interface: the source of truth for images, their paths and descriptors.

One implementation (``lookalike.store.sql_catalog``) runs on the embedded SQLite default and
on a shared PostgreSQL, through their database objects. Every write is idempotent by content
hash.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

import numpy as np


@dataclass(frozen=True)
class PathRow:
    path: str
    image_id: int
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class ImageRow:
    id: int
    sha256: str
    width: int
    height: int
    format: str
    size: int
    paths: tuple[str, ...] = ()


@dataclass
class NewImage:
    """One file to record: its content, where it was found and its descriptor rows."""

    sha256: str
    path: str
    size: int
    mtime_ns: int
    width: int = 0
    height: int = 0
    format: str = ""
    # descriptor name -> (version, vector row); empty when the content is already stored.
    vectors: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)
    # The faces found in the image, when they were looked for in this run.
    faces: FaceScan | None = None
    # Set by ``Catalog.record``: True when this record created the image (its content was
    # new to the catalog), decided inside the transaction, so concurrent writers agree.
    created: bool = False


class Catalog(Protocol):
    """What the engine needs from a catalog backend."""

    # Faces, people and clusters, in the same database (see FaceStore below).
    @property
    def faces(self) -> FaceStore: ...

    # API keys and jobs of the server (see ServiceStore below).
    @property
    def service(self) -> ServiceStore: ...

    # Where the catalog is, for messages and status: a file, or a URL without its password.
    @property
    def where(self) -> str: ...

    def close(self) -> None: ...

    def path_row(self, path: str) -> PathRow | None:
        """The recorded state of ``path``, or None."""
        ...

    def paths_under(self, root: str) -> list[str]:
        """Every recorded path equal to ``root`` or inside it (a folder)."""
        ...

    def image_by_sha(self, sha256: str) -> ImageRow | None: ...

    def known_sha256(self, shas: Collection[str]) -> set[str]:
        """Those of ``shas`` (SHA-256 hex digests) whose content is in the catalog."""
        ...

    def images(self, ids: Sequence[int]) -> dict[int, ImageRow]:
        """Rows (with their paths) for the ids that exist."""
        ...

    def image_page(
        self,
        offset: int,
        limit: int,
        *,
        newest: bool = False,
        folder: str | None = None,
        after: int | None = None,
    ) -> list[ImageRow]:
        """Up to ``limit`` images (with their paths) in id order (``newest``: highest id
        first), after the first ``offset``; with ``folder``, only images having a path
        equal to it or inside it; with ``after``, only those after that id in the order."""
        ...

    def missing_vectors(self, image_id: int, wanted: dict[str, str]) -> list[str]:
        """Descriptor names (from ``wanted``: name -> version) the image lacks."""
        ...

    def record(self, items: Iterable[NewImage]) -> list[int]:
        """Store images, paths and vectors in one transaction; returns the image ids."""
        ...

    def remove_paths(self, paths: Iterable[str]) -> list[int]:
        """Forget paths; images left without a path are deleted. Returns deleted image ids."""
        ...

    def vectors(self, descriptor: str, version: str) -> tuple[np.ndarray, np.ndarray]:
        """``(ids int64 (n,), rows (n, width))`` of one descriptor version, by id."""
        ...

    def vector_ids(self, descriptor: str, version: str) -> np.ndarray:
        """int64 ids of the images that have this descriptor version."""
        ...

    def vector_batches(
        self, descriptor: str, version: str, size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``vectors``, by id, at most ``size`` rows at a time (memory: one batch)."""
        ...

    def vectors_for(
        self, descriptor: str, version: str, ids: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like ``vectors``, restricted to ``ids``."""
        ...

    def generation(self, descriptor: str) -> int:
        """A counter bumped by every change to this descriptor's vectors."""
        ...

    def exact_duplicates(self) -> list[ImageRow]:
        """Images recorded under more than one path."""
        ...

    def count_images(self, folder: str | None = None) -> int:
        """Images in the catalog (with ``folder``: those having a path in it)."""
        ...

    def folders(self) -> list[tuple[str, int]]:
        """``(folder, images under it)`` for every folder directly holding a recorded
        path, in path order."""
        ...

    def count_paths(self) -> int: ...

    def all_paths(self) -> list[str]: ...

    def schema_version(self) -> int: ...


# -- faces, people, clusters ------------------------------------------------------------

Box = tuple[int, int, int, int]

# The generation counter bumped once by every transaction that puts faces into clusters or
# takes them out (not by deleting faces: ``Clustering`` notices those by the count of
# clustered faces).
CLUSTERS_GENERATION = "clusters"


@dataclass
class FaceRecord:
    """One face to store with its image (coordinates in the original image's pixels)."""

    box: Box
    score: float
    quality: float
    usable: bool
    flags: list[str]
    landmarks: list[tuple[float, float]]
    embedding: np.ndarray
    # The aligned chip as a JPEG: face thumbnails without decoding the photo again.
    thumb: bytes


@dataclass
class FaceScan:
    """The faces found in one image by one face-model version (possibly none)."""

    version: str
    faces: list[FaceRecord]


@dataclass(frozen=True)
class FaceRow:
    id: int
    image_id: int
    # Position among the image's faces (detector order), from 0.
    idx: int
    box: Box
    score: float
    quality: float
    usable: bool
    flags: tuple[str, ...]
    landmarks: tuple[tuple[float, float], ...]
    person_id: int | None
    person: str | None
    # True when a user set the person (named its cluster, moved it); False when recognised.
    confirmed: bool
    cluster_id: int | None
    path: str


def person_key(name: str) -> str:
    """What people's names are compared by: caseless in every script and in Unicode
    compatibility form, so "Élodie" (either way it is encoded) and "ÉLODIE", or
    "Straße" and "STRASSE", are one name. Names are shown as typed."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


@dataclass(frozen=True)
class PersonRow:
    id: int
    name: str
    examples: int
    faces: int
    created_at: float


@dataclass(frozen=True)
class ExampleRow:
    id: int
    person_id: int
    sha256: str
    face_index: int
    source: str
    box: Box
    quality: float


@dataclass
class NewExample:
    """An enrolment example: one face of an image given for a person."""

    sha256: str
    face_index: int
    source: str
    version: str
    face: FaceRecord


@dataclass(frozen=True)
class ClusterRow:
    id: int
    size: int
    # Up to a few face ids, best quality first, to show the cluster.
    sample: tuple[int, ...]


@dataclass(frozen=True)
class FacePhotos:
    """A page of the images that show some faces (a person's, a cluster's), newest first."""

    total: int  # such images in all, not only on this page
    # (image id, its faces among those, in detector order), newest image (highest id) first
    images: list[tuple[int, tuple[int, ...]]]


@dataclass(frozen=True)
class FaceVectors:
    """Faces with their embeddings, as arrays (what clustering and search work on)."""

    ids: np.ndarray  # int64 (n,)
    image_ids: np.ndarray  # int64 (n,)
    labels: np.ndarray  # int64 (n,): cluster or person id, by the query; 0 for none
    quality: np.ndarray  # float32 (n,)
    embeddings: np.ndarray  # float32 (n, 128)


class FaceStore(Protocol):
    """Faces, people and clusters, beside the catalog (same database, same transactions).

    Faces are written with their image by ``Catalog.record`` (``NewImage.faces``), so an
    image and its faces are stored together or not at all.
    """

    def face_scanned(self, image_id: int, version: str) -> bool: ...

    # The vector-source interface of IndexManager, over face ids and embeddings; also the
    # ``gallery`` counter (known faces changed) and the ``clusters`` counter (bumped once by
    # each transaction that moves faces into or out of clusters: assign_clusters,
    # set_person taking clustered faces, reset_clusters, merge_clusters).
    def generation(self, name: str) -> int: ...

    def vectors(self, name: str, version: str) -> tuple[np.ndarray, np.ndarray]: ...

    def vector_ids(self, name: str, version: str) -> np.ndarray: ...

    def vector_batches(
        self, name: str, version: str, size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...

    def vectors_for(
        self, name: str, version: str, ids: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def faces(self, ids: Sequence[int]) -> dict[int, FaceRow]: ...

    def faces_of_image(self, image_id: int) -> list[FaceRow]: ...

    def faces_of_person(self, person_id: int) -> list[FaceRow]: ...

    def faces_of_cluster(self, cluster_id: int) -> list[FaceRow]: ...

    def face_thumb(self, face_id: int) -> bytes | None: ...

    def images_of_person(self, person_id: int, offset: int, limit: int) -> FacePhotos:
        """Up to ``limit`` of the images holding the person's faces, after the first
        ``offset``, newest first."""
        ...

    def images_of_cluster(self, cluster_id: int, offset: int, limit: int) -> FacePhotos:
        """Like ``images_of_person``, for a cluster's faces."""
        ...

    def count_faces(self, version: str) -> dict[str, int]:
        """Counts: faces, usable, named (with a person), clustered, unprocessed."""
        ...

    def people_in_images(self, image_ids: Sequence[int]) -> set[tuple[int, int]]:
        """(image id, person id) of every named face in these images."""
        ...

    def unprocessed(self, version: str) -> FaceVectors:
        """Usable faces with neither person nor cluster (labels all 0)."""
        ...

    def clustered(self, version: str) -> FaceVectors:
        """Faces in clusters (labels: cluster ids)."""
        ...

    def gallery(self, version: str) -> FaceVectors:
        """The known faces of people: examples and confirmed faces (labels: person ids;
        ids: negative example ids, positive face ids)."""
        ...

    def assign_clusters(
        self, face_ids: Sequence[int], cluster_ids: Sequence[int]
    ) -> dict[int, int]:
        """Put faces into clusters. Negative ids (and ids of clusters that no longer exist)
        stand for new clusters, created here; returns ``{given id: stored id}``."""
        ...

    def set_person(self, face_ids: Sequence[int], person_id: int | None, confirmed: bool) -> None:
        """Name faces (taking them out of their clusters), or un-name them (None)."""
        ...

    def reset_clusters(self) -> int:
        """Forget every cluster and every recognised (unconfirmed) person of faces."""
        ...

    def clusters(self) -> list[ClusterRow]: ...

    def merge_clusters(self, into: int, others: Sequence[int]) -> int: ...

    def add_person(self, name: str, *, exist_ok: bool = False) -> PersonRow:
        """Create a person; one whose name has the same :func:`person_key` is a Conflict,
        or (``exist_ok``) is returned instead. Atomic: two processes cannot both create
        one name."""
        ...

    def person(self, name: str) -> PersonRow | None:
        """The person whose name has the :func:`person_key` of ``name``, or None."""
        ...

    def person_by_id(self, person_id: int) -> PersonRow | None: ...

    def people(self) -> list[PersonRow]: ...

    def rename_person(self, person_id: int, name: str) -> None:
        """Rename a person; Conflict if another has the same :func:`person_key`."""
        ...

    def merge_people(self, into: int, others: Sequence[int]) -> None: ...

    def remove_person(self, person_id: int) -> None: ...

    def add_examples(self, person_id: int, examples: Sequence[NewExample]) -> list[int]: ...

    def examples(self, person_id: int) -> list[ExampleRow]: ...

    def example_thumb(self, example_id: int) -> bytes | None: ...

    def remove_example(self, person_id: int, example_id: int) -> bool: ...


# -- the service: API keys and background jobs --------------------------------------------


# What an API key may do; scopes nest (admin can do what write can, write what read can).
Scope = Literal["read", "write", "admin"]
SCOPES: Final[tuple[Scope, ...]] = ("read", "write", "admin")


@dataclass(frozen=True)
class KeyRow:
    id: int
    name: str
    # The public part of the key (shown in listings); the secret is stored only hashed.
    prefix: str
    scope: str
    created_at: float
    revoked_at: float | None
    last_used_at: float | None
    # SHA-256 (hex) of the whole key.
    digest: str = field(default="", repr=False)


@dataclass(frozen=True)
class JobRow:
    id: int
    kind: str
    target: str
    status: str  # queued, running, done, failed
    done: int
    total: int
    report: dict[str, object] | None
    error: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class ChunkRow:
    """One chunk of a queued job: ``files`` paths that one worker indexes in one go."""

    job_id: int
    chunk: int
    files: int
    status: str  # queued, done, failed
    report: dict[str, object] | None
    error: str | None
    updated_at: float


class ServiceStore(Protocol):
    """API keys and jobs, shared by every server process of a data folder."""

    def add_key(self, name: str, prefix: str, digest: str, scope: str) -> KeyRow: ...

    def key_by_prefix(self, prefix: str) -> KeyRow | None: ...

    def api_keys(self) -> list[KeyRow]: ...

    def revoke_key(self, key_id: int) -> bool: ...

    def touch_key(self, key_id: int) -> None: ...

    def add_job(self, kind: str, target: str) -> JobRow: ...

    def update_job(
        self,
        job_id: int,
        *,
        status: str | None = None,
        done: int | None = None,
        total: int | None = None,
        report: dict[str, object] | None = None,
        error: str | None = None,
    ) -> None: ...

    def job(self, job_id: int) -> JobRow | None: ...

    def jobs(self, limit: int = 100) -> list[JobRow]: ...

    def add_chunks(self, job_id: int, sizes: Sequence[int]) -> None:
        """Record the job's chunks ``0 .. len(sizes) - 1`` (of ``sizes[i]`` files each) as
        queued, and its total as their sum."""
        ...

    def finish_chunk(
        self,
        job_id: int,
        chunk: int,
        *,
        report: dict[str, object] | None = None,
        error: str | None = None,
    ) -> bool:
        """Mark a queued chunk done (failed, with ``error``) and, in the same transaction,
        set the job's ``done`` to the files of its finished chunks and its status to
        ``done`` once none is queued. False, changing nothing, if the chunk was already
        finished (a redelivered task)."""
        ...

    def chunks(self, job_id: int) -> list[ChunkRow]: ...

    def meta(self, key: str) -> bytes | None:
        """The value stored under ``key`` in the catalog's ``meta`` table, if any."""
        ...

    def put_meta_once(self, key: str, value: bytes) -> bytes:
        """Store ``value`` under ``key`` unless a value is there already; the value stored
        (the first writer's, when several nodes race)."""
        ...
