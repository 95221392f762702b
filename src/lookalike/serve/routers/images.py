"""`/v1/images`: upload (every file checked before any is stored), list, get, thumbnail,
delete.

Uploads are stored content-addressed under ``<data>/uploads`` and indexed like any file,
so the same bytes uploaded twice are one image ("duplicate" the second time).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, File, Header, Path, Query, UploadFile
from fastapi.responses import Response

from lookalike.answers import Image, StoredFace
from lookalike.decode import sha256_hex
from lookalike.errors import BadInput, Conflict, TooLarge
from lookalike.files import unshown
from lookalike.search.engine import Lookalike
from lookalike.serve.deps import Engine, Read, Write
from lookalike.serve.schemas import (
    JPEG_ANSWER,
    DeletedImage,
    FacePhotoPage,
    Folder,
    Folders,
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
from lookalike.store.base import FacePhotos
from lookalike.thumbnails import (
    CACHE_CONTROL,
    etag,
    forget_thumbnails,
    matches,
    thumbnail_jpeg,
)

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


_FOLDER_DOC = "Only images with a path in this folder (an absolute path; subfolders included)"


def _folder(lk: Lookalike, folder: str | None) -> str | None:
    """The folder filter, normalised (no trailing slash); BadInput (422) unless absolute.

    A folder whose name is not UTF-8 is listed (``/v1/folders``) with ``\\xNN`` escapes;
    given back so, it is that folder, unless a folder named so exists.
    """
    if folder is None:
        return None
    if not os.path.isabs(folder) or "\0" in folder:
        raise BadInput(f"folder must be an absolute path, not {folder!r}")
    where = os.path.normpath(folder)
    raw = unshown(where)
    if raw is not None and not lk.catalog.count_images(folder=where):
        return raw
    return where


@router.get("/images", dependencies=[Read], summary="A page of indexed images")
def list_images(
    lk: Engine,
    offset: Offset = 0,
    limit: Limit = 100,
    order: Annotated[
        Literal["oldest", "newest"],
        Query(description="oldest (default): in the order added; newest: last added first"),
    ] = "oldest",
    folder: Annotated[str | None, Query(max_length=4096, description=_FOLDER_DOC)] = None,
    after: Annotated[
        int | None,
        Query(ge=1, le=MAX_ID, description="Only the images after this image id in the order"),
    ] = None,
) -> ImagePage:
    """``total`` counts the images of the folder (or catalog), whatever ``after`` leaves out."""
    where = _folder(lk, folder)
    newest = order == "newest"
    rows = lk.catalog.image_page(offset, limit, newest=newest, folder=where, after=after)
    return ImagePage(
        total=lk.catalog.count_images(folder=where),
        offset=offset,
        limit=limit,
        images=[Image.of(r) for r in rows],
    )


@router.get(
    "/folders",
    dependencies=[Read],
    summary="The folders holding indexed images, with the images under each",
)
def list_folders(lk: Engine) -> Folders:
    return Folders(folders=[Folder(path=path, image_count=n) for path, n in lk.catalog.folders()])


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
    responses={**JPEG_ANSWER, 304: {"description": "Not modified: the ETag sent is current"}},
)
def thumbnail(
    lk: Engine,
    image_id: ImageId,
    size: Annotated[int, Query(ge=16, le=1024, description="Longer side in pixels")] = 256,
    if_none_match: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """Sent with an ETag (the image's SHA-256 and the size) and ``Cache-Control: private,
    no-cache``: a request naming that ETag in ``If-None-Match`` is answered 304, unread."""
    row = lk.image(image_id)
    tag = etag(row, size)
    headers = {"ETag": tag, "Cache-Control": CACHE_CONTROL}
    if matches(if_none_match, tag):
        return Response(status_code=304, headers=headers)
    data = thumbnail_jpeg(row, size, lk.settings)
    return Response(data, media_type="image/jpeg", headers=headers)


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
    forget_thumbnails(row.sha256, lk.settings)
    return DeletedImage(image_id=row.id, deleted=True, paths=list(row.paths), files_deleted=deleted)
