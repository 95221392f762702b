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
from lookalike.search.regions import parse_box
from lookalike.search.rerank import Measure, higher_is_better
from lookalike.serve.deps import Engine, Read
from lookalike.serve.routers.images import ImageId
from lookalike.serve.uploads import read_upload_sync, upload_name

router = APIRouter(prefix="/v1", tags=["search"])

MAX_K = 1000
_K_DOC = f"Results wanted, 1 to {MAX_K}"
_DESC_DOC = "cnn (default), color or phash"
_MEASURE_DOC = (
    "cosine (default), euclidean (a distance: lower is closer) or pearson; phash: hamming only"
)
_EXPAND_DOC = "Alpha-query expansion (default: the server's query_expansion setting)"
_BOX_DOC = "Search what is inside this box of the query: l,t,r,b in pixels of the upright photo"
# Four integers separated by commas (spaces allowed); parse_box checks their order.
_BOX_PATTERN = r"^\s*-?\d{1,9}\s*(,\s*-?\d{1,9}\s*){3}$"


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
    measure: Annotated[Measure | None, Form(description=_MEASURE_DOC)] = None,
    expand: Annotated[bool | None, Form(description=_EXPAND_DOC)] = None,
    box: Annotated[
        str | None, Form(pattern=_BOX_PATTERN, max_length=80, description=_BOX_DOC)
    ] = None,
) -> SearchAnswer:
    name = _descriptor(lk, descriptor)
    lk.search_options(name, measure, expand)  # refused before the upload is read
    region = None if box is None else parse_box(box)
    data = read_upload_sync(file, lk.settings)
    label = upload_name(file)
    try:
        result = lk.search_one(
            data, k=k, descriptor=name, measure=measure, expand=expand, box=region
        )
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
    measure: Annotated[Measure | None, Query(description=_MEASURE_DOC)] = None,
    expand: Annotated[bool | None, Query(description=_EXPAND_DOC)] = None,
) -> SearchAnswer:
    """Searches with the image's stored vector: nothing is decoded or embedded again."""
    name = _descriptor(lk, descriptor)
    options = lk.search_options(name, measure, expand)
    row = lk.image(image_id)
    desc = lk.descriptor(name)
    start = time.perf_counter()
    ids, raw = lk.catalog.vectors_for(desc.name, desc.version, [row.id])
    if len(ids) == 0:
        raise NotFound(
            f"image {row.id} has no {desc.name} vector of version {desc.version}: "
            "index its folder again"
        )
    rows = rows_as(desc, raw)
    hits = lk.search_vectors(rows, k=k, descriptor=desc.name, measure=measure, expand=expand)
    # The image itself leads, as close as can be, whatever rounding or equal scores did.
    closest = 1.0 if higher_is_better(options.measure) else 0.0
    own = Hit(1, row.paths[0] if row.paths else "", row.sha256, closest, row.id)
    ranked = [own, *(h for h in hits if h.image_id != row.id)][:k]
    for rank, hit in enumerate(ranked, start=1):
        hit.rank = rank
    timing = {"search": (time.perf_counter() - start) * 1e3}
    result = SearchResult.ranked(f"image:{row.id}", ranked, timing, options)
    return SearchAnswer.of(result, desc.name)


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
