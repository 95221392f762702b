"""`/v1/clusters`: groups of unknown faces; list, show, name, merge, run the clustering."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from lookalike.answers import (
    CLUSTER_JOB,
    CLUSTER_TARGET,
    Cluster,
    ClusterDetail,
    ClusterRunReport,
    Clusters,
    Job,
    MergedClusters,
    Person,
)
from lookalike.errors import NotFound
from lookalike.queue.progress import queued_view
from lookalike.serve.deps import Engine, Read, Write
from lookalike.serve.routers.faces import MAX_ID, Id, Name
from lookalike.serve.routers.images import Limit, Offset, face_photo_page
from lookalike.serve.routers.jobs import start_job
from lookalike.serve.schemas import FacePhotoPage

router = APIRouter(prefix="/v1", tags=["clusters"])

ClusterId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="A cluster's id")]


@router.get(
    "/clusters",
    summary="Clusters of unnamed faces, largest first, each with a sample of its face ids",
    dependencies=[Read],
)
def list_clusters(
    lk: Engine,
    min_size: Annotated[int, Query(ge=1, le=MAX_ID, description="Smallest face_count listed")] = 1,
) -> Clusters:
    return Clusters(clusters=[Cluster.of(c) for c in lk.people.clusters(min_size=min_size)])


class MergeClusters(BaseModel):
    cluster_ids: list[Id] = Field(
        min_length=2, max_length=1000, description="Clusters to merge, into the first"
    )


@router.post("/clusters/merge", summary="Merge clusters into the first", dependencies=[Write])
def merge_clusters(lk: Engine, body: MergeClusters) -> MergedClusters:
    moved = lk.people.merge_clusters(body.cluster_ids)
    return MergedClusters.of(body.cluster_ids, moved)


class ClusterRun(BaseModel):
    full: bool = Field(
        False,
        description="Start again: forget every cluster and recognised name, group all faces "
        "anew (names given by users are kept; cluster edits are lost). Runs as a job: the "
        "answer is 202 with the job (`GET /v1/jobs/{job_id}`, admin) instead of the report",
    )


@router.post(
    "/clusters/run",
    summary="Recognise and group the faces not yet grouped (or all of them: `full`, a job)",
    dependencies=[Write],
    response_model=ClusterRunReport,
    responses={202: {"model": Job, "description": "`full`: the re-cluster's job, started"}},
)
def run_clustering(
    request: Request, lk: Engine, body: ClusterRun | None = None
) -> ClusterRunReport | JSONResponse:
    if body is None or not body.full:
        return ClusterRunReport.of(lk.people.cluster())
    if lk.settings.broker_url:
        from lookalike.queue.enqueue import enqueue_cluster

        job = Job.of(queued_view(lk.catalog.service, enqueue_cluster(lk)))
    else:

        def recluster(progress: Callable[[int, int], None]) -> dict[str, object]:
            report = lk.people.cluster(full=True, on_progress=progress)
            return ClusterRunReport.of(report).model_dump(mode="json")

        job = start_job(request, lk, CLUSTER_JOB, CLUSTER_TARGET, recluster)
    return JSONResponse(job.model_dump(mode="json"), status_code=202)


@router.get("/clusters/{cluster_id}", summary="The faces of a cluster", dependencies=[Read])
def get_cluster(lk: Engine, cluster_id: ClusterId) -> ClusterDetail:
    return ClusterDetail.of(cluster_id, lk.people.cluster_faces(cluster_id))


@router.get(
    "/clusters/{cluster_id}/images",
    summary="The images showing a cluster's faces, newest first, a page at a time",
    dependencies=[Read],
)
def cluster_images(
    lk: Engine, cluster_id: ClusterId, offset: Offset = 0, limit: Limit = 100
) -> FacePhotoPage:
    found = lk.people.store.images_of_cluster(cluster_id, offset, limit)
    if not found.total:  # a cluster is its faces: none, no cluster
        raise NotFound(f"cluster {cluster_id} not found")
    return face_photo_page(lk, found, offset, limit)


class NameCluster(BaseModel):
    name: Name = Field(description="The person the cluster shows")
    merge: bool = Field(
        False, description="The name exists: add the cluster's faces to them (else 409)"
    )


@router.post(
    "/clusters/{cluster_id}/name",
    summary="Make a cluster a person: its faces are confirmed as them",
    dependencies=[Write],
)
def name_cluster(lk: Engine, cluster_id: ClusterId, body: NameCluster) -> Person:
    return Person.of(lk.people.name_cluster(cluster_id, body.name, merge=body.merge))
