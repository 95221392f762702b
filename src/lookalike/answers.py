"""The shape of every answer, as pydantic models built from the engine's rows: the REST
API answers with them and the command line prints them (``--json``), so both say one
thing one way.

One name for one thing in every answer: an id is named after what it identifies
(``image_id``, ``face_id``, ``cluster_id``, ``person_id``, ``example_id``, ``job_id``,
``key_id``), also in the object it identifies; ``person`` is always a person's name (or
null: unknown); ``face_index`` is a face's place among the faces of its image, from 0;
counts end in ``_count``; a box is ``[left, top, right, bottom]`` in the original image's
pixels; ``query`` names the image asked about. Each model's ``of`` builds it from the
engine's dataclass. The answers only the server gives (uploads, image pages, jobs) are in
``lookalike.serve.schemas``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter

from lookalike.errors import LookalikeError
from lookalike.faces.api import Verification
from lookalike.faces.detect import Face
from lookalike.files import shown
from lookalike.index.manager import IndexState
from lookalike.ingest.report import IndexReport
from lookalike.people.clustering import ClusterReport
from lookalike.people.recognise import Identified
from lookalike.people.search import FaceHit, FaceSearch
from lookalike.search.duplicates import DuplicateGroup, DuplicateReport
from lookalike.search.engine import Hit, SearchResult
from lookalike.search.rerank import Measure, higher_is_better
from lookalike.search.status import FolderStatus, PartName, PartState
from lookalike.store.base import (
    ClusterRow,
    ExampleRow,
    FaceRow,
    ImageRow,
    JobRow,
    KeyRow,
    PersonRow,
    Scope,
)

Box = Annotated[
    list[int],
    Field(min_length=4, max_length=4, description="[left, top, right, bottom], original pixels"),
]
# A file path as text: bytes of a name that are not UTF-8 shown as \xNN (JSON is UTF-8).
ShownPath = Annotated[str, AfterValidator(shown)]
# The kind and target of a full re-cluster's job.
CLUSTER_JOB = "cluster"
CLUSTER_TARGET = "faces"
Distance = Annotated[float, Field(ge=0, description="Between face embeddings: lower is closer")]
Quality = Annotated[float, Field(ge=0, le=1, description="Size, sharpness and pose, 0 to 1")]


class Answer(BaseModel):
    """An answer's shape: exactly these fields (the schema says no others come)."""

    model_config = ConfigDict(extra="forbid")


def _box(box: tuple[int, int, int, int]) -> list[int]:
    return [int(v) for v in box]


def _round(value: float, digits: int = 6) -> float:
    return round(float(value), digits)


# -- errors --------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="What went wrong, for programs: bad_image, not_found, ...")
    message: str


class Failed(Answer):
    """An input that could not be used: the command line prints it in its answer's place
    (the server answers the error alone, ``{"error": ...}``, with its status)."""

    query: ShownPath
    error: ErrorDetail

    @classmethod
    def of(cls, query: str, exc: LookalikeError) -> Self:
        return cls(query=query, error=ErrorDetail(code=exc.code, message=exc.message))


# -- images and search ---------------------------------------------------------------------


class Image(Answer):
    """An indexed image: its content, and every path it was found under."""

    image_id: int
    sha256: str
    width: int
    height: int
    format: str = Field(description="JPEG, PNG, WEBP, GIF, BMP or TIFF")
    size: int = Field(description="File size in bytes")
    paths: list[ShownPath]

    @classmethod
    def of(cls, row: ImageRow, **more: Any) -> Self:
        """The image of ``row``; ``more``: the fields a subclass adds."""
        return cls(
            image_id=row.id,
            sha256=row.sha256,
            width=row.width,
            height=row.height,
            format=row.format,
            size=row.size,
            paths=list(row.paths),
            **more,
        )


class StoredFace(Answer):
    """A face stored with an indexed image, and who or which cluster it is."""

    face_id: int
    image_id: int
    path: ShownPath = Field(description="One path of its image")
    face_index: int = Field(description="Its place among its image's faces, from 0")
    box: Box
    quality: Quality
    usable: bool = Field(description="Big and sharp enough to recognise and group")
    person: str | None = Field(description="Who it is; null: unknown")
    person_id: int | None
    confirmed: bool = Field(description="A user said who it is (not only recognised)")
    cluster_id: int | None = Field(description="Its cluster of unnamed faces, if any")

    @classmethod
    def of(cls, row: FaceRow) -> Self:
        return cls(
            face_id=row.id,
            image_id=row.image_id,
            path=row.path,
            face_index=row.idx,
            box=_box(row.box),
            quality=_round(row.quality, 4),
            usable=row.usable,
            person=row.person,
            person_id=row.person_id,
            confirmed=row.confirmed,
            cluster_id=row.cluster_id,
        )


