"""Jobs (index a server-side folder, only inside the allowed roots) and the keys API."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lookalike.search.engine import Lookalike
from lookalike.serve.app import create_app
from lookalike.serve.keys import create_key
from lookalike.serve.routers import jobs as jobs_router
from lookalike.settings import get_settings


class Api:
    def __init__(self, client: TestClient) -> None:
        self.client = client
        store = self.engine.catalog.service
        self.keys = {
            s: {"X-API-Key": create_key(store, s, s)[0]} for s in ("read", "write", "admin")
        }

    @property
    def engine(self) -> Lookalike:
        found: Lookalike = self.client.app.state.engine  # type: ignore[attr-defined]
        return found

    def post_job(self, body: Any, scope: str = "admin") -> Any:
        return self.client.post("/v1/jobs", json=body, headers=self.keys[scope])

    def wait(self, job_id: int, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job: dict[str, Any] = self.client.get(
                f"/v1/jobs/{job_id}", headers=self.keys["admin"]
            ).json()
            if job["status"] in ("done", "failed") or time.monotonic() > deadline:
                return job
            time.sleep(0.1)


@pytest.fixture()
def roots(tmp_path: Path, photo_dir: Path) -> dict[str, Path]:
    """An allowed root holding an album, and a folder beside it (outside every root)."""
    root = tmp_path / "srv" / "photos"
    shutil.copytree(photo_dir, root / "2024")
    outside = tmp_path / "private"
    shutil.copytree(photo_dir, outside)
    (root / "escape").symlink_to(outside, target_is_directory=True)
    (root / "notes.txt").write_text("not a folder")
    return {"root": root, "album": root / "2024", "outside": outside}


@pytest.fixture()
def api(tmp_path: Path, roots: dict[str, Path]) -> Iterator[Api]:
    settings = get_settings(data_dir=tmp_path / "data", allowed_roots=[roots["root"]])
    with TestClient(create_app(settings)) as client:
        yield Api(client)


def test_a_job_indexes_a_folder_and_reports(api: Api, roots: dict[str, Path]) -> None:
    r = api.post_job({"path": str(roots["album"])})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running") and job["target"] == str(roots["album"])
    done = api.wait(job["job_id"])
    assert done["status"] == "done", done
    assert (done["done"], done["total"]) == (6, 6)
    assert done["report"]["indexed"] == 6 and done["report"]["failed"] == []
    assert done["report"]["faces"] >= 1 and done["error"] is None
    listed = api.client.get("/v1/jobs", headers=api.keys["admin"]).json()["jobs"]
    assert [j["job_id"] for j in listed] == [job["job_id"]]
    # An index job names a server folder: only admin keys see it (write keys may follow the
    # re-cluster jobs they start).
    for scope in ("read", "write"):
        seen = api.client.get(f"/v1/jobs/{job['job_id']}", headers=api.keys[scope])
        assert seen.status_code == 403, seen.text
    images = api.client.get("/v1/images", headers=api.keys["read"]).json()
    assert images["total"] == 6
    # Again: nothing new, every file counted as done.
    again = api.wait(api.post_job({"path": str(roots["album"]) + "/"}).json()["job_id"])
    assert again["report"]["unchanged"] == 6 and (again["done"], again["total"]) == (6, 6)


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("{album}/../../private", 400, "bad_path"),
        ("{album}/..", 400, "bad_path"),
        ("relative/photos", 400, "bad_path"),
        ("{outside}", 403, "forbidden"),
        ("/", 403, "forbidden"),
        ("{root}/escape", 403, "forbidden"),  # a symlink out of the root
        ("{root}/escape/", 403, "forbidden"),
        ("{root}/missing", 404, "not_found"),
        ("{root}/notes.txt", 400, "bad_path"),
    ],
)
def test_job_paths_outside_the_roots_are_refused(
    api: Api, roots: dict[str, Path], path: str, status: int, code: str
) -> None:
    r = api.post_job({"path": path.format(**{k: str(v) for k, v in roots.items()})})
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert api.engine.catalog.service.jobs() == []


def test_bad_job_requests(api: Api, roots: dict[str, Path], tmp_path: Path) -> None:
    for body in ({}, {"path": 5}, {"path": ""}, {"path": "/x", "extra": 1}, ["/x"], "x"):
        r = api.post_job(body)
        assert r.status_code == 422 and r.json()["error"]["code"] == "bad_input", body
    r = api.client.post("/v1/jobs", content=b"{not json", headers=api.keys["admin"])
    assert r.status_code == 422
    assert api.post_job({"path": str(roots["album"])}, scope="write").status_code == 403
    assert api.client.post("/v1/jobs", json={"path": str(roots["album"])}).status_code == 401
    assert api.client.get("/v1/jobs", headers=api.keys["write"]).status_code == 403
    for bad in ("999", "0", "x", str(10**20)):
        r = api.client.get(f"/v1/jobs/{bad}", headers=api.keys["admin"])
        assert r.status_code in (404, 422) and "error" in r.json(), bad
    assert api.engine.catalog.service.jobs() == []


def test_no_allowed_roots_means_no_jobs(tmp_path: Path, photo_dir: Path) -> None:
    with TestClient(create_app(get_settings(data_dir=tmp_path / "data"))) as client:
        token, _ = create_key(client.app.state.engine.catalog.service, "admin")  # type: ignore[attr-defined]
        r = client.post("/v1/jobs", json={"path": str(photo_dir)}, headers={"X-API-Key": token})
        assert r.status_code == 403 and "allowed roots" in r.json()["error"]["message"]


def test_a_root_that_is_itself_a_symlink_still_admits_its_folders(
    tmp_path: Path, photo_dir: Path
) -> None:
    real = tmp_path / "disk" / "photos"
    shutil.copytree(photo_dir, real)
    link = tmp_path / "photos"
    link.symlink_to(real, target_is_directory=True)
    settings = get_settings(data_dir=tmp_path / "data", allowed_roots=[link])
    with TestClient(create_app(settings)) as client:
        token, _ = create_key(client.app.state.engine.catalog.service, "admin")  # type: ignore[attr-defined]
        r = client.post("/v1/jobs", json={"path": str(link)}, headers={"X-API-Key": token})
        assert r.status_code == 202 and r.json()["target"] == os.path.realpath(link)


def test_index_reports_progress(engine: Lookalike, photo_dir: Path) -> None:
    calls: list[tuple[int, int]] = []
    engine.index([photo_dir], progress=False, on_progress=lambda d, t: calls.append((d, t)))
    assert calls == [(i, 6) for i in range(7)]
    calls.clear()
    engine.index([photo_dir], progress=False, on_progress=lambda d, t: calls.append((d, t)))
    assert calls == [(6, 6)]


def test_shutdown_fails_queued_jobs_and_stops_the_running_one(
    tmp_path: Path, roots: dict[str, Path]
) -> None:
    settings = get_settings(data_dir=tmp_path / "data", allowed_roots=[roots["root"]])
    with TestClient(create_app(settings)) as client:
        store = client.app.state.engine.catalog.service  # type: ignore[attr-defined]
        token, _ = create_key(store, "admin")
        ids = [
            client.post(
                "/v1/jobs", json={"path": str(roots["album"])}, headers={"X-API-Key": token}
            ).json()["job_id"]
            for _ in range(3)
        ]
    # The app has stopped: no job is left queued or running.
    settings = get_settings(data_dir=tmp_path / "data")
    with Lookalike(settings) as lk:
        jobs = {j.id: j for j in lk.catalog.service.jobs()}
    assert set(jobs) == set(ids)
    assert all(j.status in ("done", "failed") for j in jobs.values())
    assert jobs[ids[-1]].status == "failed" and "stopped" in (jobs[ids[-1]].error or "")


# -- keys --------------------------------------------------------------------------------


def test_keys_api(api: Api) -> None:
    admin = api.keys["admin"]
    r = api.client.post("/v1/keys", json={"scope": "read", "name": "web"}, headers=admin)
    assert r.status_code == 201, r.text
    created = r.json()
    token = created["key"]
    assert token.startswith("lka_") and created["scope"] == "read" and not created["revoked"]
    listed = api.client.get("/v1/keys", headers=admin).json()["keys"]
    assert [k["name"] for k in listed] == ["read", "write", "admin", "web"]
    assert token not in str(listed) and all("key" not in k for k in listed)
    assert api.client.get("/v1/images", headers={"X-API-Key": token}).status_code == 200
    r = api.client.delete(f"/v1/keys/{created['key_id']}", headers=admin)
    assert r.status_code == 200 and r.json()["revoked"]
    assert api.client.get("/v1/images", headers={"X-API-Key": token}).status_code == 401
    assert api.client.delete(f"/v1/keys/{created['key_id']}", headers=admin).status_code == 404
    assert api.client.delete("/v1/keys/12345", headers=admin).status_code == 404
    for body in ({"scope": "root"}, {}, {"scope": "read", "name": "x" * 500}, {"scope": 1}):
        assert api.client.post("/v1/keys", json=body, headers=admin).status_code == 422
    for scope in ("read", "write"):
        h = api.keys[scope]
        assert api.client.get("/v1/keys", headers=h).status_code == 403
        assert api.client.post("/v1/keys", json={"scope": "admin"}, headers=h).status_code == 403
        assert api.client.delete("/v1/keys/1", headers=h).status_code == 403
    assert api.client.get("/v1/keys").status_code == 401


def test_a_job_whose_process_died_is_reported_failed(tmp_path: Path) -> None:
    with TestClient(create_app(get_settings(data_dir=tmp_path / "data"))) as client:
        store = client.app.state.engine.catalog.service  # type: ignore[attr-defined]
        token, _ = create_key(store, "admin")
        job = store.add_job("index", "/nowhere")
        store.update_job(job.id, status="running")
        database = client.app.state.engine.catalog.database  # type: ignore[attr-defined]
        old = time.time() - jobs_router.STALE_S - 1
        with database.transaction() as db:
            db.execute("UPDATE jobs SET updated_at = ? WHERE id = ?", [old, job.id])
        got = client.get(f"/v1/jobs/{job.id}", headers={"X-API-Key": token}).json()
        assert got["status"] == "failed" and "stopped" in got["error"]


def test_a_job_on_a_folder_with_names_that_are_not_utf8_indexes_them(
    api: Api, roots: dict[str, Path]
) -> None:
    album = roots["album"]
    odd = os.fsdecode(os.fsencode(album) + b"/caf\xe9.jpg")  # a Latin-1 name
    shutil.copy(album / "chelsea.png", odd)
    done = api.wait(api.post_job({"path": str(album)}).json()["job_id"])
    assert done["status"] == "done", done
    assert done["report"]["indexed"] == 6 and done["report"]["duplicates"] == 1
    answer = api.client.get("/v1/images", headers=api.keys["read"])
    assert answer.status_code == 200
    paths = [p for image in answer.json()["images"] for p in image["paths"]]
    assert str(album / "caf\\xe9.jpg") in paths
    similar = api.client.get(
        f"/v1/images/{api.engine.catalog.path_row(odd).image_id}/similar",  # type: ignore[union-attr]
        headers=api.keys["read"],
    )
    assert similar.status_code == 200 and similar.json()["results"][0]["path"]
    body = json.dumps({"path": str(album) + "/\udce9"})  # JSON can escape a lone surrogate
    headers = {**api.keys["admin"], "content-type": "application/json"}
    lone = api.client.post("/v1/jobs", content=body, headers=headers)
    assert lone.status_code == 422, lone.text  # refused as it is read: never a 500
