"""What a worker does with one chunk of a queued job: index its files by path, record it
(or, for a cluster job, re-cluster every face).

The files are read where the task runs, by the path the job recorded (storage every worker
sees). Writes are idempotent by SHA-256 and unchanged files are skipped, so a chunk done
again (its first worker died before acknowledging it) stores nothing twice; the catalog
counts each chunk once however often it is finished (``ServiceStore.finish_chunk``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from lookalike.answers import ClusterRunReport, IndexSummary
from lookalike.errors import LookalikeError, Unavailable
from lookalike.ingest.run import IndexRun
from lookalike.search.engine import Lookalike

log = logging.getLogger("lookalike.queue")


def index_chunk(
    engine: Lookalike,
    job_id: int,
    chunk: int,
    paths: Sequence[str],
    *,
    faces: bool | None = None,
    within: Sequence[str] | None = None,
) -> bool:
    """Index the files ``paths`` (chunk ``chunk`` of job ``job_id``) and mark the chunk
    finished with its report; files that cannot be read are failures in that report.
    Returns False when the chunk had been finished already (a redelivered task).

    Unavailable (the catalog does not answer) propagates, for the task to be retried; any
    other error marks the chunk failed with its message.
    """
    store = engine.catalog.service
    job = store.job(job_id)
    if job is not None and job.status == "queued":
        store.update_job(job_id, status="running")
    try:
        run = IndexRun(
            engine.ingest_parts(),
            faces=engine.settings.faces if faces is None else faces,
            within=within,
            progress=False,
        )
        walked = run.walk(paths)
        run.ingest(run.plan(walked.files), total=len(walked.files))
        run.group_faces()
        if run.rewritten:  # a file's old content may have left the catalog
            run.prune_thumbnails()
    except Unavailable:
        raise
    except LookalikeError as exc:
        return store.finish_chunk(job_id, chunk, error=exc.message)
    except Exception as exc:  # a chunk that cannot be done must not block its job forever
        log.exception("job %d, chunk %d failed", job_id, chunk)
        return store.finish_chunk(job_id, chunk, error=f"{type(exc).__name__}: {exc}")
    summary = IndexSummary.of(run.report).model_dump(mode="json")
    return store.finish_chunk(job_id, chunk, report=summary)


def cluster_job(engine: Lookalike, job_id: int) -> bool:
    """Re-cluster every face (job ``job_id``, its one chunk 0) and mark the chunk finished
    with the report; False when it had been finished already (a redelivered task). Errors
    as for :func:`index_chunk`."""
    store = engine.catalog.service
    if not any(c.chunk == 0 and c.status == "queued" for c in store.chunks(job_id)):
        return False
    store.update_job(job_id, status="running")
    try:
        report = engine.people.cluster(
            full=True, on_progress=lambda done, total: store.update_job(job_id, total=total)
        )
    except Unavailable:
        raise
    except LookalikeError as exc:
        return store.finish_chunk(job_id, 0, error=exc.message)
    except Exception as exc:
        log.exception("cluster job %d failed", job_id)
        return store.finish_chunk(job_id, 0, error=f"{type(exc).__name__}: {exc}")
    summary = ClusterRunReport.of(report).model_dump(mode="json")
    return store.finish_chunk(job_id, 0, report=summary)