class SearchHit(Answer):
    rank: int = Field(description="From 1")
    image_id: int
    path: ShownPath
    sha256: str
    score: float = Field(
        description="As the answer's measure says: cosine, Pearson correlation or "
        "1 - hamming/64, higher is more similar; Euclidean distance, lower is"
    )
    region: Box | None = Field(
        default=None,
        description="A box search: the region of this image that matched; null: the whole",
    )
    image_size: list[int] | None = Field(
        default=None, description="With a region: [width, height] of the image it is a box of"
    )

    @classmethod
    def of(cls, hit: Hit) -> Self:
        return cls(
            rank=hit.rank,
            image_id=hit.image_id,
            path=hit.path,
            sha256=hit.sha256,
            score=_round(hit.score),
            region=None if hit.region is None else _box(hit.region),
            image_size=None if hit.size is None else list(hit.size),
        )


class SearchAnswer(Answer):
    query: ShownPath = Field(description="The query's file name or path, or image:ID")
    descriptor: str
    measure: Measure = Field(description="What the scores are")
    higher_is_better: bool = Field(description="False for a distance (euclidean)")
    expanded: bool = Field(description="Ranked with alpha-query expansion")
    results: list[SearchHit]
    timing_ms: dict[str, float] = Field(description="Milliseconds per step")

    @classmethod
    def of(cls, result: SearchResult, descriptor: str) -> Self:
        return cls(
            query=result.query,
            descriptor=descriptor,
            measure=result.measure,
            higher_is_better=higher_is_better(result.measure),
            expanded=result.expanded,
            results=[SearchHit.of(h) for h in result.results],
            timing_ms={k: round(v, 3) for k, v in result.timing_ms.items()},
        )


class NearDuplicates(Answer):
    score: float = Field(description="The weakest link's cosine (or hash score) within the group")
    images: list[Image]

    @classmethod
    def of(cls, group: DuplicateGroup) -> Self:
        return cls(score=_round(group.score), images=[Image.of(r) for r in group.images])


class Duplicates(Answer):
    exact: list[Image] = Field(description="Images found under several paths (same bytes)")
    near: list[NearDuplicates] = Field(
        description="Edited copies of one photo (resized, recompressed, cropped, recoloured, "
        "blurred, captioned, rotated, mirrored), verified on the pixels"
    )
    scenes: list[NearDuplicates] = Field(
        description="Alike but not copies of each other: mostly other shots of one scene"
    )
    unverified: list[NearDuplicates] = Field(
        description="Alike by their vectors, but a file is gone or unreadable, so not verified"
    )

    @classmethod
    def of(cls, report: DuplicateReport) -> Self:
        return cls(
            exact=[Image.of(r) for r in report.exact],
            near=[NearDuplicates.of(g) for g in report.near],
            scenes=[NearDuplicates.of(g) for g in report.scenes],
            unverified=[NearDuplicates.of(g) for g in report.unverified],
        )


# -- faces in images given -----------------------------------------------------------------


class DetectedFace(Answer):
    face_index: int = Field(description="From 0, in detector order")
    box: Box
    score: float = Field(description="Detector confidence")
    quality: Quality
    usable: bool
    flags: list[str] = Field(description="small, blurry, profile, low_quality")
    landmarks: list[list[float]] = Field(description="[x, y] points: 5 or 68")
    embedding: list[float] | None = Field(
        None, description="The 128-d face embedding, when asked for; else null"
    )

    @classmethod
    def of(cls, index: int, face: Face) -> Self:
        vector = face.embedding
        return cls(
            face_index=index,
            box=_box(face.box),
            score=_round(face.score, 4),
            quality=_round(face.quality, 4),
            usable=face.usable,
            flags=list(face.flags),
            landmarks=[[round(x, 1), round(y, 1)] for x, y in face.landmarks],
            embedding=None if vector is None else [_round(v) for v in vector.tolist()],
        )


