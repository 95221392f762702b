"""Catalog backends: a node on a shared PostgreSQL catalog against the embedded SQLite one,
both measured in one run: ``python bench/catalog.py [write|startup]``.

Sections:

- ``catalog``: write throughput (synthetic images with a cnn vector each, recorded in
  transactions of ``commit_every`` images, as an index run commits them) and a search's p50
  (the engine's exact search of one query's rows, as ``search_one`` does after embedding) on
  a node whose catalog is PostgreSQL against one whose catalog is SQLite. Target: the search
  p50s within 10% of each other (search runs in faiss; the catalog only names the hits).
- ``catalog-startup``: a new node (an empty data folder) builds its faiss index from a
  catalog of 1,000,000 synthetic cnn vectors (``--startup-size``): time and peak memory of
  the process, SQLite against PostgreSQL, each in a process of its own. Informational; the
  index alone (1M x 1280 float32 in IVF lists) is 4.8 GiB, the floor of the peak.

PostgreSQL and Redis come from Debian's packages, started by the bench in temporary folders
on loopback ports (``lookalike.local_cluster.servers``), with ``fsync=off``, as in the tests:
the figures are the catalog's own costs, not a disk's.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import lookalike
from lookalike.local_cluster.servers import (
    missing_postgres,
    postgres_admin,
    postgres_database,
    postgres_server,
)
from sections import Target, check, informational
from speed import Mixture, synthetic_items

WRITE_N = 20_000
QUERIES = 200
K = 10
QUERY_ROWS = 5  # a query's rows: the image and its variants (speed.py's QUERY_ROWS)
STARTUP_N = 1_000_000
SEARCH_TOLERANCE = 1.10
BACKENDS = ("sqlite", "postgres")


@dataclass
class WriteRun:
    backend: str
    images_per_s: float
    search_s: list[float]


@dataclass
class StartupRun:
    backend: str
    seconds: float
    peak_mib: float
    before_mib: float


# --------------------------------------------------------------------------- helpers


def record_stream(lk: lookalike.Lookalike, mixture: Mixture, n: int, batch: int) -> float:
    """Record ``n`` synthetic images in transactions of ``batch``, generated as they go
    (bounded memory); the seconds spent recording."""
    version = lk.descriptor("cnn").version
    rng = np.random.default_rng(1)
    spent = 0.0
    for first in range(0, n, batch):
        chunk = synthetic_items(mixture.sample(min(batch, n - first), rng), first, version)
        t0 = time.perf_counter()
        lk.catalog.record(chunk)
        spent += time.perf_counter() - t0
    return spent


@contextlib.contextmanager
def private_postgres() -> Iterator[str]:
    """The URL of a PostgreSQL server of this run's own (its ``postgres`` database)."""
    with postgres_server() as url:
        yield url


def catalog_urls(server_url: str, part: str) -> dict[str, str | None]:
    """The catalog URL of each backend for one part: None (the data folder's SQLite file)
    and a new PostgreSQL database."""
    postgres_admin(server_url, f"CREATE DATABASE bench_{part}")
    return {"sqlite": None, "postgres": postgres_database(server_url, f"bench_{part}")}


def open_node(folder: Path, url: str | None, **settings: object) -> lookalike.Lookalike:
    return lookalike.open(folder, catalog_url=url, **settings)


# --------------------------------------------------------------------------- write + search


def bench_write(work: Path, urls: dict[str, str | None], n: int) -> list[WriteRun]:
    mixture = Mixture(effnet_dim())
    queries = [mixture.sample(QUERY_ROWS, np.random.default_rng(2 + i)) for i in range(QUERIES)]
    runs = []
    for backend in BACKENDS:
        with open_node(work / f"write-{backend}", urls[backend], ann_threshold=10**12) as lk:
            spent = record_stream(lk, mixture, n, lk.settings.commit_every)
            print(f"{backend}: {n:,} images recorded in {spent:.1f} s", flush=True)
            runs.append(WriteRun(backend, n / spent, []))
    # Searches take turns between the two nodes, so drifts in load hit both alike.
    with contextlib.ExitStack() as stack:
        nodes = [
            stack.enter_context(open_node(work / f"write-{b}", urls[b], ann_threshold=10**12))
            for b in BACKENDS
        ]
        for lk in nodes:  # warm-up: indexes built, caches filled
            for q in queries[:5]:
                lk.search_vectors(q, k=K, descriptor="cnn")
        for i, q in enumerate(queries):
            order = list(enumerate(nodes))
            for j, lk in order[i % 2 :] + order[: i % 2]:
                _, t = common.timed(functools.partial(lk.search_vectors, q, k=K, descriptor="cnn"))
                runs[j].search_s.append(t)
    return runs


def effnet_dim() -> int:
    from lookalike.models import effnet

    return int(effnet.FEATURE_DIM)


# --------------------------------------------------------------------------- start-up


def bench_startup(work: Path, urls: dict[str, str | None], n: int) -> list[StartupRun]:
    mixture = Mixture(effnet_dim())
    runs = []
    for backend in BACKENDS:
        seed = work / f"seed-{backend}"
        with open_node(seed, urls[backend]) as lk:
            spent = record_stream(lk, mixture, n, 2_000)
            print(f"{backend}: {n:,} vectors recorded in {spent:.0f} s", flush=True)
        # A new node: the catalog, but no index file of its own.
        node = work / f"node-{backend}"
        if backend == "sqlite":
            node.mkdir()
            (seed / "catalog.sqlite3").rename(node / "catalog.sqlite3")
        cmd = [sys.executable, __file__, "--child-build", str(node)]
        if urls[backend]:
            cmd += ["--catalog-url", str(urls[backend])]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        runs.append(StartupRun(backend, **figures))
        print(f"{backend}: {figures}", flush=True)
    return runs


