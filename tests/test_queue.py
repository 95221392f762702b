"""Queued indexing on Celery (lookalike.queue): real Redis, real ``lookalike worker``
processes started here and killed after, one SQLite catalog in a shared data folder."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image

from lookalike.answers import ClusterRunReport, Failure, IndexSummary
from lookalike.cli.main import cli
from lookalike.errors import Unavailable
from lookalike.queue import probe
from lookalike.queue.app import broker_url
from lookalike.queue.enqueue import enqueue_index
from lookalike.queue.progress import merge, queued_view
from lookalike.search.engine import Lookalike
from lookalike.serve.app import create_app
from lookalike.serve.keys import create_key
from lookalike.settings import Settings, get_settings
from tests.servers import free_port, stop
from tests.test_people import add_photo

# Redis databases 1..15 in turn: each test starts with an empty queue.
_DATABASES = itertools.cycle(range(1, 16))
READY_S = 180.0
_CLI = (sys.executable, "-m", "lookalike.cli")


# -- helpers ------------------------------------------------------------------------------


def make_images(folder: Path, n: int, side: int = 48) -> list[Path]:
    """``n`` distinct small PNGs (integer patterns: no two share their bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:side, 0 : side + 16]
    out = []
    for i in range(n):
        a = (x * (i + 1) + y * (2 * i + 3)) % 256
        rgb = np.dstack([a, (a * 7 + i) % 256, (x ^ (y + i)) % 256]).astype(np.uint8)
        path = folder / f"img{i:03d}.png"
        Image.fromarray(rgb, "RGB").save(path)
        out.append(path)
    return out


@pytest.fixture()
def broker(redis_url: str) -> str:
    """A Redis database of the session's server no other test uses now, emptied."""
    import redis

    url = redis_url.rsplit("/", 1)[0] + f"/{next(_DATABASES)}"
    redis.Redis.from_url(url).flushdb()
    return url


def queue_env(broker: str, data_dir: Path, **settings: object) -> dict[str, str]:
    """The environment of a worker or command on ``broker`` and ``data_dir``."""
    env = dict(os.environ)
    env.update(
        LOOKALIKE_BROKER_URL=broker,
        LOOKALIKE_DATA_DIR=str(data_dir),
        LOOKALIKE_INFERENCE_THREADS="1",
        LOOKALIKE_DECODE_THREADS="1",
        LOOKALIKE_QUEUE_CHUNK_FILES="4",
        LOOKALIKE_QUEUE_REDELIVERY_S="2",
    )
    env.update({f"LOOKALIKE_{k.upper()}": str(v) for k, v in settings.items()})
    return env


@contextlib.contextmanager
def worker(env: dict[str, str], log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``lookalike worker ARGS`` in its own process group, once ready; stopped after."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*_CLI, "worker", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + READY_S
        while b" ready." not in log.read_bytes():
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "worker not ready"
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            stop(proc, timeout=30)


def wait_done(settings: Settings, job_id: int, timeout: float = 120.0) -> None:
    with Lookalike(settings) as lk:
        deadline = time.monotonic() + timeout
        while (job := lk.catalog.service.job(job_id)) and job.status not in ("done", "failed"):
            assert time.monotonic() < deadline, f"job {job_id} not done: {job}"
            time.sleep(0.2)


def stored_once(settings: Settings, images: list[Path]) -> None:
    """Every image of ``images`` is in the catalog, once, with its one path."""
    with Lookalike(settings) as lk:
        catalog = lk.catalog
        assert catalog.count_images() == len(images)
        assert catalog.count_paths() == len(images)
        assert sorted(catalog.all_paths()) == sorted(str(p) for p in images)


# -- without a broker ---------------------------------------------------------------------


def test_merged_report_sums_chunks_and_lists_every_failure() -> None:
    people = ClusterRunReport(
        faces=2, recognised=1, joined=0, started=1, merged=0, clusters=3, people={"Ann": 1}
    )
    a = IndexSummary(
        indexed=3, unchanged=1, duplicates=0, removed=2, failed=[], faces=2, people=people
    )
    b = IndexSummary(
        indexed=1,
        unchanged=0,
        duplicates=1,
        removed=0,
        failed=[Failure(path="/x/bad.jpg", error="not an image")],
        faces=0,
        people=people.model_copy(update={"clusters": 4}),
    )
    merged = merge([a, b])
    assert (merged.indexed, merged.unchanged, merged.duplicates, merged.removed) == (4, 1, 1, 2)
    assert [f.path for f in merged.failed] == ["/x/bad.jpg"]
    assert merged.faces == 2 and merged.people is not None
    assert (merged.people.faces, merged.people.clusters, merged.people.people) == (4, 4, {"Ann": 2})


def test_probe_difference_tolerates_rounding_not_more() -> None:
    floats = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    hashes = np.arange(6, dtype=np.uint8).reshape(3, 2)
    ref = {"cnn": floats, "phash": hashes}
    assert probe.difference(ref, {"cnn": floats + 5e-5, "phash": hashes.copy()}) == ""
    moved = probe.difference(ref, {"cnn": floats + 2e-3, "phash": hashes})
    assert moved.startswith("cnn vectors differ") and "0.002" in moved
    flipped = hashes.copy()
    flipped[1, 1] ^= 0b101
    assert probe.difference(ref, {"cnn": floats, "phash": flipped}) == (
        "phash hashes differ from the catalog's reference in 2 bits"
    )
    assert "not of the reference's kind" in probe.difference(ref, {"cnn": floats})
    vectors, where = probe.unpack(probe.pack(ref))
    assert probe.difference(ref, vectors) == "" and where == probe.machine()


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379/0", "redis://127.0.0.1:port/0", "redis:///0", "nonsense"]
)
def test_a_malformed_broker_url_is_unavailable(url: str) -> None:
    with pytest.raises(Unavailable, match=r"^broker: malformed URL"):
        broker_url(get_settings(broker_url=url))