class Detected(Answer):
    query: ShownPath = Field(description="The image's file name or path")
    faces: list[DetectedFace]

    @classmethod
    def of(cls, query: str, faces: Sequence[Face]) -> Self:
        return cls(query=query, faces=[DetectedFace.of(i, f) for i, f in enumerate(faces)])


class Candidate(Answer):
    person: str
    distance: Distance


class IdentifiedFace(Answer):
    face_index: int
    box: Box
    quality: Quality
    usable: bool
    person: str | None = Field(description="Who it is; null: unknown")
    distance: Distance | None = Field(description="To that person's closest known face")
    candidates: list[Candidate] = Field(description="Other people it is near, closest first")

    @classmethod
    def of(cls, found: Identified) -> Self:
        return cls(
            face_index=found.index,
            box=_box(found.face.box),
            quality=_round(found.face.quality, 4),
            usable=found.face.usable,
            person=found.person,
            distance=None if found.distance is None else _round(found.distance),
            candidates=[
                Candidate(person=c.person, distance=_round(c.distance)) for c in found.candidates
            ],
        )


class IdentifiedFaces(Answer):
    query: ShownPath = Field(description="The image's file name or path")
    faces: list[IdentifiedFace]

    @classmethod
    def of(cls, query: str, found: Sequence[Identified]) -> Self:
        return cls(query=query, faces=[IdentifiedFace.of(f) for f in found])


class VerifyAnswer(Answer):
    distance: Distance
    same: bool = Field(description="distance <= threshold")
    threshold: float

    @classmethod
    def of(cls, result: Verification) -> Self:
        return cls(distance=_round(result.distance), same=result.same, threshold=result.threshold)


class FaceSearchHit(Answer):
    rank: int = Field(description="From 1")
    face_id: int
    image_id: int
    path: ShownPath
    box: Box
    distance: Distance
    person: str | None
    cluster_id: int | None

    @classmethod
    def of(cls, hit: FaceHit) -> Self:
        return cls(
            rank=hit.rank,
            face_id=hit.face_id,
            image_id=hit.image_id,
            path=hit.path,
            box=_box(hit.box),
            distance=_round(hit.distance),
            person=hit.person,
            cluster_id=hit.cluster_id,
        )


class FaceSearchAnswer(Answer):
    query: ShownPath
    box: Box = Field(description="The query face")
    results: list[FaceSearchHit]

    @classmethod
    def of(cls, found: FaceSearch) -> Self:
        return cls(
            query=found.query,
            box=_box(found.face.box),
            results=[FaceSearchHit.of(h) for h in found.results],
        )


class MovedFaces(Answer):
    cluster_id: int = Field(description="The cluster the faces are in now")
    face_ids: list[int]


class FaceStats(Answer):
    """How many faces, people and clusters a data folder holds (faces of the current model)."""

    face_count: int = Field(description="Every face found")
    usable_count: int = Field(description="Big and sharp enough to recognise and group")
    named_count: int = Field(description="Recognised or confirmed as someone")
    clustered_count: int = Field(description="In a cluster of unnamed faces")
    unprocessed_count: int = Field(description="Usable, neither named nor clustered yet")
    person_count: int
    cluster_count: int

    @classmethod
    def of(cls, counts: dict[str, int]) -> Self:
        """From ``FaceService.stats()``."""
        return cls(
            face_count=counts["faces"],
            usable_count=counts["usable"],
            named_count=counts["named"],
            clustered_count=counts["clustered"],
            unprocessed_count=counts["unprocessed"],
            person_count=counts["people"],
            cluster_count=counts["clusters"],
        )


IndexFileState = Literal[
    "current", "empty", "behind", "missing", "other version", "older format", "damaged"
]


class IndexFile(Answer):
    """An index file as its header describes it (its checksum is checked when loaded)."""

    name: str = Field(description="cnn, color, phash or face")
    state: IndexFileState = Field(description="All but current and empty: redone at next use")
    current: bool = Field(description="Reflects the catalog (or has nothing to hold)")
    vector_count: int | None
    kind: str | None = Field(description="flat, ivf or binary")
    size_bytes: int | None

    @classmethod
    def of(cls, found: IndexState) -> Self:
        return cls(
            name=found.name,
            state=_index_state.validate_python(found.state),
            current=found.current,
            vector_count=found.vectors,
            kind=found.kind,
            size_bytes=found.bytes,
        )


