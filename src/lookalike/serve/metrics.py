"""Prometheus metrics: requests by route and status, latency, the result cache's hits,
misses and errors (by kind: ``vectors``, ``answers``), and the collection's size.

With several worker processes (``lookalike serve --workers N``) the CLI points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before the workers start, and ``/metrics``
aggregates every worker's counters (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.routing import Match

from lookalike.cache import ANSWERS, VECTORS
from lookalike.search.engine import Lookalike

REQUESTS = Counter(
    "lookalike_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
LATENCY = Histogram(
    "lookalike_http_request_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

_CACHE = {
    outcome: Counter(f"lookalike_cache_{outcome}_total", doc, ["kind"])
    for outcome, doc in (
        ("hits", "Result cache lookups answered from the cache"),
        ("misses", "Result cache lookups that found nothing usable (computed, then stored)"),
        (
            "errors",
            "Result cache lookups or writes that failed: the cache did not answer in "
            "time or held an unreadable entry (computed locally)",
        ),
    )
}
for _counter in _CACHE.values():
    for _kind in (VECTORS, ANSWERS):
        _counter.labels(_kind)  # present at 0 from the start


def cache_event(kind: str, outcome: str) -> None:
    """Count one result cache event (``ResultCache.on_event``): outcome hit, miss or error."""
    _CACHE[{"hit": "hits", "miss": "misses", "error": "errors"}[outcome]].labels(kind).inc()


def _route(request: Request) -> str:
    """The route template (``/v1/images/{image_id}``), never the raw path (bounded labels)."""
    route = request.scope.get("route")  # set by the router on the shared scope
    if route is not None:
        return str(getattr(route, "path", "other"))
    for candidate in request.app.router.routes:
        match, _ = candidate.matches(request.scope)
        if match == Match.FULL:
            return str(getattr(candidate, "path", "other"))
    return "unmatched"


async def middleware(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    start = time.perf_counter()
    response = await call_next(request)
    route = _route(request)
    REQUESTS.labels(request.method, route, str(response.status_code)).inc()
    LATENCY.labels(request.method, route).observe(time.perf_counter() - start)
    return response


def render(engine: Lookalike) -> tuple[bytes, str]:
    """The metrics page (body, content type)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest()
    stats = engine.people.stats()
    lines = [
        "# HELP lookalike_images Images in the catalog",
        "# TYPE lookalike_images gauge",
        f"lookalike_images {engine.catalog.count_images()}",
        "# HELP lookalike_faces Faces stored, by state",
        "# TYPE lookalike_faces gauge",
        *(f'lookalike_faces{{state="{k}"}} {v}' for k, v in sorted(stats.items())),
    ]
    return body + ("\n".join(lines) + "\n").encode(), CONTENT_TYPE_LATEST
