"""Result cache benchmark: a repeated search through HTTP, cache hit against miss.

A data folder holds a collection of ``--size`` images (default 10,000): scikit-image's
photos indexed for real and synthetic cnn vectors recorded straight into the catalog for
the rest (``speed.Mixture`` and ``speed.record_synthetic``, as ``bench/http.py`` builds its
collection). A real Redis (``redis-server`` in a temporary folder on a free loopback port,
``maxmemory 256mb``, ``allkeys-lru``) and a real ``lookalike serve`` (one worker,
``LOOKALIKE_CACHE_URL`` pointing at that Redis) run for the measurement.

The queries are ``--distinct`` JPEGs, each a different crop of a scikit-image photo, new to
the cache. Each is uploaded to ``POST /v1/search`` (k=10, cnn) once, a **miss** (decode,
embed with 4 rotations, faiss search, catalog lookup; then its vectors and ranking stored),
and then ``--hits`` times more, **hits** (the upload hashed, one Redis GET, the hits' paths
read from the catalog). Misses and hits interleave, so drifts in the machine's load touch
both; every hit is checked to answer as its miss did, from the cache (``timing_ms`` holds
only ``cache``). Then the same images once each against a server without a cache
(**cache off**): what a miss costs over no cache at all.

Target: hit p50 <= 1/10 of miss p50.

Usage: ``python bench/cache.py [--size N] [--distinct N] [--hits N] [--quick] [--no-write]``
"""

# Imports come after the sys.path fix below.
# ruff: noqa: E402

from __future__ import annotations

import sys
from pathlib import Path

# bench/http.py would shadow the standard library's ``http`` (imported by httpx): this
# folder goes to the end of sys.path, after the standard library.
BENCH = Path(__file__).resolve().parent
for entry in list(sys.path):
    if Path(entry or ".").resolve() == BENCH:
        sys.path.remove(entry)
sys.path.append(str(BENCH))

import argparse
import functools
import os
import re
import shutil
import time

import httpx
import numpy as np

import common
import lookalike
from lookalike.local_cluster.servers import redis_server
from lookalike.models import effnet
from lookalike.serve.keys import create_key
from sections import Target, check, informational
from speed import Mixture, record_synthetic

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left")
K = 10
TARGET = 0.1  # hit p50 / miss p50
QUICK = "2,000 images, 10 distinct queries, 2 hits each"
REDIS_MEMORY = "256mb"


