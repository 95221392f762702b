"""`/v1/jobs`: index a server-side folder in the background, with progress and a report.

Only folders inside ``settings.allowed_roots`` are accepted: a path with a ``..``
component is refused, and the real path (symlinks resolved) must lie inside a root's
real path. With a broker configured, a job is split into chunks that ``lookalike worker``
processes take (:mod:`lookalike.queue`); without, it runs in a thread of the process that
accepted it (one at a time). Either way its state is kept in the catalog, so every server
process can report on it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from lookalike.answers import CLUSTER_JOB, IndexSummary, Job, Jobs
from lookalike.errors import BadInput, Forbidden, LookalikeError, NotFound
from lookalike.files import is_under_any
from lookalike.queue.progress import is_queued, queued_view
from lookalike.search.engine import Lookalike
from lookalike.serve.deps import Admin, Caller, Engine, require
from lookalike.serve.keys import allows
from lookalike.settings import Settings
from lookalike.store.base import JobRow, ServiceStore

router = APIRouter(prefix="/v1", tags=["jobs"])
log = logging.getLogger("lookalike.serve")

# Progress is written to the catalog at most this often (each write is a transaction).
_PROGRESS_EVERY_S = 0.5
_STOPPED = "the server stopped; run the job again to resume (committed work is kept)"


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(
        min_length=1,
        max_length=4096,
        description="An absolute folder path inside one of the server's allowed roots",
        examples=["/srv/photos/2024"],
    )


def allowed_folder(path: str, settings: Settings) -> str:
    """The real path of ``path`` if it is a folder inside an allowed root.

    BadPath (400) for a relative path or a ``..`` component, Forbidden (403) outside the
    roots (symlinks resolved), NotFound (404) if missing, BadPath if not a folder.
    """
    if "\x00" in path:
        raise BadPath("a path cannot contain a NUL character")
    if not os.path.isabs(path):
        raise BadPath(f"{path!r} is not an absolute path")
    if ".." in path.replace("\\", "/").split("/"):
        raise BadPath(f"{path!r} has a '..' component")
    if not settings.allowed_roots:
        raise Forbidden("no allowed roots are configured (LOOKALIKE_ALLOWED_ROOTS)")
    real = os.path.realpath(path)
    roots = [os.path.realpath(r) for r in settings.allowed_roots]
    if not is_under_any(real, roots):
        raise Forbidden(f"{path!r} is not inside an allowed root")
    if not os.path.exists(real):
        raise NotFound(f"{path!r} does not exist")
    if not os.path.isdir(real):
        raise BadPath(f"{path!r} is not a folder")
    return real


class BadPath(BadInput):
    """A job path that is malformed rather than merely forbidden."""

    status = 400
    code = "bad_path"


@dataclass
class _Runner:
    """This process's job thread, and what shutdown needs to stop it."""

    pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="lookalike-job")
    )
    stopping: threading.Event = field(default_factory=threading.Event)
    queued: dict[int, Future[None]] = field(default_factory=dict)


_runner_lock = threading.Lock()
# Each process touches its queued and running jobs this often; a job untouched for
# STALE_S belonged to a process that died, and is reported failed.
_HEARTBEAT_S = 30.0
STALE_S = 300.0
_STALE = "its server process stopped without finishing it; run the job again to resume"


def _runner(app: FastAPI) -> _Runner:
    with _runner_lock:
        found: _Runner | None = getattr(app.state, "job_runner", None)
        if found is None:
            found = _Runner()
            app.state.job_runner = found
            store = app.state.engine.catalog.service
            threading.Thread(
                target=_heartbeat, args=(found, store), name="lookalike-job-heartbeat", daemon=True
            ).start()
        return found


def _heartbeat(runner: _Runner, store: ServiceStore) -> None:
    while not runner.stopping.wait(_HEARTBEAT_S):
        for job_id in list(runner.queued):
            try:
                store.update_job(job_id)  # updated_at only
            except Exception:  # the catalog is closing
                return


def _fresh(store: ServiceStore, job: JobRow) -> JobRow:
    """``job`` as it stands: a queued job's progress and report from its chunks (workers
    take them whenever they can: no staleness rule); a thread's job marked failed first if
    its process died (no heartbeat for STALE_S)."""
    if is_queued(store, job):
        return queued_view(store, job)
    if job.status in ("queued", "running") and time.time() - job.updated_at > STALE_S:
        store.update_job(job.id, status="failed", error=_STALE)
        return store.job(job.id) or job
    return job


class _Stop(Exception):
    """Raised from the progress callback to end a job when the server stops."""


# A job's work: called with the progress callback, returns the job's report.
Work = Callable[[Callable[[int, int], None]], dict[str, object]]