def child_build(folder: Path, url: str | None) -> None:
    """Open the node, build its cnn index from the catalog; print the seconds it took, the
    process's peak RSS and its RSS before the build (MiB), as JSON."""
    with open_node(folder, url) as lk:
        desc = lk.descriptor("cnn")
        before = rss_mib()
        t0 = time.perf_counter()
        index = lk.indexes.get(desc)
        seconds = time.perf_counter() - t0
        assert len(index.ids()) > 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mib": peak, "before_mib": before}))


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --------------------------------------------------------------------------- report


def ms(values: list[float]) -> float:
    return statistics.median(values) * 1e3


def render_write(runs: list[WriteRun], n: int) -> str:
    rows = [[r.backend, f"{r.images_per_s:,.0f}", f"{ms(r.search_s):.3f}"] for r in runs]
    return "\n".join(
        [
            "## Catalog: PostgreSQL against SQLite (writes, search)",
            "",
            f"{n:,} synthetic images with one 1280-d cnn vector each, recorded by one process "
            "in transactions of `commit_every` (64) images; then "
            f"{QUERIES} searches of {QUERY_ROWS} rows each (exact, k={K}) taking turns "
            "between the two nodes. PostgreSQL 15 on loopback with `fsync=off` (so is "
            "nothing of SQLite's: WAL, `synchronous=NORMAL`).",
            "",
            common.table(["catalog", "images/s written", "search p50 (ms)"], rows),
        ]
    )


def write_targets(runs: list[WriteRun]) -> list[Target]:
    sqlite, pg = runs
    ratio = ms(pg.search_s) / ms(sqlite.search_s)
    return [
        check(
            "search p50 on a PostgreSQL-backed node / on the SQLite default",
            ratio,
            "<=",
            SEARCH_TOLERANCE,
        ),
        informational(
            "write throughput, PostgreSQL / SQLite",
            f"{pg.images_per_s / sqlite.images_per_s:.2f}x "
            f"({pg.images_per_s:,.0f} / {sqlite.images_per_s:,.0f} images/s)",
        ),
    ]


def render_startup(runs: list[StartupRun], n: int) -> str:
    rows = [
        [r.backend, f"{r.seconds:.1f}", f"{r.peak_mib:,.0f}", f"{r.before_mib:,.0f}"] for r in runs
    ]
    return "\n".join(
        [
            "## Catalog: a new node's start-up from 1M vectors",
            "",
            f"A new node (empty data folder) builds its cnn index (IVF) from a catalog of "
            f"{n:,} synthetic 1280-d vectors, in a process of its own; the vectors are read "
            "from the catalog in batches. Peak: the process's maximum RSS; the index alone "
            f"holds {n * 1280 * 4 / 2**30:.1f} GiB.",
            "",
            common.table(["catalog", "build (s)", "peak RSS (MiB)", "RSS before (MiB)"], rows),
        ]
    )


def startup_targets(runs: list[StartupRun], n: int) -> list[Target]:
    sqlite, pg = runs
    index_mib = n * 1280 * 4 / 2**20
    return [
        informational(
            f"start-up from {n:,} vectors, PostgreSQL / SQLite time",
            f"{pg.seconds / sqlite.seconds:.2f}x ({pg.seconds:.0f} s / {sqlite.seconds:.0f} s)",
        ),
        informational(
            "peak RSS over the index's own size, PostgreSQL / SQLite",
            f"{(pg.peak_mib - index_mib):,.0f} / {(sqlite.peak_mib - index_mib):,.0f} MiB",
        ),
    ]


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("parts", nargs="*", metavar="PART", help="write, startup (default: both)")
    parser.add_argument("--write-size", type=int, default=WRITE_N)
    parser.add_argument("--startup-size", type=int, default=STARTUP_N)
    parser.add_argument("--child-build", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--catalog-url", help=argparse.SUPPRESS)
    common.add_output_arguments(parser, quick="2,000 images written, 50,000 start-up vectors")
    args = parser.parse_args(argv)
    if args.child_build:
        child_build(args.child_build, args.catalog_url)
        return 0
    out = common.Output.from_args(args, quick="2,000 images written, 50,000 start-up vectors")
    why = missing_postgres()
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    parts = args.parts or ["write", "startup"]
    unknown = set(parts) - {"write", "startup"}
    if unknown:
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    write_n = 2_000 if args.quick else args.write_size
    startup_n = 50_000 if args.quick else args.startup_size
    with common.temp_dir("catalog") as work, private_postgres() as server:
        if "write" in parts:
            runs = bench_write(work, catalog_urls(server, "write"), write_n)
            out.write("catalog", render_write(runs, write_n), write_targets(runs))
        if "startup" in parts:
            starts = bench_startup(work, catalog_urls(server, "startup"), startup_n)
            out.write(
                "catalog-startup",
                render_startup(starts, startup_n),
                startup_targets(starts, startup_n),
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
