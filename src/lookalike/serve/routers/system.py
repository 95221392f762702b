"""``/healthz`` (no key) and ``/metrics`` (Prometheus text; a read key)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse

from lookalike.serve import metrics
from lookalike.serve.deps import Engine, Read
from lookalike.serve.schemas import Health

router = APIRouter(tags=["system"])


@router.get("/healthz", summary="Liveness: the server answers and its catalog opens")
def healthz(lk: Engine) -> Health:
    return Health(status="ok", schema_version=lk.catalog.schema_version())


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    dependencies=[Read],
    response_class=PlainTextResponse,
)
def prometheus(lk: Engine) -> Response:
    body, content_type = metrics.render(lk)
    return Response(body, media_type=content_type)
