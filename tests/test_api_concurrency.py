"""A real server with two worker processes on one data folder, hit by several client
processes at once: every upload is kept, and every worker's searches see all of them."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import httpx
import pytest
from PIL import ImageEnhance

from tests.servers import free_port, stop

from .conftest import SAMPLES, sample

CLIENTS = 4
PER_CLIENT = 10


def distinct_images(n: int) -> list[bytes]:
    """``n`` JPEGs, all different bytes: crops and colour shifts of the sample photos."""
    out: list[bytes] = []
    for i in range(n):
        image = sample(SAMPLES[i % len(SAMPLES)])
        step = i // len(SAMPLES)
        w, h = image.size
        image = image.crop((step * 9, step * 5, w - step * 4, h - step * 7))
        image = ImageEnhance.Color(image).enhance(1.0 + 0.08 * step)
        image.thumbnail((320, 320))
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=88)
        out.append(buf.getvalue())
    assert len({hashlib.sha256(b).digest() for b in out}) == n
    return out


def upload_all(base: str, key: str, paths: list[str]) -> list[tuple[int, str]]:
    """One client process: each image in its own request, on a fresh connection."""
    answers = []
    for p in paths:
        r = httpx.post(
            f"{base}/v1/images",
            files={"files": (Path(p).name, Path(p).read_bytes(), "image/jpeg")},
            headers={"X-API-Key": key},
            timeout=300,
        )
        answers.append((r.status_code, r.text))
    return answers


def search_all(base: str, key: str, paths: list[str]) -> list[tuple[int, str]]:
    answers = []
    for p in paths:
        r = httpx.post(
            f"{base}/v1/search",
            files={"file": (Path(p).name, Path(p).read_bytes(), "image/jpeg")},
            data={"k": "100"},
            headers={"X-API-Key": key},
            timeout=300,
        )
        answers.append((r.status_code, r.text))
    return answers


def requests_by_worker(tmp: Path, method: str, route: str) -> Counter[str]:
    """Requests to ``method route`` answered per worker process (from its metrics file)."""
    from prometheus_client.mmap_dict import MmapedDict

    counts: Counter[str] = Counter()
    for f in tmp.glob("lookalike-metrics-*/counter_*.db"):
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(f)):  # type: ignore[no-untyped-call]
            _, name, labels, _ = json.loads(key)
            if name == "lookalike_http_requests_total" and labels == {
                "method": method,
                "route": route,
                "status": "200",
            }:
                counts[f.stem] += int(value)
    return counts


@pytest.mark.slow
def test_two_workers_lose_no_upload_and_see_each_others(tmp_path: Path) -> None:
    data = tmp_path / "data"
    tmp = tmp_path / "tmp"  # where `serve` puts its per-worker metrics folder
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "LOOKALIKE_DATA_DIR": str(data)}
    cli = [sys.executable, "-m", "lookalike.cli"]
    created = subprocess.run(
        [*cli, "keys", "create", "--scope", "write", "--json", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    key = json.loads(created.stdout)["key"]

    folder = tmp_path / "images"
    folder.mkdir()
    images = distinct_images(CLIENTS * PER_CLIENT)
    paths = []
    for i, blob in enumerate(images):
        (folder / f"img{i:02d}.jpg").write_bytes(blob)
        paths.append(str(folder / f"img{i:02d}.jpg"))

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [*cli, "serve", "--workers", "2", "--port", str(port), "--data-dir", str(data)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)

        shares = [paths[i::CLIENTS] for i in range(CLIENTS)]
        with ProcessPoolExecutor(CLIENTS, mp_context=get_context("spawn")) as pool:
            uploads = list(pool.map(upload_all, [base] * CLIENTS, [key] * CLIENTS, shares))
            answers = [a for client in uploads for a in client]
            assert [status for status, _ in answers] == [200] * len(paths), answers
            ids = {json.loads(text)["images"][0]["sha256"] for _, text in answers}
            expected = {hashlib.sha256(b).hexdigest() for b in images}
            assert ids == expected

            listing = httpx.get(
                f"{base}/v1/images", params={"limit": 1000}, headers={"X-API-Key": key}
            ).json()
            assert listing["total"] == len(images)
            assert {i["sha256"] for i in listing["images"]} == expected

            queries = [paths[i : i + 5] for i in range(0, 5 * 2 * CLIENTS, 5)]
            searches = list(
                pool.map(search_all, [base] * len(queries), [key] * len(queries), queries)
            )
        for share, answers in zip(queries, searches, strict=True):
            for p, (status, text) in zip(share, answers, strict=True):
                assert status == 200, text
                hits = json.loads(text)["results"]
                assert len(hits) == len(images)  # every image, whichever worker answered
                assert hits[0]["sha256"] == hashlib.sha256(Path(p).read_bytes()).hexdigest()
        # Both workers took uploads and answered searches.
        assert len(requests_by_worker(tmp, "POST", "/v1/images")) == 2
        assert len(requests_by_worker(tmp, "POST", "/v1/search")) == 2
    finally:
        stop(server, timeout=60)
    text = log.read_text(errors="replace")
    assert "database is locked" not in text
    assert "Traceback" not in text, text[-4000:]