class PartAnswer(Answer):
    """A shared part a node uses: the catalog, the result cache or the broker."""

    part: PartName
    kind: str = Field(description="sqlite, postgresql, redis, redis-cluster; none when unset")
    where: ShownPath | None = Field(description="A path, or a URL without its password")
    answers: bool | None = Field(description="Whether it answers now; null when unset")
    error: str | None = Field(default=None, description="Why it does not answer")

    @classmethod
    def of(cls, state: PartState) -> Self:
        return cls(
            part=state.part,
            kind=state.kind,
            where=state.where,
            answers=state.answers,
            error=state.error,
        )


class StatusAnswer(Answer):
    """What a data folder holds (``lookalike status``)."""

    data_dir: ShownPath
    schema_version: int
    image_count: int
    path_count: int
    faces: FaceStats
    indexes: list[IndexFile]
    current: bool = Field(description="Every index file reflects the catalog")
    size_bytes: int = Field(description="Every file in the data folder")
    parts: list[PartAnswer] = Field(description="The catalog, cache and broker in use")

    @classmethod
    def of(cls, found: FolderStatus) -> Self:
        return cls(
            data_dir=found.data_dir,
            schema_version=found.schema_version,
            image_count=found.images,
            path_count=found.paths,
            faces=FaceStats.of(found.faces),
            indexes=[IndexFile.of(s) for s in found.indexes],
            current=found.current,
            size_bytes=found.size,
            parts=[PartAnswer.of(p) for p in found.parts],
        )


_index_state: TypeAdapter[IndexFileState] = TypeAdapter(IndexFileState)


# -- people and clusters -------------------------------------------------------------------


class Person(Answer):
    person_id: int
    name: str
    example_count: int = Field(description="Enrolment examples")
    face_count: int = Field(description="Indexed faces that are them")

    @classmethod
    def of(cls, row: PersonRow, **more: Any) -> Self:
        """The person of ``row``; ``more``: the fields a subclass adds."""
        return cls(
            person_id=row.id,
            name=row.name,
            example_count=row.examples,
            face_count=row.faces,
            **more,
        )


class People(Answer):
    people: list[Person]


class Example(Answer):
    """An enrolment example: the image it came from and the face taken from it."""

    example_id: int
    source: ShownPath = Field(description="The file name or path it was given as")
    sha256: str
    face_index: int
    box: Box
    quality: Quality

    @classmethod
    def of(cls, row: ExampleRow) -> Self:
        return cls(
            example_id=row.id,
            source=row.source,
            sha256=row.sha256,
            face_index=row.face_index,
            box=_box(row.box),
            quality=_round(row.quality, 4),
        )


class PersonDetail(Person):
    examples: list[Example]
    faces: list[StoredFace]


class Enrolled(Person):
    example_ids: list[int] = Field(description="The examples this request added")


class Cluster(Answer):
    cluster_id: int
    face_count: int
    sample_face_ids: list[int] = Field(description="A few of its faces, best quality first")

    @classmethod
    def of(cls, row: ClusterRow) -> Self:
        return cls(cluster_id=row.id, face_count=row.size, sample_face_ids=list(row.sample))


class Clusters(Answer):
    clusters: list[Cluster]


class ClusterDetail(Answer):
    cluster_id: int
    face_count: int
    faces: list[StoredFace]

    @classmethod
    def of(cls, cluster_id: int, rows: list[FaceRow]) -> Self:
        faces = [StoredFace.of(f) for f in rows]
        return cls(cluster_id=cluster_id, face_count=len(faces), faces=faces)


class MergedClusters(Answer):
    cluster_id: int = Field(description="The cluster the others were merged into")
    merged_cluster_ids: list[int] = Field(description="The clusters that are gone")
    faces_moved: int

    @classmethod
    def of(cls, cluster_ids: Sequence[int], moved: int) -> Self:
        """After merging ``cluster_ids`` into the first of them, ``moved`` faces moving."""
        into, *others = cluster_ids
        merged = [c for c in others if c != into]
        return cls(cluster_id=into, merged_cluster_ids=merged, faces_moved=moved)


