"""`/v1/search` (by an uploaded image), `/v1/images/{id}/similar` (by an indexed one) and
`/v1/duplicates`.

Every search first brings the descriptor's vector index up to the catalog's generation,
so images added by another worker process are found.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile

from lookalike.answers import Duplicates, SearchAnswer
from lookalike.describe.base import descriptor_names
from lookalike.errors import BadInput, ImageError, NotFound
from lookalike.index.manager import rows_as
from lookalike.search.engine import Hit, Lookalike, SearchResult
from lookalike.serve.deps import Engine, Read
from lookalike.serve.routers.images import ImageId
from lookalike.serve.uploads import read_upload_sync, upload_name

router = APIRouter(prefix="/v1", tags=["search"])

MAX_K = 1000
_K_DOC = f"Results wanted, 1 to {MAX_K}"
_DESC_DOC = "cnn (default), color or phash"


def _descriptor(lk: Lookalike, name: str | None) -> str:
    """The descriptor's name, checked against the registry (BadInput, 422, if unknown)."""
    chosen = name or lk.settings.default_descriptor
    names = descriptor_names()
    if chosen not in names:
        raise BadInput(f"descriptor must be one of {', '.join(names)}, not {chosen!r}")
    return chosen


@router.post("/search", dependencies=[Read], summary="The images most like an uploaded one")
def search_upload(
    lk: Engine,
    file: Annotated[UploadFile, File(description="The query image")],
    k: Annotated[int, Form(ge=1, le=MAX_K, description=_K_DOC)] = 10,
    descriptor: Annotated[str | None, Form(description=_DESC_DOC)] = None,
) -> SearchAnswer:
    name = _descriptor(lk, descriptor)
    data = read_upload_sync(file, lk.settings)
    label = upload_name(file)
    try:
        result = lk.search_one(data, k=k, descriptor=name)
    except ImageError as exc:  # name the upload, not "<bytes>"
        raise type(exc)(label, exc.reason) from None
    result.query = label
    return SearchAnswer.of(result, name)


@router.get(
    "/images/{image_id}/similar",
    dependencies=[Read],
    summary="The images most like an indexed one (itself first)",
)
def similar(
    lk: Engine,
    image_id: ImageId,
    k: Annotated[int, Query(ge=1, le=MAX_K, description=_K_DOC)] = 10,
    descriptor: Annotated[str | None, Query(description=_DESC_DOC)] = None,
) -> SearchAnswer:
    """Searches with the image's stored vector: nothing is decoded or embedded again."""
    name = _descriptor(lk, descriptor)
    row = lk.image(image_id)
    desc = lk.descriptor(name)
    start = time.perf_counter()
    ids, raw = lk.catalog.vectors_for(desc.name, desc.version, [row.id])
    if len(ids) == 0:
        raise NotFound(
            f"image {row.id} has no {desc.name} vector of version {desc.version}: "
            "index its folder again"
        )
    hits = lk.search_vectors(rows_as(desc, raw), k=k, descriptor=desc.name)
    # The image itself leads with score 1, whatever rounding or equal scores did.
    own = Hit(1, row.paths[0] if row.paths else "", row.sha256, 1.0, row.id)
    ranked = [own, *(h for h in hits if h.image_id != row.id)][:k]
    for rank, hit in enumerate(ranked, start=1):
        hit.rank = rank
    timing = {"search": (time.perf_counter() - start) * 1e3}
    return SearchAnswer.of(SearchResult(f"image:{row.id}", ranked, timing), desc.name)


@router.get(
    "/duplicates",
    dependencies=[Read],
    summary="Exact duplicates, edited copies, shots of one scene",
)
def duplicates(
    lk: Engine,
    threshold: Annotated[
        float | None,
        Query(ge=0.0, le=1.0, description="cnn cosine for near-duplicates (default 0.84)"),
    ] = None,
    verify: Annotated[
        bool | None,
        Query(
            description="Verify pairs on the pixels, telling edited copies (near) from shots "
            "of one scene (scenes); default: the duplicate_verify setting (on)"
        ),
    ] = None,
) -> Duplicates:
    return Duplicates.of(lk.duplicates(threshold, verify=verify))
