"""`/v1/faces`: detect, identify, verify and search faces in uploads; indexed faces by id.

Routes taking uploads are ``async``: they read the multipart files on the event loop, then
run decoding and inference in the thread pool. The others are plain ``def`` (FastAPI's
thread pool). The answers are ``lookalike.answers`` models.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile
from fastapi import Path as PathParam
from pydantic import BaseModel, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from lookalike.answers import (
    Detected,
    FaceSearchAnswer,
    IdentifiedFaces,
    MovedFaces,
    Person,
    StoredFace,
    VerifyAnswer,
)
from lookalike.errors import BadInput, NotFound
from lookalike.faces import Face
from lookalike.faces.config import LandmarkCount
from lookalike.faces.read import NamedBytes, find_faces
from lookalike.search.engine import Lookalike
from lookalike.serve.deps import Engine, Read, Write
from lookalike.serve.schemas import JPEG_ANSWER
from lookalike.serve.uploads import read_upload
from lookalike.settings import Settings

router = APIRouter(prefix="/v1", tags=["faces"])

# SQLite's integer range: a larger id is malformed (422), not merely unknown (404).
MAX_ID = 2**63 - 1
# Faces a query image may hold for ``face`` to pick one: a bound, not a real limit.
MAX_FACE_INDEX = 10_000


Id = Annotated[int, Field(ge=1, le=MAX_ID)]
# A person's name as given; the service trims it and enforces its own length limit.
Name = Annotated[str, StringConstraints(min_length=1, max_length=1000)]
FaceId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="A face's id")]
Threshold = Annotated[
    float | None,
    Form(ge=0, allow_inf_nan=False, description="Same person at or below this distance"),
]
Crop = Annotated[bool, Form(description="The images are face crops: no detector")]


async def named_upload(upload: UploadFile, settings: Settings, label: str = "") -> NamedBytes:
    """An upload's bytes (size-checked), named by ``label`` or its filename in messages."""
    data = await read_upload(upload, settings)
    return NamedBytes(data, label or (upload.filename or "upload")[:200])


def jpeg(data: bytes | None, missing: str) -> Response:
    """A stored JPEG as the response; NotFound(``missing``) if there is none."""
    if data is None:
        raise NotFound(missing)
    return Response(data, media_type="image/jpeg")


def _detect(
    lk: Lookalike, image: NamedBytes, landmarks: LandmarkCount, crop: bool, embeddings: bool
) -> list[Face]:
    decoded = lk.people.decode(image)
    return find_faces(decoded, lk.settings, landmarks=landmarks, crop=crop, embeddings=embeddings)


@router.post(
    "/faces/detect",
    summary="Detect the faces in an image: boxes, scores, quality, landmarks",
    dependencies=[Read],
)
async def detect(
    lk: Engine,
    file: Annotated[UploadFile, File(description="The image")],
    landmarks: Annotated[int, Form(description="Landmark points per face: 5 or 68")] = 5,
    crop: Crop = False,
    embeddings: Annotated[bool, Form(description="Also each face's 128-d embedding")] = False,
) -> Detected:
    if landmarks not in (5, 68):
        raise BadInput(f"landmarks must be 5 or 68, not {landmarks}")
    image = await named_upload(file, lk.settings)
    points: LandmarkCount = 5 if landmarks == 5 else 68
    found = await run_in_threadpool(_detect, lk, image, points, crop, embeddings)
    return Detected.of(image.name, found)


@router.post(
    "/faces/identify",
    summary="Name every face in an image, or say unknown",
    dependencies=[Read],
)
async def identify(
    lk: Engine,
    file: Annotated[UploadFile, File(description="The image")],
    threshold: Threshold = None,
    crop: Crop = False,
) -> IdentifiedFaces:
    image = await named_upload(file, lk.settings)
    found = await run_in_threadpool(lk.people.identify, image, threshold=threshold, crop=crop)
    return IdentifiedFaces.of(image.name, found)


