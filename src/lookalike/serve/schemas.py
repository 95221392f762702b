"""The answers only the server gives: health, uploads, pages of images (of the catalog, of a
person, of a cluster).

Every other answer, shared with the command line, is a model of ``lookalike.answers``
(its naming rules hold here too).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import Field

from lookalike.answers import Answer, Image, ShownPath, StoredFace
from lookalike.store.base import FacePhotos, ImageRow

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
    total: int = Field(description="Images in the catalog (in the folder asked for)")
    offset: int
    limit: int
    images: list[Image]


class Folder(Answer):
    path: ShownPath
    image_count: int = Field(description="Images with a path in it or in its subfolders")


class Folders(Answer):
    folders: list[Folder] = Field(description="Each folder directly holding an indexed path")


class FacePhoto(Image):
    """An image showing a person or a cluster, and which of their faces are in it."""

    face_ids: list[int] = Field(description="Their faces in this image, in detector order")


class FacePhotoPage(Answer):
    total: int = Field(description="Images showing them")
    offset: int
    limit: int
    images: list[FacePhoto] = Field(description="Newest (highest image_id) first")

    @classmethod
    def of(cls, found: FacePhotos, rows: Mapping[int, ImageRow], offset: int, limit: int) -> Self:
        """The page ``found``, with the images of ``rows`` (one deleted meanwhile is left out)."""
        images = [
            FacePhoto.of(rows[image_id], face_ids=list(face_ids))
            for image_id, face_ids in found.images
            if image_id in rows
        ]
        return cls(total=found.total, offset=offset, limit=limit, images=images)


class DeletedImage(Answer):
    image_id: int
    deleted: Literal[True]
    paths: list[ShownPath] = Field(description="The paths the catalog forgot")
    files_deleted: list[ShownPath] = Field(description="The stored uploads deleted from disk")