class ClusterRunReport(Answer):
    """What a clustering run did, in numbers of faces (and of clusters)."""

    # Read from the engine's report as stored (a job's): a field added there later is
    # left out of the answer, not a failure to answer.
    model_config = ConfigDict(extra="ignore")

    faces: int = Field(description="Unknown faces looked at: recognised + joined + started")
    recognised: int = Field(description="Matched to a known person")
    joined: int = Field(description="Joined a cluster")
    started: int = Field(description="Started a new cluster")
    merged: int = Field(description="Clusters merged away (full re-cluster)")
    clusters: int = Field(description="Clusters now")
    people: dict[str, int] = Field(description="Faces recognised, per person's name")

    @classmethod
    def of(cls, report: ClusterReport) -> Self:
        return cls(
            faces=report.faces,
            recognised=report.recognised,
            joined=report.joined,
            started=report.started,
            merged=report.merged,
            clusters=report.clusters,
            people=dict(report.people),
        )


# -- indexing ------------------------------------------------------------------------------


class Failure(Answer):
    model_config = ConfigDict(extra="ignore")  # as ClusterRunReport

    path: ShownPath
    error: str


class IndexSummary(Answer):
    """What indexing a folder did (``lookalike index --json``, a job's report)."""

    model_config = ConfigDict(extra="ignore")  # as ClusterRunReport

    indexed: int
    unchanged: int
    duplicates: int
    removed: int
    failed: list[Failure]
    faces: int | None = Field(None, description="Faces found; null when faces are off")
    people: ClusterRunReport | None = Field(None, description="Grouping the new faces did")

    @classmethod
    def of(cls, report: IndexReport) -> Self:
        return cls(
            indexed=report.indexed,
            unchanged=report.unchanged,
            duplicates=report.duplicates,
            removed=report.removed,
            failed=[Failure(path=f.path, error=f.error) for f in report.failed],
            faces=report.faces,
            people=None if report.people is None else ClusterRunReport.of(report.people),
        )


# -- jobs ---------------------------------------------------------------------------------

JobStatus = Literal["queued", "running", "done", "failed"]
_job_status: TypeAdapter[JobStatus] = TypeAdapter(JobStatus)


class Job(Answer):
    """A background job (``GET /v1/jobs/{job_id}``, ``lookalike jobs --json``): indexing a
    folder, or a full re-cluster of the faces."""

    job_id: int
    kind: str = Field(description="index, or cluster (a full re-cluster)")
    target: ShownPath = Field(description="The folder (real path); for a cluster job: faces")
    status: JobStatus
    done: int = Field(description="Files (cluster: faces) done so far")
    total: int = Field(description="Files (cluster: faces) found so far")
    report: IndexSummary | ClusterRunReport | None = Field(
        description="Once done; for a job queued to workers, what its finished chunks did so "
        "far (cluster: what the re-cluster did)"
    )
    error: str | None = Field(description="Once failed (queued: the chunks that failed whole)")
    created_at: float = Field(description="Unix time")
    updated_at: float

    @classmethod
    def of(cls, row: JobRow) -> Self:
        return cls(
            job_id=row.id,
            kind=row.kind,
            target=row.target,
            status=_job_status.validate_python(row.status),
            done=row.done,
            total=row.total,
            report=_job_report(row),
            error=row.error,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class Jobs(Answer):
    jobs: list[Job] = Field(description="Newest first")


# -- API keys ------------------------------------------------------------------------------

_scope: TypeAdapter[Scope] = TypeAdapter(Scope)


class Key(Answer):
    """An API key as listed: never its secret (only the prefix, which finds it)."""

    key_id: int
    prefix: str
    scope: Scope
    name: str
    created_at: float = Field(description="Unix time")
    last_used_at: float | None
    revoked: bool

    @classmethod
    def of(cls, row: KeyRow, **more: Any) -> Self:
        """The key of ``row``; ``more``: the fields a subclass adds."""
        return cls(
            key_id=row.id,
            prefix=row.prefix,
            scope=_scope.validate_python(row.scope),
            name=row.name,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            revoked=row.revoked_at is not None,
            **more,
        )


class Keys(Answer):
    keys: list[Key]


class NewKey(Key):
    key: str = Field(description="The secret: shown this once, never again")


class RevokedKey(Answer):
    key_id: int
    revoked: Literal[True]


def _job_report(row: JobRow) -> IndexSummary | ClusterRunReport | None:
    """A job's stored report as its kind's answer."""
    if row.report is None:
        return None
    if row.kind == CLUSTER_JOB:
        return ClusterRunReport.model_validate(row.report)
    return IndexSummary.model_validate(row.report)
