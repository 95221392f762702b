"""The FastAPI application: one engine per process, JSON errors, API keys, the web page.

Routes are plain ``def`` functions wherever they decode, embed or touch the catalog:
FastAPI runs those in its thread pool, so the event loop never blocks. Several worker
processes may serve one data folder: SQLite serialises their writes (WAL, busy timeout)
and each search first brings its vector index up to the catalog's generation, so a
process sees what the others added.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from lookalike.search.engine import Lookalike
from lookalike.serve import errors, metrics
from lookalike.serve.guard import Guard, host_policy
from lookalike.serve.routers import clusters, faces, images, jobs, keys, people, search, system
from lookalike.settings import Settings, get_settings

# Set by ``lookalike serve`` for its worker processes (uvicorn imports the app by name).
AUTH_ENV = "LOOKALIKE_SERVE_AUTH"
HOST_ENV = "LOOKALIKE_SERVE_HOST"


def _version() -> str:
    try:
        return version("lookalike")
    except PackageNotFoundError:
        return "0"


def create_app(
    settings: Settings | None = None, *, auth: bool = True, host: str | None = None
) -> FastAPI:
    """The app for one data folder. ``auth=False`` admits every request as admin: only
    for a server listening on loopback (``lookalike serve --no-auth`` checks that).
    ``host``: the address the server listens on; on loopback (or without auth) only
    loopback names and ``settings.allowed_hosts`` are accepted in the Host header."""
    settings = settings or get_settings()
    hosts = host_policy(settings.allowed_hosts, bound=host, auth=auth)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = Lookalike(settings)
        engine.cache.on_event = metrics.cache_event
        app.state.engine = engine
        try:
            yield
        finally:
            jobs.shutdown(app)
            engine.close()

    app = FastAPI(
        title="lookalike",
        version=_version(),
        summary="Offline image search and face recognition",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.auth = auth
    errors.install(app)
    # Multipart framing aside, a request carries at most upload_max_files full files.
    limit = settings.upload_max_bytes * settings.upload_max_files + 1024 * 1024
    app.add_middleware(Guard, auth=auth, max_body=limit, hosts=hosts)
    app.middleware("http")(metrics.middleware)
    for module in (system, images, search, faces, people, clusters, jobs, keys):
        app.include_router(module.router, responses=errors.RESPONSES)

    web = resources.files("lookalike.serve") / "web"
    app.mount("/static", StaticFiles(directory=str(web)), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((web / "index.html").read_text(encoding="utf-8"))

    return app


def create_app_from_env() -> FastAPI:
    """For uvicorn's workers (``factory=True``): settings from the environment."""
    # Settings() afresh, not get_settings(): that one may have been cached by the CLI in
    # this very process before it set LOOKALIKE_DATA_DIR for the workers.
    auth = os.environ.get(AUTH_ENV, "1") != "0"
    return create_app(Settings(), auth=auth, host=os.environ.get(HOST_ENV))
