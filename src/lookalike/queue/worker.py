"""``lookalike worker``: a Celery worker that indexes the chunks of queued jobs (and runs
queued full re-clusters).

One process (Celery's ``solo`` pool) with ``--concurrency 1``; with N > 1, Celery's
``prefork`` pool of N processes. Either way each process opens the data folder and loads the
models once, on its first chunk, and keeps them for every chunk after (no per-task loading;
processes, not threads, because reading, pooling and committing hold the GIL). Before the
worker takes any task, its models are checked against the catalog's reference vectors
(:mod:`lookalike.queue.probe`): a worker that computes other vectors refuses to start. With
prefork the check runs in a forked child, so that the pool's processes are forked from a
parent that holds no model session and no database connection.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from lookalike.errors import LookalikeError, Unavailable, VectorMismatch
from lookalike.queue import probe
from lookalike.queue.app import CLUSTER, INDEX_CHUNK, check_broker, make_app
from lookalike.queue.chunk import cluster_job, index_chunk
from lookalike.search.engine import Lookalike
from lookalike.settings import Settings

# Seconds before a chunk is tried again when the catalog does not answer.
RETRY_S = 5.0
_engine: Lookalike | None = None


def process_engine(settings: Settings) -> Lookalike:
    """This process's engine: opened on first use, then kept (models load once)."""
    global _engine
    if _engine is None:
        _engine = Lookalike(settings)
    return _engine


def worker_app(settings: Settings) -> Any:
    """The Celery app of ``settings`` with the chunk task registered on it."""
    app = make_app(settings)
    app.conf.worker_hijack_root_logger = True

    @app.task(name=INDEX_CHUNK, bind=True, max_retries=None)  # type: ignore[untyped-decorator]
    def index_chunk_task(
        task: Any,
        job_id: int,
        chunk: int,
        paths: list[str],
        faces: bool | None = None,
        within: list[str] | None = None,
    ) -> None:
        engine = process_engine(settings)
        try:
            index_chunk(engine, job_id, chunk, paths, faces=faces, within=within)
        except Unavailable as exc:  # the catalog is away: try this chunk again later
            raise task.retry(countdown=RETRY_S, exc=exc) from None

    @app.task(name=CLUSTER, bind=True, max_retries=None)  # type: ignore[untyped-decorator]
    def cluster_task(task: Any, job_id: int) -> None:
        try:
            cluster_job(process_engine(settings), job_id)
        except Unavailable as exc:
            raise task.retry(countdown=RETRY_S, exc=exc) from None

    return app


def run_worker(settings: Settings, concurrency: int = 1, *, loglevel: str = "INFO") -> int:
    """Check the broker and this machine's vectors, then work until stopped; returns the
    worker's exit status. Unavailable (no broker) or VectorMismatch before any task."""
    app = worker_app(settings)
    check_broker(app, settings)
    if concurrency == 1:
        probe.check(process_engine(settings))
    else:
        _check_in_child(settings)
    worker = app.Worker(
        pool="solo" if concurrency == 1 else "prefork",
        concurrency=concurrency,
        loglevel=loglevel,
        hostname=f"lookalike-{os.getpid()}@{socket.gethostname()}",
        without_mingle=True,
        without_gossip=True,
        without_heartbeat=True,
    )
    worker.start()
    return int(worker.exitcode or 0)


def _check_in_child(settings: Settings) -> None:
    """:func:`probe.check` in a forked process (which loads the models and exits)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        problem = pool.submit(_check, settings).result()
    if problem is not None:
        code, message = problem
        raise VectorMismatch(message) if code == VectorMismatch.code else LookalikeError(message)


def _check(settings: Settings) -> tuple[str, str] | None:
    """The error code and message of the check in this process, or None if it passed."""
    try:
        with Lookalike(settings) as engine:
            probe.check(engine)
    except LookalikeError as exc:
        return exc.code, exc.message
    return None