def queries(count: int) -> list[bytes]:
    """``count`` distinct JPEGs: crops of the photos at shifting offsets, ~480 px high."""
    sources = [common.skimage_photo(n) for n in PHOTOS]
    out: list[bytes] = []
    for i in range(count):
        image = sources[i % len(sources)]
        dx, dy = 3 * (i // len(sources)) + 1, 2 * (i // len(sources)) + 1
        crop = image.crop((dx, dy, image.width - dx, image.height - dy))
        out.append(common.jpeg(crop.resize((crop.width * 480 // crop.height, 480))))
    assert len(set(out)) == count, "the queries must differ"
    return out


def build(work: Path, size: int) -> Path:
    """The data folder: the photos indexed, synthetic cnn vectors for the rest."""
    album = work / "album"
    album.mkdir()
    for name in PHOTOS:
        (album / f"{name}.jpg").write_bytes(common.jpeg(common.skimage_photo(name)))
    data_dir = work / "data"
    with lookalike.open(data_dir) as lk:
        desc = lk.descriptor("cnn")
        x = Mixture(effnet.FEATURE_DIM).fill(size - len(PHOTOS), seed=1)
        _, record_s = common.timed(functools.partial(record_synthetic, lk, x, desc.version))
        lk.index([album], faces=False, progress=False)
        assert lk.catalog.count_images() == size, lk.catalog.count_images()
    print(f"collection: {size:,} images (synthetic ones recorded in {record_s:.1f}s)", flush=True)
    return data_dir


def search(client: httpx.Client, data: bytes) -> tuple[float, dict[str, object]]:
    """Seconds for one ``POST /v1/search`` (sending to parsed answer) and its JSON."""
    t0 = time.perf_counter()
    r = client.post("/v1/search", files={"file": ("q.jpg", data, "image/jpeg")}, data={"k": K})
    answer = r.json()
    took = time.perf_counter() - t0
    if r.status_code != 200:
        raise RuntimeError(f"/v1/search: {r.status_code} {r.text[:300]}")
    return took, answer


def shas(answer: dict[str, object]) -> list[str]:
    return [h["sha256"] for h in answer["results"]]  # type: ignore[attr-defined]


def counters(client: httpx.Client) -> dict[str, float]:
    """The server's cache counters of answers (``hits``, ``misses``, ``errors``)."""
    text = client.get("/metrics").text
    found = re.findall(r'^lookalike_cache_(\w+)_total\{kind="answers"\} (\S+)$', text, re.M)
    return {name: float(value) for name, value in found}


def measure_cached(
    client: httpx.Client, images: list[bytes], hits: int
) -> tuple[list[float], list[float]]:
    """Seconds per miss and per hit: each image once (a miss), then ``hits`` times (hits)."""
    missed: list[float] = []
    hit: list[float] = []
    for data in images:
        took, first = search(client, data)
        assert "decode" in first["timing_ms"], first["timing_ms"]  # type: ignore[operator]
        missed.append(took)
        for _ in range(hits):
            took, again = search(client, data)
            assert set(again["timing_ms"]) == {"cache"}, again["timing_ms"]  # type: ignore[call-overload]
            assert shas(again) == shas(first)
            hit.append(took)
    return missed, hit


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def render(
    size: int, rows: list[tuple[str, list[float]]], hits: int, seen: dict[str, float]
) -> str:
    table = common.table(
        ["requests", "count", "p50 ms", "p90 ms"],
        [(name, len(t), ms(pct(t, 50)), ms(pct(t, 90))) for name, t in rows],
    )
    return "\n\n".join(
        [
            "## Result cache (Redis): a repeated search through HTTP",
            f"`POST /v1/search` (k={K}, cnn) to a real `lookalike serve` (one worker) on a "
            f"collection of {size:,} images, with `LOOKALIKE_CACHE_URL` at a private "
            f"`redis-server` on loopback (`maxmemory {REDIS_MEMORY}`, `allkeys-lru`). "
            "Each query is a JPEG new to the cache (a crop of a scikit-image photo, 480 px "
            f"high): one upload is a *miss* (decode, embed, search, then stored), the next "
            f"{hits} are *hits* (the upload hashed, a Redis GET, the hits' paths read from the "
            "catalog), interleaved; every hit answered as its miss did. *Cache off*: the same "
            "images once each to a server without a cache. Times are from sending the "
            "request to the parsed answer, over one keep-alive connection.",
            table,
            "The server's own counters (`/metrics`, kind `answers`): "
            + ", ".join(f"{k} {v:.0f}" for k, v in sorted(seen.items()))
            + ".",
            "Run it: `python bench/cache.py` (needs Debian's `redis-server`).",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size", type=int, default=10_000, help="images in the collection")
    parser.add_argument("--distinct", type=int, default=40, help="distinct query images")
    parser.add_argument("--hits", type=int, default=3, help="repeats of each query")
    common.add_output_arguments(parser, QUICK)
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.distinct, args.hits = min(args.size, 2_000), min(args.distinct, 10), 2
    out = common.Output.from_args(args, QUICK)
    heading = "## Result cache (Redis): a repeated search through HTTP"
    target = check("hit p50 / miss p50, POST /v1/search through HTTP", float("nan"), "<=", TARGET)
    if shutil.which("redis-server") is None:
        out.skipped("cache", heading, [target], "redis-server is not installed")
        return common.EXIT_SKIPPED

    with common.temp_dir("cache") as work:
        data_dir = build(work, args.size)
        with lookalike.open(data_dir) as lk:
            headers = {"X-API-Key": create_key(lk.catalog.service, "read", "bench")[0]}
        images = queries(args.distinct)
        log = work / "server.log"
        server_args = ["--workers", "1", "--data-dir", str(data_dir)]
        lru = ("--maxmemory", REDIS_MEMORY, "--maxmemory-policy", "allkeys-lru")
        with redis_server(work / "redis", options=lru) as url:
            env = {**os.environ, "LOOKALIKE_CACHE_URL": url}
            with (
                common.lookalike_server(server_args, log, env=env) as (base, _),
                httpx.Client(base_url=base, headers=headers, timeout=600) as client,
            ):
                search(
                    client, common.jpeg(common.skimage_photo("chelsea").rotate(1))
                )  # models loaded, index built
                missed, hit = measure_cached(client, images, args.hits)
                seen = counters(client)
        plain = {k: v for k, v in os.environ.items() if k != "LOOKALIKE_CACHE_URL"}
        with (
            common.lookalike_server(server_args, log, env=plain) as (base, _),
            httpx.Client(base_url=base, headers=headers, timeout=600) as client,
        ):
            search(client, images[0])
            off = [search(client, data)[0] for data in images]
    ratio = pct(hit, 50) / pct(missed, 50)
    met = ratio <= TARGET
    print(
        f"miss p50 {ms(pct(missed, 50))} ms, hit p50 {ms(pct(hit, 50))} ms, cache off p50 "
        f"{ms(pct(off, 50))} ms: hit/miss {ratio:.3f}, target <= {TARGET}: "
        + ("met" if met else "NOT met"),
        flush=True,
    )
    targets: list[Target] = [
        check("hit p50 / miss p50, POST /v1/search through HTTP", ratio, "<=", TARGET, "{:.3f}"),
        informational(
            "miss p50 / cache off p50 (what a miss adds)", f"{pct(missed, 50) / pct(off, 50):.2f}"
        ),
    ]
    rows = [("miss", missed), ("hit", hit), ("cache off", off)]
    out.write("cache", render(args.size, rows, args.hits, seen), targets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
