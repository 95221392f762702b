"""`/v1/images`: upload (every file checked before any is stored), list, get, thumbnail,
delete.

Uploads are stored content-addressed under ``<data>/uploads`` and indexed like any file,
so the same bytes uploaded twice are one image ("duplicate" the second time).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, File, Path, Query, UploadFile
from fastapi.responses import Response

from lookalike.answers import Image, StoredFace
from lookalike.decode import sha256_hex
from lookalike.errors import Conflict, NotFound, TooLarge
from lookalike.search.engine import Lookalike
from lookalike.serve.deps import Engine, Read, Write
from lookalike.serve.schemas import (
    JPEG_ANSWER,
    DeletedImage,
    FacePhotoPage,
    ImageDetail,
    ImagePage,
    Uploaded,
    Uploads,
)
from lookalike.serve.uploads import (
    check_image,
    read_upload_sync,
    remove_upload,
    store_upload,
    upload_name,
)
from lookalike.sheet import load_thumbnail
from lookalike.store.base import FacePhotos

router = APIRouter(prefix="/v1", tags=["images"])

# SQLite integers are signed 64-bit: larger ids could never exist (and would not bind).
MAX_ID = 2**63 - 1
ImageId = Annotated[int, Path(ge=1, le=MAX_ID, description="An image id")]
# Paging of lists of images (the catalog's, a person's, a cluster's).
Offset = Annotated[int, Query(ge=0, le=2**62, description="Images to skip")]
Limit = Annotated[int, Query(ge=1, le=1000, description="Images per page")]


@dataclass
class _Checked:
    name: str
    sha256: str


@router.post(
    "/images",
    dependencies=[Write],
    summary="Upload images (multipart field `files`, one or more)",
    response_description="Per file, in order: the image, status (added or duplicate), faces",
)
def upload_images(
    lk: Engine,
    files: Annotated[list[UploadFile], File(description="One or more image files")],
) -> Uploads:
    """Every file is checked first (size, empty, decodable, pixel limit); only when all
    pass are they stored and indexed, so a bad file in a batch stores nothing."""
    settings = lk.settings
    if len(files) > settings.upload_max_files:
        raise TooLarge(f"{len(files)} files: at most {settings.upload_max_files} per request")
    checked: list[_Checked] = []
    for upload in files:
        name = upload_name(upload)
        data = read_upload_sync(upload, settings)
        check_image(data, name, settings)
        checked.append(_Checked(name, sha256_hex(data)))
    # "added": this request's transaction created the image (so of two workers storing the
    # same new bytes at once, one says added and the other duplicate); once per request.
    ids, added = _store_and_index(lk, files, checked)
    seen: set[str] = set()
    out: list[Uploaded] = []
    for c in checked:
        row = lk.image(ids[c.sha256])
        out.append(
            Uploaded.of(
                row,
                filename=c.name,
                status="added" if c.sha256 in added and c.sha256 not in seen else "duplicate",
                faces=_faces(lk, row.id),
            )
        )
        seen.add(c.sha256)
    return Uploads(images=out)


def _store_and_index(
    lk: Lookalike, files: list[UploadFile], checked: list[_Checked]
) -> tuple[dict[str, int], set[str]]:
    """Store the files and index them: image id per SHA-256, and the SHA-256 of the images
    this request added to the catalog."""
    paths: dict[str, str] = {}
    for upload, c in zip(files, checked, strict=True):
        if c.sha256 not in paths:
            data = read_upload_sync(upload, lk.settings)
            paths[c.sha256] = str(store_upload(data, lk.settings))
    # Twice at most: a concurrent DELETE of the same bytes may unlink a stored file
    # between storing and indexing; storing again brings it back.
    added: set[str] = set()
    for attempt in range(2):
        report = lk.index(list(paths.values()), progress=False)
        added |= report.added
        ids: dict[str, int] = {}
        for sha in paths:
            row = lk.catalog.image_by_sha(sha)
            if row is not None:
                ids[sha] = row.id
        if len(ids) == len(paths):
            return ids, added
        if attempt == 0:
            for upload, c in zip(files, checked, strict=True):
                if c.sha256 not in ids:
                    store_upload(read_upload_sync(upload, lk.settings), lk.settings)
    failed = "; ".join(f"{f.path}: {f.error}" for f in report.failed)
    raise Conflict(f"the upload could not be indexed ({failed or 'removed meanwhile'}); retry")


@router.get("/images", dependencies=[Read], summary="A page of indexed images, by id")
def list_images(
    lk: Engine,
    offset: Offset = 0,
    limit: Limit = 100,
) -> ImagePage:
    rows = lk.catalog.image_page(offset, limit)
    return ImagePage(
        total=lk.catalog.count_images(),
        offset=offset,
        limit=limit,
        images=[Image.of(r) for r in rows],
    )


@router.get("/images/{image_id}", dependencies=[Read], summary="An image: metadata and faces")
def get_image(lk: Engine, image_id: ImageId) -> ImageDetail:
    row = lk.image(image_id)
    return ImageDetail.of(row, faces=_faces(lk, row.id))


def face_photo_page(lk: Lookalike, found: FacePhotos, offset: int, limit: int) -> FacePhotoPage:
    """The answer for a page of the images showing a person or a cluster."""
    rows = lk.catalog.images([image_id for image_id, _ in found.images])
    return FacePhotoPage.of(found, rows, offset, limit)


def _faces(lk: Lookalike, image_id: int) -> list[StoredFace]:
    """The stored faces of an image, in detector order."""
    return [StoredFace.of(f) for f in lk.catalog.faces.faces_of_image(image_id)]


@router.get(
    "/images/{image_id}/thumbnail",
    dependencies=[Read],
    summary="A JPEG thumbnail, its longer side `size` pixels",
    response_class=Response,
    responses=JPEG_ANSWER,
)
def thumbnail(
    lk: Engine,
    image_id: ImageId,
    size: Annotated[int, Query(ge=16, le=1024, description="Longer side in pixels")] = 256,
) -> Response:
    row = lk.image(image_id)
    for path in row.paths:
        thumb = load_thumbnail(path, size, max_pixels=lk.settings.max_image_pixels)
        if thumb is not None:
            buf = io.BytesIO()
            thumb.save(buf, "JPEG", quality=85)
            return Response(buf.getvalue(), media_type="image/jpeg")
    raise NotFound(f"image {image_id}: none of its files can be read any more")


@router.delete(
    "/images/{image_id}",
    dependencies=[Write],
    summary="Forget an image (every path) and delete its stored upload",
)
def delete_image(lk: Engine, image_id: ImageId) -> DeletedImage:
    """Removes the image's paths from the catalog (faces and vectors go with it) and the
    uploaded file, if any; files in indexed folders are left on disk."""
    row = lk.image(image_id)
    lk.catalog.remove_paths(row.paths)
    deleted = [p for p in row.paths if remove_upload(p, lk.settings)]
    return DeletedImage(image_id=row.id, deleted=True, paths=list(row.paths), files_deleted=deleted)
