"""A queued job as its chunks say it stands: progress, the merged report, failures.

A queued job's row counts the files of its finished chunks (``done``) and is ``done`` once
none is queued (``ServiceStore.finish_chunk``); its report is the sum of its chunks' reports,
made here when asked, so no worker has to write it and none can race another for it. Chunk
0 is the walk itself (no files): its report holds the paths found gone and the folders
that could not be read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from lookalike.answers import CLUSTER_JOB, ClusterRunReport, IndexSummary
from lookalike.store.base import JobRow, ServiceStore


def is_queued(store: ServiceStore, job: JobRow) -> bool:
    """Whether ``job`` was split into chunks for workers (rather than run in a thread)."""
    return bool(store.chunks(job.id))


def queued_view(store: ServiceStore, job: JobRow) -> JobRow:
    """``job`` with its report merged from its finished chunks so far (failures included)
    and, once no chunk is queued, status ``failed`` if a chunk failed as a whole (its error
    then names the chunk). ``job`` unchanged if it has no chunks."""
    chunks = store.chunks(job.id)
    if not chunks:
        return job
    if job.kind == CLUSTER_JOB:  # one chunk: the re-cluster, its report as it is
        (chunk,) = chunks
        status = "failed" if chunk.error else job.status
        return replace(job, status=status, report=chunk.report, error=chunk.error or job.error)
    reports = [IndexSummary.model_validate(c.report) for c in chunks if c.report is not None]
    errors = [f"chunk {c.chunk} ({c.files} files): {c.error}" for c in chunks if c.error]
    status = "failed" if job.status == "done" and errors else job.status
    return replace(
        job,
        status=status,
        report=merge(reports).model_dump(mode="json"),
        error="; ".join(errors) or job.error,
    )


def merge(reports: Sequence[IndexSummary]) -> IndexSummary:
    """The reports of several chunks as one: counts summed, failures listed in turn, faces
    grouped summed (clusters: the most any chunk saw, the count after the latest)."""
    people = [r.people for r in reports if r.people is not None]
    faces = [r.faces for r in reports if r.faces is not None]
    return IndexSummary(
        indexed=sum(r.indexed for r in reports),
        unchanged=sum(r.unchanged for r in reports),
        duplicates=sum(r.duplicates for r in reports),
        removed=sum(r.removed for r in reports),
        failed=[f for r in reports for f in r.failed],
        faces=sum(faces) if faces else None,
        people=_merge_people(people) if people else None,
    )


def _merge_people(reports: Sequence[ClusterRunReport]) -> ClusterRunReport:
    named: Counter[str] = Counter()
    for r in reports:
        named.update(r.people)
    return ClusterRunReport(
        faces=sum(r.faces for r in reports),
        recognised=sum(r.recognised for r in reports),
        joined=sum(r.joined for r in reports),
        started=sum(r.started for r in reports),
        merged=sum(r.merged for r in reports),
        clusters=max(r.clusters for r in reports),
        people=dict(named),
    )