def _run(lk: Lookalike, job_id: int, work: Work, stopping: threading.Event) -> None:
    store = lk.catalog.service
    if stopping.is_set():
        store.update_job(job_id, status="failed", error=_STOPPED)
        return
    store.update_job(job_id, status="running")
    last = 0.0
    counts = [0, 0]

    def progress(done: int, total: int) -> None:
        nonlocal last
        if stopping.is_set():
            raise _Stop
        counts[:] = [done, total]
        now = time.monotonic()
        if now - last >= _PROGRESS_EVERY_S:
            last = now
            store.update_job(job_id, done=done, total=total)

    try:
        report = work(progress)
    except _Stop:
        _finish(store, job_id, "failed", counts, error=_STOPPED)
    except LookalikeError as exc:
        _finish(store, job_id, "failed", counts, error=exc.message)
    except Exception as exc:
        log.exception("job %d failed", job_id)
        _finish(store, job_id, "failed", counts, error=f"{type(exc).__name__}: {exc}")
    else:
        _finish(store, job_id, "done", counts, report=report)


def start_job(request: Request, lk: Lookalike, kind: str, target: str, work: Work) -> Job:
    """Record a job and run ``work`` in this process's job thread (one job at a time);
    returns the job as it stands."""
    store = lk.catalog.service
    job = store.add_job(kind, target)
    runner = _runner(request.app)
    if runner.stopping.is_set():
        _finish(store, job.id, "failed", [0, 0], error=_STOPPED)
    else:
        future = runner.pool.submit(_run, lk, job.id, work, runner.stopping)
        runner.queued[job.id] = future
        future.add_done_callback(lambda _: runner.queued.pop(job.id, None))
    found = store.job(job.id)
    return Job.of(found or job)


def _finish(
    store: ServiceStore,
    job_id: int,
    status: str,
    counts: list[int],
    *,
    report: dict[str, object] | None = None,
    error: str | None = None,
) -> None:
    try:
        store.update_job(
            job_id, status=status, done=counts[0], total=counts[1], report=report, error=error
        )
    except Exception:  # the catalog is closing: nothing left to record it in
        log.exception("could not record the end of job %d", job_id)


def shutdown(app: FastAPI) -> None:
    """Stop this process's job thread (called when the server stops): queued jobs are
    marked failed, a running one stops at its next file (committed work is kept)."""
    runner: _Runner | None = getattr(app.state, "job_runner", None)
    if runner is None:
        return
    runner.stopping.set()
    store = app.state.engine.catalog.service
    for job_id, future in list(runner.queued.items()):
        if future.cancel():
            _finish(store, job_id, "failed", [0, 0], error=_STOPPED)
    runner.pool.shutdown(wait=True)


JobId = Annotated[int, Path(ge=1, le=2**63 - 1, description="A job id")]


@router.post(
    "/jobs",
    dependencies=[Admin],
    status_code=202,
    summary="Index a server-side folder (inside the allowed roots) in the background",
)
def create_job(request: Request, lk: Engine, body: JobRequest) -> Job:
    target = allowed_folder(body.path, lk.settings)
    store = lk.catalog.service
    if lk.settings.broker_url:
        from lookalike.queue.enqueue import enqueue_index

        queued = enqueue_index(lk, [target], within=lk.settings.allowed_roots)
        return Job.of(queued_view(store, queued))
    roots = lk.settings.allowed_roots

    def index(progress: Callable[[int, int], None]) -> dict[str, object]:
        report = lk.index([target], progress=False, on_progress=progress, within=roots)
        return IndexSummary.of(report).model_dump(mode="json")

    return start_job(request, lk, "index", target, index)


@router.get("/jobs", dependencies=[Admin], summary="Recent jobs, newest first")
def list_jobs(
    lk: Engine, limit: Annotated[int, Query(ge=1, le=1000, description="Jobs wanted")] = 100
) -> Jobs:
    store = lk.catalog.service
    return Jobs(jobs=[Job.of(_fresh(store, j)) for j in store.jobs(limit)])


@router.get("/jobs/{job_id}", summary="One job: status, progress, report")
def get_job(lk: Engine, job_id: JobId, caller: Annotated[Caller, Depends(require("write"))]) -> Job:
    """A re-cluster job is answered to the write keys that may start one (POST
    /v1/clusters/run); an index job, which names a server folder, to admin keys only."""
    store = lk.catalog.service
    job = store.job(job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    if job.kind != CLUSTER_JOB and not allows(caller.scope, "admin"):
        raise Forbidden(f"this key's scope is {caller.scope!r}; {job.kind} jobs need 'admin'")
    return Job.of(_fresh(store, job))
