"""The answers only the server gives: health, uploads, pages of images.

Every other answer, shared with the command line, is a model of ``lookalike.answers``
(its naming rules hold here too).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from lookalike.answers import Answer, Image, ShownPath, StoredFace

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
