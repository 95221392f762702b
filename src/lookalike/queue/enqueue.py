"""Make a queued index job: walk the paths, split the files into chunks, one task each.

The walk runs where the job is made (the same rules as ``lookalike index``: hidden entries
and the data folder skipped, ``within`` enforced on real paths), and so does dropping the
recorded paths under the walked folders that are gone; the files themselves are read by
the workers, by path. Chunk 0 is that walk (no files, finished at once, its report holding
what it found); chunks 1.. are ``queue_chunk_files`` files each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from lookalike.answers import CLUSTER_JOB, CLUSTER_TARGET, IndexSummary
from lookalike.errors import Unavailable
from lookalike.ingest.run import IndexRun
from lookalike.queue.app import CLUSTER, INDEX_CHUNK, check_broker, make_app
from lookalike.search.engine import Lookalike
from lookalike.store.base import JobRow


def enqueue_index(
    engine: Lookalike,
    paths: Sequence[str | Path],
    *,
    faces: bool | None = None,
    within: Sequence[str | Path] | None = None,
) -> JobRow:
    """A new index job over ``paths``, its chunks sent to the broker; returns its row.

    Unavailable, before anything is recorded, if the broker does not answer. ``faces``:
    whether workers find faces (None: each worker's own setting).
    """
    settings = engine.settings
    app = make_app(settings)
    check_broker(app, settings)
    # Walking needs no model: no descriptor is computed here.
    run = IndexRun(replace(engine.ingest_parts(), descriptors=()), faces=False, within=within)
    walked = run.survey(paths)
    files = [path for path, _ in walked.files]
    size = settings.queue_chunk_files
    chunks = [files[i : i + size] for i in range(0, len(files), size)]
    store = engine.catalog.service
    job = store.add_job("index", _target(paths))
    store.add_chunks(job.id, [0, *map(len, chunks)])
    walk_report = IndexSummary.of(run.report).model_dump(mode="json")
    store.finish_chunk(job.id, 0, report=walk_report)
    roots = None if within is None else [str(r) for r in within]
    sent = 0
    try:
        with app.producer_or_acquire() as producer:
            for sent, chunk in enumerate(chunks, start=1):
                app.send_task(
                    INDEX_CHUNK,
                    args=[job.id, sent, chunk],
                    kwargs={"faces": faces, "within": roots},
                    producer=producer,
                )
    except Exception as exc:  # kombu and redis-py raise many kinds; all mean "not sent"
        why = f"not sent: the broker stopped answering ({type(exc).__name__})"
        for n in range(sent, len(chunks) + 1):
            store.finish_chunk(job.id, n, error=why)
        first = max(sent, 1)
        raise Unavailable(f"broker: job {job.id}: chunks {first} to {len(chunks)} {why}") from None
    found = store.job(job.id)
    assert found is not None
    return found


def enqueue_cluster(engine: Lookalike) -> JobRow:
    """A new full re-cluster job (one chunk, 0), sent to the broker; returns its row.
    Unavailable, before anything is recorded, if the broker does not answer."""
    app = make_app(engine.settings)
    check_broker(app, engine.settings)
    store = engine.catalog.service
    job = store.add_job(CLUSTER_JOB, CLUSTER_TARGET)
    store.add_chunks(job.id, [0])
    try:
        app.send_task(CLUSTER, args=[job.id])
    except Exception as exc:  # kombu and redis-py raise many kinds; all mean "not sent"
        why = f"not sent: the broker stopped answering ({type(exc).__name__})"
        store.finish_chunk(job.id, 0, error=why)
        raise Unavailable(f"broker: job {job.id} {why}") from None
    found = store.job(job.id)
    assert found is not None
    return found


def _target(paths: Sequence[str | Path]) -> str:
    """What the job indexes, as listed: the one path, or the first and how many more."""
    shown = [str(Path(p).absolute()) for p in paths]
    return shown[0] if len(shown) == 1 else f"{shown[0]} (+{len(shown) - 1} more)"
