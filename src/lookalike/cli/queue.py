"""``lookalike worker``, ``lookalike jobs`` and ``lookalike index --queue``: indexing spread
over workers through a Celery broker (:mod:`lookalike.queue`)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import click
from tqdm import tqdm

from lookalike.answers import IndexSummary, Job, Jobs
from lookalike.cli.common import (
    FAILED,
    command_settings,
    data_dir_option,
    echo_json,
    fail,
    fail_with,
    print_index_summary,
    with_engine,
)
from lookalike.errors import LookalikeError
from lookalike.files import shown
from lookalike.queue.progress import queued_view
from lookalike.search.engine import Lookalike
from lookalike.store.base import JobRow, ServiceStore

# How often ``--wait`` reads the job's row.
_POLL_S = 0.5


@click.command()
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes (each loads the models once).",
)
@click.option(
    "--inference-threads",
    type=click.IntRange(min=0),
    default=None,
    help="ONNX Runtime threads per process (default: the setting; if that is 0, the "
    "cores shared among the processes).",
)
@click.option("--loglevel", default="INFO", show_default=True, help="Celery's log level.")
@data_dir_option
def worker(
    concurrency: int, inference_threads: int | None, loglevel: str, data_dir: Path | None
) -> None:
    """Index the chunks of queued jobs (needs --broker-url or LOOKALIKE_BROKER_URL).

    Files are read by the paths the job recorded: run workers where those paths lead to the
    same files (shared storage). Before taking any chunk, the worker checks that its models
    give the catalog's reference vectors, and refuses to start if they do not.
    """
    from lookalike.queue.worker import run_worker

    try:
        settings = command_settings(data_dir)
        threads = inference_threads if inference_threads is not None else settings.inference_threads
        if threads == 0:
            threads = max(1, (os.cpu_count() or 1) // concurrency)
        settings = settings.model_copy(update={"inference_threads": threads})
        code = run_worker(settings, concurrency, loglevel=loglevel)
    except (LookalikeError, OSError) as exc:
        fail_with(exc)
    sys.exit(code)


@click.command()
@click.argument("job_id", type=int, required=False)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (as GET /v1/jobs).")
@data_dir_option
@with_engine
def jobs(engine: Lookalike, job_id: int | None, limit: int, as_json: bool) -> None:
    """Index jobs (queued to workers, or the server's): progress, report, failures."""
    store = engine.catalog.service
    if job_id is not None:
        found = store.job(job_id)
        if found is None:
            fail(f"job {job_id} not found")
        rows = [queued_view(store, found)]
    else:
        rows = [queued_view(store, j) for j in store.jobs(limit)]
    if as_json:
        one = job_id is not None
        echo_json(Job.of(rows[0]) if one else Jobs(jobs=[Job.of(r) for r in rows]))
        return
    for row in rows:
        click.echo(describe(row))
    if job_id is not None and rows[0].report is not None:
        print_index_summary(IndexSummary.model_validate(rows[0].report), as_json=False)
    if job_id is not None and rows[0].error:
        click.echo(f"error: {rows[0].error}")


def describe(job: JobRow) -> str:
    """One line on a job: id, status, progress, what it indexes."""
    return f"job {job.id}: {job.status}, {job.done}/{job.total} files, {shown(job.target)}"


def queued_index(
    engine: Lookalike,
    paths: Sequence[Path],
    *,
    faces: bool | None,
    wait: bool,
    as_json: bool,
    progress: bool | None,
) -> None:
    """``index --queue``: make the job and print its id (``--json``: the job); with
    ``wait``, follow it to its end and print its report as ``index`` does (exit 1 when
    files or chunks failed)."""
    from lookalike.queue.enqueue import enqueue_index

    store = engine.catalog.service
    job = enqueue_index(engine, paths, faces=faces)
    click.echo(f"job {job.id}: {job.total} files queued", err=True)
    if not wait:
        if as_json:
            echo_json(Job.of(queued_view(store, job)))
        else:
            click.echo(job.id)
        return
    try:
        final = follow(store, job, progress)
    except KeyboardInterrupt:
        click.echo(f"stopped waiting; job {job.id} goes on: `lookalike jobs {job.id}`", err=True)
        sys.exit(130)
    print_index_summary(IndexSummary.model_validate(final.report or {}), as_json)
    if final.error:
        click.echo(f"lookalike: error: job {job.id}: {final.error}", err=True)
    if final.status == "failed" or (final.report or {}).get("failed"):
        sys.exit(FAILED)


def follow(store: ServiceStore, job: JobRow, progress: bool | None) -> JobRow:
    """Wait for a queued job to end, with a progress bar (on a terminal by default) of its
    files done as the catalog counts them; returns its final state."""
    bar = tqdm(
        total=job.total,
        unit="img",
        desc=f"job {job.id}",
        disable=None if progress is None else not progress,
        file=sys.stderr,
    )
    with bar:
        while True:
            now = store.job(job.id) or job
            bar.total = now.total
            bar.update(now.done - bar.n)
            if now.status in ("done", "failed"):
                return queued_view(store, now)
            time.sleep(_POLL_S)
