"""A whole scale-out lookalike on one machine (``lookalike.local_cluster``, what ``lookalike
cluster up`` runs): one PostgreSQL catalog, Redis for the cache and the broker, two API
servers and two Celery workers, each with a data folder of its own.
"""

from __future__ import annotations

import hashlib
import io
import json
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import lookalike
from lookalike.cli.main import cli
from lookalike.local_cluster.up import local_cluster
from lookalike.store.base import NewImage
from tests import servers

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

UPLOADS = 200
CLIENTS = 4
QUEUED = 24


def _photo(seed: int) -> bytes:
    """A small JPEG of coloured blocks, different for every seed."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(blocks).resize((160, 120), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def _client() -> httpx.Client:
    """A client that opens a new connection per request: a server closes a keep-alive
    connection idle for 5 s (uvicorn's default), and a request sent on it at that moment
    is reset, which httpx does not retry for a POST (seen on a loaded 2-core machine)."""
    return httpx.Client(timeout=120, limits=httpx.Limits(max_keepalive_connections=0))


def _upload(client: httpx.Client, base: str, name: str, data: bytes) -> int:
    answer = client.post(f"{base}/v1/images", files={"files": (name, data, "image/jpeg")})
    assert answer.status_code == 200, answer.text
    (image,) = answer.json()["images"]
    return int(image["image_id"])


def _wait_for_job(client: httpx.Client, base: str, job_id: int) -> dict[str, object]:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        job: dict[str, object] = client.get(f"{base}/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} not done in 300 s")


def _all_images(client: httpx.Client, base: str) -> list[dict[str, object]]:
    page = client.get(f"{base}/v1/images", params={"limit": 1000}).json()
    assert page["total"] == len(page["images"])
    images: list[dict[str, object]] = page["images"]
    return images


def test_status_on_any_node_names_the_shared_parts_and_counts_the_shared_catalog(
    tmp_path: Path, postgres_catalog_url: str, redis_url: str
) -> None:
    redis = redis_url.rsplit("/", 1)[0]
    urls = ["--catalog-url", postgres_catalog_url, "--cache-url", f"{redis}/2"]
    urls += ["--broker-url", f"{redis}/3"]
    with lookalike.open(tmp_path / "a", catalog_url=postgres_catalog_url) as node_a:
        node_a.catalog.record([_new_image(i) for i in range(3)])
    # Another node, with a data folder of its own, counts what the first recorded.
    done = CliRunner().invoke(cli, [*urls, "--data-dir", str(tmp_path / "b"), "status", "--json"])
    assert done.exit_code == 0, done.output
    found = json.loads(done.stdout)
    assert found["image_count"] == 3
    parts = {p["part"]: p for p in found["parts"]}
    assert {name: (p["kind"], p["answers"]) for name, p in parts.items()} == {
        "catalog": ("postgresql", True),
        "cache": ("redis", True),
        "broker": ("redis", True),
    }
    assert parts["catalog"]["where"].startswith("postgresql://postgres@127.0.0.1:")
    # A broker that does not answer is named as such; status itself still answers.
    urls[-1] = f"redis://127.0.0.1:{servers.free_port()}/0"
    done = CliRunner().invoke(cli, [*urls, "--data-dir", str(tmp_path / "b"), "status"])
    assert done.exit_code == 0, done.output
    assert "broker: redis redis://127.0.0.1:" in done.stdout
    assert "does NOT answer" in done.stdout


def _new_image(i: int) -> NewImage:
    return NewImage(f"{i:064x}", f"/shared/{i}.jpg", 1, 0, 4, 4, "JPEG", {})


@pytest.mark.slow
def test_two_servers_and_two_workers_share_one_catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for why in (servers.missing_postgres(), servers.missing_redis()):
        if why:
            pytest.skip(why)
    photos = tmp_path / "photos"
    photos.mkdir()
    queued = {}
    for i in range(QUEUED):
        data = _photo(10_000 + i)
        (photos / f"{i}.jpg").write_bytes(data)
        queued[hashlib.sha256(data).hexdigest()] = data
    monkeypatch.setenv("LOOKALIKE_ALLOWED_ROOTS", json.dumps([str(photos)]))
    monkeypatch.setenv("LOOKALIKE_QUEUE_CHUNK_FILES", "4")
    uploads = {i: _photo(i) for i in range(UPLOADS)}
    with local_cluster(tmp_path / "cluster", servers=2, workers=2) as running:
        a, b = running.servers

        # 200 uploads from 4 clients at once, each client's spread over both servers.
        def client(first: int) -> dict[int, int]:
            ids = {}
            with _client() as http:
                for i in range(first, UPLOADS, CLIENTS):
                    ids[i] = _upload(
                        http, running.servers[(i // CLIENTS) % 2], f"{i}.jpg", uploads[i]
                    )
            return ids

        with ThreadPoolExecutor(CLIENTS) as pool:
            ids = {k: v for part in pool.map(client, range(CLIENTS)) for k, v in part.items()}
        with _client() as http:
            # A folder queued through one server, done by the workers, watched on the other.
            job = http.post(f"{a}/v1/jobs", json={"path": str(photos)}).json()
            finished = _wait_for_job(http, b, int(job["job_id"]))
            assert finished["status"] == "done", finished
            assert finished["done"] == QUEUED

            # Every image stored once, the same catalog seen from both servers.
            seen = [_all_images(http, base) for base in (a, b)]
            assert seen[0] == seen[1]
            shas = [str(image["sha256"]) for image in seen[0]]
            assert len(shas) == len(set(shas)) == UPLOADS + QUEUED
            expected = {hashlib.sha256(d).hexdigest() for d in uploads.values()} | set(queued)
            assert set(shas) == expected
            assert len(set(ids.values())) == UPLOADS

            # Each server finds every image, whichever server or worker indexed it.
            everything = [*uploads.values(), *queued.values()]
            for base in (a, b):
                for data in everything:
                    answer = http.post(
                        f"{base}/v1/search", files={"file": ("q.jpg", data)}, data={"k": "1"}
                    ).json()
                    (top,) = answer["results"]
                    assert top["sha256"] == hashlib.sha256(data).hexdigest()
                    assert top["score"] == pytest.approx(1.0, abs=1e-4)


@pytest.mark.slow
def test_cluster_up_prints_where_its_parts_answer_and_stops_them_all(tmp_path: Path) -> None:
    for why in (servers.missing_postgres(), servers.missing_redis()):
        if why:
            pytest.skip(why)
    folder = tmp_path / "trial"
    argv = [sys.executable, "-m", "lookalike.cli", "cluster", "up", "--servers", "1"]
    argv += ["--workers", "1", "--folder", str(folder)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not lines or lines[-1] != "Ctrl-C stops it.":
            line = process.stdout.readline()
            assert line, f"cluster up ended early: {lines}"
            lines.append(line.rstrip("\n"))
        base = lines[0].split()[1]
        settings = dict(line.split()[1].split("=", 1) for line in lines if "export " in line)
        assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
        assert settings["LOOKALIKE_CATALOG_URL"].startswith("postgresql://")
        ports = [urlsplit(settings[f"LOOKALIKE_{p}_URL"]).port for p in ("CATALOG", "CACHE")]
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) == 0
    assert not any(p is not None and servers.port_open(p) for p in ports)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{base}/healthz", timeout=2)
    assert (folder / "logs" / "worker0.log").exists()
