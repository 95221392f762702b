"""The answers only the server gives: health, uploads, pages of images, jobs.

Every other answer, shared with the command line, is a model of ``lookalike.answers``
(its naming rules hold here too).
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import Field, TypeAdapter

from lookalike.answers import Answer, Image, IndexSummary, ShownPath, StoredFace
from lookalike.store.base import JobRow

# The documented 200 answer of a route that answers a stored JPEG.
JPEG_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
        "description": "A JPEG image",
    }
}


class Health(Answer):
    status: Literal["ok"]
    schema_version: int = Field(description="The catalog's schema version")


class ImageDetail(Image):
    faces: list[StoredFace]


class Uploaded(ImageDetail):
    """One uploaded file: the image it is, and whether this request added it."""

    filename: str
    status: Literal["added", "duplicate"] = Field(
        description="added: new to the catalog; duplicate: these bytes were there already"
    )


class Uploads(Answer):
    images: list[Uploaded] = Field(description="Per file, in the order sent")


class ImagePage(Answer):
    total: int = Field(description="Images in the catalog")
    offset: int
    limit: int
    images: list[Image]


class DeletedImage(Answer):
    image_id: int
    deleted: Literal[True]
    paths: list[ShownPath] = Field(description="The paths the catalog forgot")
    files_deleted: list[ShownPath] = Field(description="The stored uploads deleted from disk")


JobStatus = Literal["queued", "running", "done", "failed"]
_job_status: TypeAdapter[JobStatus] = TypeAdapter(JobStatus)


class Job(Answer):
    job_id: int
    kind: str = Field(description="index")
    target: ShownPath = Field(description="The folder (real path)")
    status: JobStatus
    done: int = Field(description="Files done so far")
    total: int = Field(description="Files found so far")
    report: IndexSummary | None = Field(description="Once done")
    error: str | None = Field(description="Once failed")
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
            report=None if row.report is None else IndexSummary.model_validate(row.report),
            error=row.error,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class Jobs(Answer):
    jobs: list[Job] = Field(description="Newest first")
