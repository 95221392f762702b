"""`/v1/people`: enrol, list, show, rename, merge and forget people; their examples.

People are addressed by id (a name may hold any character); the service works by name,
so each route looks the person up by id first (404 if unknown).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile
from fastapi import Path as PathParam
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from lookalike.answers import Enrolled, Example, People, Person, PersonDetail, StoredFace
from lookalike.errors import NotFound, TooLarge
from lookalike.faces.read import NamedBytes
from lookalike.search.engine import Lookalike
from lookalike.serve.deps import Engine, Read, Write
from lookalike.serve.routers.faces import MAX_FACE_INDEX, MAX_ID, Crop, Id, Name, jpeg, named_upload
from lookalike.serve.routers.images import Limit, Offset, face_photo_page
from lookalike.serve.schemas import JPEG_ANSWER, FacePhotoPage
from lookalike.settings import Settings
from lookalike.store.base import PersonRow

router = APIRouter(prefix="/v1", tags=["people"])

PersonId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="A person's id")]
ExampleId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="An example's id")]
Examples = Annotated[
    list[UploadFile], File(description="Images of the person, one usable face each")
]
FaceIndex = Annotated[
    int | None,
    Form(
        ge=0,
        le=MAX_FACE_INDEX,
        description="The face to take from each image: its face_index in detect "
        "(default: each image must show exactly one usable face)",
    ),
]


def person_by_id(lk: Lookalike, person_id: int) -> PersonRow:
    found = lk.people.store.person_by_id(person_id)
    if found is None:
        raise NotFound(f"person {person_id} not found")
    return found


async def _examples(files: list[UploadFile], settings: Settings) -> list[NamedBytes]:
    if len(files) > settings.upload_max_files:
        raise TooLarge(f"{len(files)} files: at most {settings.upload_max_files} per request")
    return [await named_upload(f, settings) for f in files]


def _enrol(
    lk: Lookalike, name: str, images: list[NamedBytes], face_index: int | None, crop: bool
) -> Enrolled:
    person, ids = lk.people.enrol(name, images, face=face_index, crop=crop)
    return Enrolled.of(person, example_ids=ids)


@router.get(
    "/people", summary="Every person, with numbers of examples and faces", dependencies=[Read]
)
def list_people(lk: Engine) -> People:
    return People(people=[Person.of(p) for p in lk.people.people()])


@router.post(
    "/people",
    summary="Enrol images as examples of a person (created if new)",
    description="Each image must show exactly one usable face (or `face_index` picks one); "
    "if one does not, none is stored (422).",
    status_code=201,
    dependencies=[Write],
)
async def enrol(
    lk: Engine,
    name: Annotated[str, Form(min_length=1, max_length=1000, description="The person's name")],
    files: Examples,
    face_index: FaceIndex = None,
    crop: Crop = False,
) -> Enrolled:
    images = await _examples(files, lk.settings)
    return await run_in_threadpool(_enrol, lk, name, images, face_index, crop)


@router.get(
    "/people/{person_id}",
    summary="A person with their examples and faces",
    dependencies=[Read],
)
def get_person(lk: Engine, person_id: PersonId) -> PersonDetail:
    person = person_by_id(lk, person_id)
    return PersonDetail.of(
        person,
        examples=[Example.of(e) for e in lk.people.store.examples(person.id)],
        faces=[StoredFace.of(f) for f in lk.people.store.faces_of_person(person.id)],
    )


@router.get(
    "/people/{person_id}/images",
    summary="The images showing a person, newest first, a page at a time",
    dependencies=[Read],
)
def person_images(
    lk: Engine, person_id: PersonId, offset: Offset = 0, limit: Limit = 100
) -> FacePhotoPage:
    found = lk.people.store.images_of_person(person_by_id(lk, person_id).id, offset, limit)
    return face_photo_page(lk, found, offset, limit)


class Rename(BaseModel):
    name: Name = Field(description="The new name (409 if another person has it)")


@router.patch("/people/{person_id}", summary="Rename a person", dependencies=[Write])
def rename_person(lk: Engine, person_id: PersonId, body: Rename) -> Person:
    person = person_by_id(lk, person_id)
    return Person.of(lk.people.rename(person.name, body.name))


class MergePeople(BaseModel):
    person_ids: list[Id] = Field(
        min_length=1,
        max_length=1000,
        description="Ids of the people to merge into this one",
    )


@router.post(
    "/people/{person_id}/merge",
    summary="Make other people one with this one (their examples and faces move)",
    dependencies=[Write],
)
def merge_people(lk: Engine, person_id: PersonId, body: MergePeople) -> Person:
    person = person_by_id(lk, person_id)
    names = [person_by_id(lk, other).name for other in body.person_ids]
    return Person.of(lk.people.merge(names, person.name))


@router.delete(
    "/people/{person_id}",
    summary="Forget a person: examples deleted, their faces unknown again",
    status_code=204,
    response_class=Response,
    dependencies=[Write],
)
def remove_person(lk: Engine, person_id: PersonId) -> Response:
    lk.people.remove(person_by_id(lk, person_id).name)
    return Response(status_code=204)


@router.post(
    "/people/{person_id}/examples",
    summary="Add examples of a person",
    status_code=201,
    dependencies=[Write],
)
async def add_examples(
    lk: Engine,
    person_id: PersonId,
    files: Examples,
    face_index: FaceIndex = None,
    crop: Crop = False,
) -> Enrolled:
    person = await run_in_threadpool(person_by_id, lk, person_id)
    images = await _examples(files, lk.settings)
    return await run_in_threadpool(_enrol, lk, person.name, images, face_index, crop)


@router.delete(
    "/people/{person_id}/examples/{example_id}",
    summary="Remove one example of a person",
    status_code=204,
    response_class=Response,
    dependencies=[Write],
)
def remove_example(lk: Engine, person_id: PersonId, example_id: ExampleId) -> Response:
    lk.people.remove_example(person_by_id(lk, person_id).name, example_id)
    return Response(status_code=204)


@router.get(
    "/people/{person_id}/examples/{example_id}/thumbnail",
    summary="The aligned chip of an example's face (JPEG)",
    response_class=Response,
    responses=JPEG_ANSWER,
    dependencies=[Read],
)
def example_thumbnail(lk: Engine, person_id: PersonId, example_id: ExampleId) -> Response:
    person = person_by_id(lk, person_id)
    missing = f"{person.name} has no example {example_id}"
    if not any(e.id == example_id for e in lk.people.store.examples(person.id)):
        raise NotFound(missing)
    return jpeg(lk.people.store.example_thumb(example_id), missing)