@router.post(
    "/faces/verify",
    summary="Whether the main faces of two images are the same person",
    dependencies=[Read],
)
async def verify(
    lk: Engine,
    file_a: Annotated[UploadFile, File(description="The first image")],
    file_b: Annotated[UploadFile, File(description="The second image")],
    threshold: Threshold = None,
    crop: Crop = False,
) -> VerifyAnswer:
    # Named by field too: two uploads of one page may share a filename ("blob").
    a = await named_upload(file_a, lk.settings, f"file_a ({file_a.filename or 'upload'})"[:200])
    b = await named_upload(file_b, lk.settings, f"file_b ({file_b.filename or 'upload'})"[:200])
    result = await run_in_threadpool(lk.people.verify, a, b, threshold=threshold, crop=crop)
    return VerifyAnswer.of(result)


@router.post(
    "/faces/search",
    summary="Indexed faces like the main face of an image (or its face `face_index`)",
    dependencies=[Read],
)
async def search(
    lk: Engine,
    file: Annotated[UploadFile, File(description="The image")],
    k: Annotated[int, Form(ge=1, le=1000, description="Most faces returned")] = 10,
    face_index: Annotated[
        int | None,
        Form(ge=0, le=MAX_FACE_INDEX, description="Which face: its face_index in detect"),
    ] = None,
    max_distance: Annotated[
        float | None,
        Form(ge=0, allow_inf_nan=False, description="Farthest face returned"),
    ] = None,
    crop: Crop = False,
) -> FaceSearchAnswer:
    image = await named_upload(file, lk.settings)
    result = await run_in_threadpool(
        lk.people.search, image, k=k, face=face_index, max_distance=max_distance, crop=crop
    )
    return FaceSearchAnswer.of(result)


@router.get("/faces/{face_id}", summary="An indexed face", dependencies=[Read])
def get_face(lk: Engine, face_id: FaceId) -> StoredFace:
    row = lk.people.store.faces([face_id]).get(face_id)
    if row is None:
        raise NotFound(f"face {face_id} not found")
    return StoredFace.of(row)


@router.get(
    "/faces/{face_id}/thumbnail",
    summary="The aligned chip of an indexed face (JPEG)",
    dependencies=[Read],
    response_class=Response,
    responses=JPEG_ANSWER,
)
def face_thumbnail(lk: Engine, face_id: FaceId) -> Response:
    # The stored JPEG as is: no decode and re-encode.
    return jpeg(lk.people.store.face_thumb(face_id), f"face {face_id} not found")


class MoveFace(BaseModel):
    cluster_id: Id | None = Field(description="An existing cluster, or null for a new one")


@router.post(
    "/faces/{face_id}/move",
    summary="Move a face to another cluster or a new one (it loses any name)",
    dependencies=[Write],
)
def move_face(lk: Engine, face_id: FaceId, body: MoveFace) -> MovedFaces:
    cluster = lk.people.move_faces([face_id], body.cluster_id)
    return MovedFaces(cluster_id=cluster, face_ids=[face_id])


class MoveFaces(MoveFace):
    face_ids: list[Id] = Field(min_length=1, max_length=1000, description="Faces to move")


@router.post(
    "/faces/move",
    summary="Move several faces to a cluster, or together to a new one (they lose any name)",
    dependencies=[Write],
)
def move_faces(lk: Engine, body: MoveFaces) -> MovedFaces:
    """One call for what the web page's undo puts back (a merged or named cluster's faces)."""
    face_ids = list(dict.fromkeys(body.face_ids))
    cluster = lk.people.move_faces(face_ids, body.cluster_id)
    return MovedFaces(cluster_id=cluster, face_ids=face_ids)


class AssignFace(BaseModel):
    person: Name = Field(description="The person's name (created if new)")


@router.post(
    "/faces/{face_id}/assign",
    summary="Confirm a face as someone: it joins their known faces",
    dependencies=[Write],
)
def assign_face(lk: Engine, face_id: FaceId, body: AssignFace) -> Person:
    if not lk.people.store.faces([face_id]):
        raise NotFound(f"face {face_id} not found")
    return Person.of(lk.people.assign([face_id], body.person))