def test_unreachable_broker_is_one_line_and_records_no_job(tmp_path: Path) -> None:
    make_images(tmp_path / "album", 2)
    url = f"redis://127.0.0.1:{free_port()}/0"
    data = tmp_path / "data"
    runner = CliRunner()
    started = time.monotonic()
    for args in (["index", str(tmp_path / "album"), "--queue"], ["worker"]):
        done = runner.invoke(cli, ["--broker-url", url, "--data-dir", str(data), *args])
        assert done.exit_code == 1, done.output
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            f"lookalike: error: broker: no answer from {url}"
        )
    assert time.monotonic() - started < 30
    with Lookalike(get_settings(data_dir=data)) as lk:
        assert lk.catalog.service.jobs() == []


def test_wait_needs_queue(tmp_path: Path) -> None:
    done = CliRunner().invoke(cli, ["index", str(tmp_path), "--wait"])
    assert done.exit_code == 2 and "--wait goes with --queue" in done.stderr


# -- with Redis and real workers ----------------------------------------------------------


@pytest.mark.redis
@pytest.mark.slow
def test_queued_index_stores_every_image_once_and_waits_with_progress(
    tmp_path: Path, broker: str
) -> None:
    images = make_images(tmp_path / "album", 10)
    (tmp_path / "album" / "notes.jpg").write_text("not an image")
    env = queue_env(broker, tmp_path / "data")
    with worker(env, tmp_path / "w1.log"), worker(env, tmp_path / "w2.log"):
        done = subprocess.run(
            [*_CLI, "index", str(tmp_path / "album"), "--queue", "--wait", "--progress", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == 1, done.stderr  # the text file failed
    summary = json.loads(done.stdout)
    assert (summary["indexed"], summary["unchanged"], summary["duplicates"]) == (10, 0, 0)
    assert [f["path"] for f in summary["failed"]] == [str(tmp_path / "album" / "notes.jpg")]
    assert "job 1: 11 files queued" in done.stderr and "11/11" in done.stderr  # the bar
    settings = get_settings(data_dir=tmp_path / "data")
    stored_once(settings, images)
    with Lookalike(settings) as lk:
        store = lk.catalog.service
        assert [c.status for c in store.chunks(1)] == ["done"] * 4  # the walk + 3 chunks
        assert [c.files for c in store.chunks(1)] == [0, 4, 4, 3]
        listed = CliRunner().invoke(cli, ["--data-dir", str(settings.data_dir), "jobs"])
        assert listed.stdout.startswith(f"job 1: done, 11/11 files, {tmp_path / 'album'}")


@pytest.mark.redis
@pytest.mark.slow
def test_a_worker_killed_mid_chunk_loses_nothing(tmp_path: Path, broker: str) -> None:
    """SIGKILL of a worker (two pool processes and their parent) with a chunk half
    committed: the chunk is handed to the other worker after the redelivery time, the job
    completes, every image is stored once. (The prefork pool acknowledges in its parent,
    so without late acknowledgement the chunk would be lost; the solo pool acknowledges
    only between tasks either way.)"""
    images = make_images(tmp_path / "album", 24, side=160)
    # One commit per image, chunks of 8: a chunk is half stored for a good while.
    env = queue_env(broker, tmp_path / "data", queue_chunk_files=8, commit_every=1)
    settings = get_settings(data_dir=tmp_path / "data", broker_url=broker, queue_chunk_files=8)
    with worker(env, tmp_path / "a.log", "--concurrency", "2") as a, Lookalike(settings) as lk:
        job = enqueue_index(lk, [tmp_path / "album"], faces=False)
        deadline = time.monotonic() + 180
        while True:  # until a chunk is partly stored: images beyond the finished chunks
            done = lk.catalog.service.job(job.id)
            assert done is not None and done.status != "done", "no chunk seen in progress"
            if 2 <= lk.catalog.count_images() - done.done <= 5:
                break
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.killpg(a.pid, signal.SIGKILL)
        a.wait()
        killed = time.monotonic()
    with worker(env, tmp_path / "b.log"):
        wait_done(settings, job.id)
    # Within the redelivery time (2 s) and a sweep, not kombu's default 100 s sweep.
    assert time.monotonic() - killed < 60
    stored_once(settings, images)
    with Lookalike(settings) as lk:
        store = lk.catalog.service
        final = queued_view(store, store.job(job.id))  # type: ignore[arg-type]
        assert [c.status for c in store.chunks(job.id)] == ["done"] * 4  # the walk + 3
    assert (final.status, final.done, final.total) == ("done", 24, 24)
    report = IndexSummary.model_validate(final.report)
    assert report.indexed + report.unchanged == 24 and report.failed == []
    # The chunk done again found its first half stored already.
    assert report.unchanged >= 2


@pytest.mark.redis
@pytest.mark.slow
def test_a_worker_whose_vectors_differ_refuses(tmp_path: Path, broker: str) -> None:
    settings = get_settings(data_dir=tmp_path / "data", inference_threads=1)
    with Lookalike(settings) as lk:
        theirs = probe.compute(lk)
        theirs["cnn"] = theirs["cnn"] + np.float32(3e-3)  # another machine's rounding
        lk.catalog.service.put_meta_once(probe.reference_key(lk), probe.pack(theirs))
    done = subprocess.run(
        [*_CLI, "worker"],
        env=queue_env(broker, tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(
        "lookalike: error: this worker's cnn vectors differ from the catalog's reference "
        "by up to 0.003"
    )
    assert "refuses to index" in line and probe.machine() in line


@pytest.mark.redis
@pytest.mark.slow
def test_api_jobs_go_to_the_workers_with_a_broker(tmp_path: Path, broker: str) -> None:
    images = make_images(tmp_path / "srv" / "album", 6)
    data = tmp_path / "data"
    settings = get_settings(data_dir=data, broker_url=broker, allowed_roots=[tmp_path / "srv"])
    with TestClient(create_app(settings)) as client:
        store = client.app.state.engine.catalog.service  # type: ignore[attr-defined]
        admin = {"X-API-Key": create_key(store, "admin")[0]}
        r = client.post("/v1/jobs", json={"path": str(tmp_path / "srv" / "album")}, headers=admin)
        assert r.status_code == 202, r.text
        job = r.json()
        assert (job["status"], job["total"], job["done"]) == ("running", 6, 0)
        with worker(queue_env(broker, data), tmp_path / "w.log"):
            wait_done(settings, job["job_id"])
        got = client.get(f"/v1/jobs/{job['job_id']}", headers=admin).json()
    assert (got["status"], got["done"], got["total"]) == ("done", 6, 6)
    assert got["report"]["indexed"] == 6 and got["report"]["failed"] == []
    stored_once(settings, images)


@pytest.mark.redis
def test_a_full_recluster_goes_to_the_workers_with_a_broker(tmp_path: Path, broker: str) -> None:
    data = tmp_path / "data"
    settings = get_settings(data_dir=data, broker_url=broker)
    with TestClient(create_app(settings)) as client:
        engine: Lookalike = client.app.state.engine  # type: ignore[attr-defined]
        for name, person in (("a0", 0), ("a1", 0), ("a2", 0), ("b0", 1)):
            add_photo(engine, f"{name}.jpg", person)
        store = engine.catalog.service
        write = {"X-API-Key": create_key(store, "write")[0]}
        admin = {"X-API-Key": create_key(store, "admin")[0]}
        r = client.post("/v1/clusters/run", json={"full": True}, headers=write)
        assert r.status_code == 202, r.text
        job = r.json()
        assert (job["kind"], job["status"]) == ("cluster", "queued")
        with worker(queue_env(broker, data), tmp_path / "w.log"):
            wait_done(settings, job["job_id"])
        got = client.get(f"/v1/jobs/{job['job_id']}", headers=admin).json()
        clusters = client.get("/v1/clusters", headers=write).json()["clusters"]
    assert got["status"] == "done", got
    assert (got["report"]["faces"], got["report"]["clusters"]) == (4, 2)
    assert sorted(c["face_count"] for c in clusters) == [1, 3]


def test_uploads_go_to_the_uploads_dir_setting(tmp_path: Path) -> None:
    (image,) = make_images(tmp_path / "in", 1)
    shared = tmp_path / "shared" / "uploads"
    settings = get_settings(data_dir=tmp_path / "data", uploads_dir=shared)
    with TestClient(create_app(settings)) as client:
        store = client.app.state.engine.catalog.service  # type: ignore[attr-defined]
        key = {"X-API-Key": create_key(store, "write")[0]}
        r = client.post("/v1/images", files={"files": image.read_bytes()}, headers=key)
        assert r.status_code == 200, r.text
    (stored,) = [p for p in shared.rglob("*") if p.is_file()]
    assert stored.read_bytes() == image.read_bytes()
    assert not (tmp_path / "data" / "uploads").exists()
