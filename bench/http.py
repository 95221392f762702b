"""HTTP benchmark: what the REST API adds to the library, and its throughput.

A data folder holds a 10,000-image collection: the query photos (scikit-image samples,
indexed for real) and synthetic cnn vectors recorded straight into the catalog for the
rest (``speed.Mixture`` and ``speed.record_synthetic``, as ``bench/speed.py search`` builds
its collections), plus a few enrolled people (real faces from ``faces-photos`` when the
evaluation data is there, else scikit-image's astronaut). Searching stays the real path:
``search_one`` on the uploaded bytes decodes, embeds (cnn, 4 rotations), searches faiss
and looks the hits up in the catalog.

Measured in one run, against a real ``lookalike serve`` (uvicorn, in a subprocess, on
loopback, with a read key):

a) library: ``engine.search_one(bytes, k=10)`` and ``engine.people.identify(bytes)`` in
   this process, on the same data folder;
b) HTTP, one client: ``POST /v1/search`` (k=10) and ``POST /v1/faces/identify`` with the same
   bytes uploaded (one keep-alive connection); library and HTTP calls take turns in blocks
   of BLOCK calls, so that drifts in the machine's load hit both while each side runs in
   its steady state (calls alternating one by one between two processes slow both down,
   through the caches); ratio = HTTP p50 / library p50 (target <= 1.3 for search);
c) throughput: 1 and CLIENTS concurrent clients (threads, one connection each) against
   ``--workers 1`` and ``--workers 2``: requests/s and latency p50/p99.
d) ``concurrency``: 1 and CLIENTS concurrent clients against ``--workers 1`` of this tree
   and of a baseline revision (``--baseline REV``, checked out into a temporary git
   worktree and served with ``PYTHONPATH`` pointing at it; each side on a data folder its
   own code built, so that catalog schemas and descriptor versions match the code reading
   them, and both checked to answer alike), taking turns round by round:
   ``POST /v1/search`` (upload) and ``GET /v1/images/{id}/similar`` (the stored vector
   searched: no decoding or embedding, so the index search is most of the work). Writes its
   own section. Target: with CLIENTS clients, this tree answers at least as many requests/s
   as the baseline, on both routes.

Usage: ``python bench/http.py [api] [concurrency] [--size N] [--calls N] [--clients C]
[--requests R] [--baseline REV] [--rounds N] [--data DIR] [--no-write]``
"""

# Imports come after the sys.path fix below.
# ruff: noqa: E402

from __future__ import annotations

import sys
from pathlib import Path

# This file's name shadows the standard library's ``http`` (imported by httpx and uvicorn):
# take its folder off the front of sys.path before anything imports it.
BENCH = Path(__file__).resolve().parent
for entry in list(sys.path):
    if Path(entry or ".").resolve() == BENCH:
        sys.path.remove(entry)

import argparse
import contextlib
import csv
import dataclasses
import functools
import json
import os
import shutil
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version

import httpx
import numpy as np
from PIL import Image

sys.path.append(str(BENCH))

import common
import lookalike
from lookalike.decode import sha256_hex
from lookalike.faces.read import NamedBytes
from lookalike.models import effnet
from lookalike.serve.keys import create_key
from sections import Target, check, informational
from speed import Mixture, record_synthetic

PARTS = ("api", "concurrency")
# main just before searches in one worker ran concurrently (and index files had a
# checksum): the default "before" of the concurrency part.
BASELINE = "84cafd0"
QUERIES = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left")
K = 10
TARGET = 1.3  # HTTP p50 / library p50 for an uploaded search query
TARGET_CONCURRENCY = 1.0  # this tree's requests/s / the baseline's, several clients
QUICK = "30 sequential calls per side, 10 requests per client, one concurrency round"
ENROL_PER_PERSON = 2
MAX_PEOPLE = 6
FACE_QUERIES = 4
BLOCK = 10  # sequential calls per side before switching sides


# --------------------------------------------------------------------------- data


@dataclass
class Query:
    name: str
    data: bytes
    image_id: int = 0  # its id in the catalog, when it is indexed


@dataclass
class Collection:
    data_dir: Path
    size: int
    searches: list[Query]
    faces: list[Query]
    people: list[str]
    examples: int  # enrolled per person
    faces_source: str
    record_s: float


def faces_folder(given: Path | None) -> Path | None:
    """``faces-photos`` of the evaluation data, if there (this benchmark runs without)."""
    env = os.environ.get(common.DATA_ENV)
    root = given or (Path(env) if env else common.DEFAULT_DATA)
    folder = root.expanduser() / "faces-photos"
    return folder if (folder / "labels.csv").is_file() else None


def enrol_people(
    lk: lookalike.Lookalike, folder: Path | None
) -> tuple[list[str], int, list[Query], str]:
    """Enrol a few people; returns their names, examples per person, identification
    queries (photos of them that were not enrolled) and where the faces came from."""
    if folder is None:
        astronaut = common.skimage_photo("astronaut")
        lk.people.enrol("Eileen Collins", [NamedBytes(common.jpeg(astronaut), "astronaut.jpg")])
        mirrored = astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        queries = [
            Query("astronaut-mirrored.jpg", common.jpeg(mirrored)),
            Query("astronaut-small.jpg", common.jpeg(astronaut.resize((300, 300)))),
        ]
        return ["Eileen Collins"], 1, queries, "scikit-image's astronaut (no faces-photos found)"
    by_person: dict[str, list[Path]] = {}
    with (folder / "labels.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            by_person.setdefault(row["person"], []).append(folder / row["path"])
    names: list[str] = []
    queries: list[Query] = []
    for person, paths in sorted(by_person.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        if len(names) == MAX_PEOPLE or len(paths) <= ENROL_PER_PERSON:
            continue
        enrolled: list[Path] = []
        for p in paths:
            if len(enrolled) == ENROL_PER_PERSON:
                break
            with contextlib.suppress(lookalike.LookalikeError):  # not exactly one usable face
                lk.people.enrol(person, [p])
                enrolled.append(p)
        if len(enrolled) < ENROL_PER_PERSON:
            continue
        names.append(person)
        rest = [p for p in paths if p not in enrolled]
        if len(queries) < FACE_QUERIES and rest:
            queries.append(Query(f"{person}/{rest[0].name}", rest[0].read_bytes()))
    return names, ENROL_PER_PERSON, queries, f"`{os.path.relpath(folder, common.REPO)}`"


def build(work: Path, size: int, faces_from: Path | None, people: bool = True) -> Collection:
    """The data folder: query photos indexed, synthetic vectors for the rest, people (unless
    ``people`` is False)."""
    photos = work / "queries"
    photos.mkdir()
    searches = []
    for name in QUERIES:
        data = common.jpeg(common.skimage_photo(name))
        (photos / f"{name}.jpg").write_bytes(data)
        searches.append(Query(f"{name}.jpg", data))
    data_dir = work / "data"
    with lookalike.open(data_dir) as lk:
        desc = lk.descriptor("cnn")
        x = Mixture(effnet.FEATURE_DIM).fill(size - len(searches), seed=1)
        _, record_s = common.timed(functools.partial(record_synthetic, lk, x, desc.version))
        lk.index([photos], faces=False, progress=False)
        for q in searches:
            row = lk.catalog.image_by_sha(sha256_hex(q.data))
            assert row is not None, q.name
            q.image_id = row.id
        names, examples, faces, source = (
            enrol_people(lk, faces_from) if people else ([], 0, [], "nowhere")
        )
        assert lk.catalog.count_images() == size, lk.catalog.count_images()
    print(
        f"collection: {size:,} images ({size - len(searches):,} synthetic, recorded in "
        f"{record_s:.1f}s), {len(names)} people enrolled from {source}",
        flush=True,
    )
    return Collection(data_dir, size, searches, faces, names, examples, source, record_s)


def read_key(data_dir: Path) -> dict[str, str]:
    """Headers with a new read key of the server that will serve ``data_dir``."""
    with lookalike.open(data_dir) as lk:
        token, _ = create_key(lk.catalog.service, "read", "bench")
    return {"X-API-Key": token}


@dataclass
class Side:
    """One server of the concurrency part: its code, data folder, queries and key."""

    name: str
    src: Path | None  # the src folder of another checkout; None: this tree
    data_dir: Path
    queries: list[Query]  # with this side's image ids
    headers: dict[str, str]


def build_with(src: Path, work: Path, size: int, queries: list[Query]) -> Side:
    """The collection (without people) built by the code in ``src``: this file's ``build``
    run in a subprocess with ``PYTHONPATH`` pointing there; ``queries`` get its ids."""
    work.mkdir()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--build-into", str(work)]
    subprocess.run(
        [*cmd, "--size", str(size)], env={**os.environ, "PYTHONPATH": str(src)}, check=True
    )
    made = json.loads((work / "collection.json").read_text())
    ids: dict[str, int] = made["ids"]
    mine = [dataclasses.replace(q, image_id=ids[q.name]) for q in queries]
    return Side("", src, work / "data", mine, made["headers"])


def build_into(work: Path, size: int) -> None:
    """``--build-into``: the collection without people, its ids and a read key in
    ``collection.json`` (for :func:`build_with`)."""
    collection = build(work, size, None, people=False)
    ids = {q.name: q.image_id for q in collection.searches}
    made = {"ids": ids, "headers": read_key(collection.data_dir)}
    (work / "collection.json").write_text(json.dumps(made))


# --------------------------------------------------------------------------- server


@contextlib.contextmanager
def serve(data_dir: Path, workers: int, log: Path, src: Path | None = None) -> Iterator[str]:
    """``lookalike serve --workers N`` on a free loopback port; yields its base URL.

    ``src``: the ``src`` folder of another checkout to run instead of this one."""
    args = ["--workers", str(workers), "--data-dir", str(data_dir)]
    env = None if src is None else {**os.environ, "PYTHONPATH": str(src)}
    with common.lookalike_server(args, log, env=env) as (base, _):
        yield base


def workers_keep_nagle() -> bool:
    """Whether the listening socket ``lookalike serve --workers N`` (N > 1) shares lacks
    ``IPPROTO_TCP``: asyncio then leaves Nagle's algorithm on for the connections the
    workers accept (uvicorn issue #3149; lookalike binds its own socket to avoid it)."""
    from lookalike.cli.serve import _tcp_socket

    sock = _tcp_socket("127.0.0.1", 0)
    try:
        return sock.proto != socket.IPPROTO_TCP
    finally:
        sock.close()


@dataclass(frozen=True)
class Route:
    """One API operation: a POST taking the query's upload, or (``upload`` False) a GET of
    ``path`` with the query's ``image_id`` filled in."""

    name: str
    path: str
    form: dict[str, str]
    upload: bool = True


SEARCH = Route("search", "/v1/search", {"k": str(K)})
IDENTIFY = Route("identify", "/v1/faces/identify", {})
SIMILAR = Route("similar", "/v1/images/{image_id}/similar", {"k": str(K)}, upload=False)


def post(client: httpx.Client, route: Route, query: Query) -> tuple[float, dict[str, object]]:
    """Seconds for one request (sending to parsed answer) and its JSON."""
    t0 = time.perf_counter()
    if route.upload:
        r = client.post(
            route.path, files={"file": (query.name, query.data, "image/jpeg")}, data=route.form
        )
    else:
        r = client.get(route.path.format(image_id=query.image_id), params=route.form)
    answer = r.json()
    dt = time.perf_counter() - t0
    if r.status_code != 200:
        raise RuntimeError(f"{route.path} {query.name}: {r.status_code} {r.text[:300]}")
    return dt, answer


def library_call(lk: lookalike.Lookalike, route: Route, query: Query) -> list[object]:
    """What the route's engine call returns, reduced to what the answers must agree on."""
    if route is SEARCH:
        result = lk.search_one(query.data, k=K)
        return [h.sha256 for h in result.results]
    return [f.person for f in lk.people.identify(NamedBytes(query.data, query.name))]


def http_answer(route: Route, answer: dict[str, object]) -> list[object]:
    if route is SEARCH:
        return [h["sha256"] for h in answer["results"]]  # type: ignore[attr-defined]
    return [f["person"] for f in answer["faces"]]  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- measuring


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


@dataclass
class Sequential:
    route: str
    queries: int
    # Seconds per call, by block.
    library: list[list[float]] = field(default_factory=list)
    http: list[list[float]] = field(default_factory=list)
    # Search only: decode + embed + search as the server timed them (its timing_ms).
    inside: list[float] = field(default_factory=list)

    @property
    def library_all(self) -> list[float]:
        return [t for block in self.library for t in block]

    @property
    def http_all(self) -> list[float]:
        return [t for block in self.http for t in block]

    @property
    def ratio(self) -> float:
        """HTTP p50 / library p50."""
        return pct(self.http_all, 50) / pct(self.library_all, 50)

    @property
    def paired(self) -> float:
        """Median over blocks of HTTP block median / the library block next to it."""
        pairs = zip(self.http, self.library, strict=True)
        return float(np.median([pct(h, 50) / pct(b, 50) for h, b in pairs]))


def sequential(
    lk: lookalike.Lookalike, client: httpx.Client, route: Route, queries: list[Query], calls: int
) -> Sequential:
    """Library and HTTP calls of the same queries, in alternating blocks of BLOCK calls (the
    first call of each block, after the switch, not counted)."""
    for q in queries:  # warm-up, and both sides must give the same answer
        want = library_call(lk, route, q)
        _, answer = post(client, route, q)
        got = http_answer(route, answer)
        assert got == want, (route.name, q.name, got, want)
        if route is SEARCH:
            assert got[0] == sha256_hex(q.data), f"{q.name} is not its own first hit"
    out = Sequential(route.name, len(queries))
    for block in range(-(-calls // BLOCK)):
        sides = ("library", "http") if block % 2 == 0 else ("http", "library")
        for side in sides:
            times: list[float] = []
            for i in range(BLOCK + 1):
                q = queries[(block * BLOCK + i) % len(queries)]
                if side == "library":
                    times.append(common.timed(functools.partial(library_call, lk, route, q))[1])
                    continue
                dt, answer = post(client, route, q)
                times.append(dt)
                if route is SEARCH and i > 0:
                    timing = answer["timing_ms"]
                    out.inside.append(sum(timing.values()) / 1e3)  # type: ignore[attr-defined]
            (out.library if side == "library" else out.http).append(times[1:])
    return out


@dataclass
class Load:
    route: str
    workers: int
    clients: int
    latencies: list[float]
    wall: float

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.wall


def load(
    base: str,
    headers: dict[str, str],
    route: Route,
    queries: list[Query],
    workers: int,
    clients: int,
    per_client: int,
) -> Load:
    """``clients`` threads, each with its own connection, sending ``per_client`` requests
    one after the other; they start together. Wall time: first start to last answer."""
    barrier = threading.Barrier(clients)
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()

    def client_run(c: int) -> list[float]:
        with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
            post(client, route, queries[c % len(queries)])  # open the connection
            barrier.wait()
            start = time.perf_counter()
            times = [
                post(client, route, queries[(c + j) % len(queries)])[0] for j in range(per_client)
            ]
            with lock:
                spans.append((start, time.perf_counter()))
            return times

    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(client_run, range(clients)))
    wall = max(e for _, e in spans) - min(s for s, _ in spans)
    latencies = [t for times in results for t in times]
    return Load(route.name, workers, clients, latencies, wall)


@dataclass
class SideLoad:
    """One side's requests of one route with ``clients`` clients, over every round."""

    side: str
    route: str
    clients: int
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    by_round: list[float] = field(default_factory=list)  # requests/s of each round

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.wall

    @property
    def spread(self) -> str:
        """The lowest and highest requests/s of the rounds."""
        return f"{min(self.by_round):.0f}-{max(self.by_round):.0f}"


def same_answers(base: str, side: Side) -> None:
    """Raises RuntimeError unless each query's search finds the query itself first and its
    /similar answers K images (else the side searches another collection than it should)."""
    with httpx.Client(base_url=base, headers=side.headers, timeout=600) as client:
        for q in side.queries:
            found = http_answer(SEARCH, post(client, SEARCH, q)[1])
            similar = http_answer(SEARCH, post(client, SIMILAR, q)[1])
            if not found or found[0] != sha256_hex(q.data) or len(similar) != K:
                raise RuntimeError(f"{side.name} does not search its collection: {q.name}")


def server_embed_ms(base: str, side: Side, calls: int) -> list[float]:
    """The embedding times (ms) the server reports in ``timing_ms`` for ``calls`` searches
    by upload, one after the other."""
    with httpx.Client(base_url=base, headers=side.headers, timeout=600) as client:
        answers = [post(client, SEARCH, side.queries[i % len(side.queries)]) for i in range(calls)]
    return [float(a["timing_ms"]["embed"]) for _, a in answers]  # type: ignore[index]


def concurrency(
    sides: list[Side], clients: int, per_client: int, rounds: int, log: Path
) -> tuple[list[SideLoad], dict[str, list[float]]]:
    """Each side's ``lookalike serve --workers 1`` in turn, ``rounds`` times in alternating
    order: searches by upload and by stored vector with 1 and ``clients`` clients. Also
    returns each side's embedding times for one query at a time, as its server timed them."""
    out: dict[tuple[str, str, int], SideLoad] = {}
    embed: dict[str, list[float]] = {}
    for r in range(rounds):
        for side in sides if r % 2 == 0 else sides[::-1]:
            with serve(side.data_dir, 1, log, side.src) as base:
                print(f"round {r + 1}: {side.name} at {base}", flush=True)
                same_answers(base, side)
                embed.setdefault(side.name, []).extend(server_embed_ms(base, side, per_client))
                headers, queries = side.headers, side.queries
                for route in (SEARCH, SIMILAR):
                    load(base, headers, route, queries, 1, 2 * clients, 2)  # warm-up
                    for c in (1, clients):
                        ld = load(base, headers, route, queries, 1, c, per_client)
                        key = (side.name, route.name, c)
                        acc = out.setdefault(key, SideLoad(side.name, route.name, c))
                        acc.latencies += ld.latencies
                        acc.wall += ld.wall
                        acc.by_round.append(ld.rps)
                        print(
                            f"  {route.name}, clients {c}: {ld.rps:.1f} req/s, "
                            f"p50 {ms(pct(ld.latencies, 50))} ms",
                            flush=True,
                        )
    return list(out.values()), embed


def render_concurrency(
    loads: list[SideLoad], embed: dict[str, list[float]], size: int, per_client: int, rounds: int
) -> str:
    by = {(ld.side, ld.route, ld.clients): ld for ld in loads}
    sides = list(dict.fromkeys(ld.side for ld in loads))
    before, after = sides
    embed_b, embed_a = (statistics.median(embed[side]) for side in sides)
    rows = []
    for route, clients in dict.fromkeys((ld.route, ld.clients) for ld in loads):
        b, a = by[before, route, clients], by[after, route, clients]
        rows.append(
            [
                route,
                clients,
                f"{b.rps:.1f} ({b.spread})",
                ms(pct(b.latencies, 50)),
                f"{a.rps:.1f} ({a.spread})",
                ms(pct(a.latencies, 50)),
                f"**{a.rps / b.rps:.2f}**",
            ]
        )
    return "\n".join(
        [
            "## Concurrent searches in one worker (`bench/http.py concurrency`)",
            "",
            f"The {size:,}-image collection above (exact search), `lookalike serve --workers 1`"
            f" of this tree and of the {before} (a temporary git worktree, "
            "served with `PYTHONPATH` pointing at it), each on a copy of the collection its "
            "own code built (the baseline's without people), both checked to find each query "
            f"first. *search*: `POST /v1/search` (upload, k={K}: decode, embed, search); "
            f"*similar*: `GET /v1/images/{{id}}/similar?k={K}` (the stored vector searched: "
            "no decoding or embedding). Each client sends "
            f"{per_client} requests one after the other, the clients start together; "
            f"{rounds} round(s), the two servers taking turns (order alternating), figures over "
            "all rounds: requests/s = requests / summed wall time (in brackets: the lowest "
            "and highest round), p50 in ms. "
            f"{common.cpu_count()} cores, shared by the server and the clients.",
            "",
            "Before: one process-wide lock around `omp_set_num_threads` made searches of one "
            "worker run one at a time. Now each search sets its own thread's OpenMP count "
            "(per thread in libgomp) and searches share a readers-writer lock per index, "
            "which only adding or removing rows takes alone. *similar* measures that alone. "
            "*search* also embeds the upload, and the two trees' cnn models differ: the "
            "server's own embedding time for one query at a time (`timing_ms`, median of "
            f"{len(embed[after])}) is {embed_a:.1f} ms in this tree against {embed_b:.1f} ms "
            f"in the {before} ({embed_a / embed_b:.2f}x). The baseline's INT8 model uses "
            "ONNX Runtime's u8s8 kernels, which clip sums on CPUs with AVX2 but without VNNI "
            "(other vectors on other CPUs); this tree's u8u8 kernels sum exactly everywhere "
            "but are slower on such CPUs (`bench/int8_kernels.py`, `models/quantize.py`).",
            "",
            common.table(
                [
                    "operation",
                    "clients",
                    f"{before} req/s",
                    f"{before} p50",
                    "this tree req/s",
                    "this tree p50",
                    "req/s ratio",
                ],
                rows,
            ),
        ]
    )


# --------------------------------------------------------------------------- report


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def render(
    collection: Collection,
    seq: list[Sequential],
    loads: list[Load],
    per_client: int,
    nagle: bool,
) -> str:
    seq_rows = []
    for s in seq:
        inside = f"{ms(pct(s.inside, 50))}" if s.inside else "-"
        seq_rows.append(
            [
                f"{s.route} ({s.queries} images)",
                ms(pct(s.library_all, 50)),
                ms(pct(s.library_all, 99)),
                ms(pct(s.http_all, 50)),
                ms(pct(s.http_all, 99)),
                inside,
                f"**{s.ratio:.2f}**",
                f"{s.paired:.2f}",
            ]
        )
    load_rows = [
        [
            ld.route,
            ld.workers,
            ld.clients,
            len(ld.latencies),
            f"{ld.rps:.1f}",
            ms(pct(ld.latencies, 50)),
            ms(pct(ld.latencies, 99)),
        ]
        for ld in loads
    ]
    search = next(s for s in seq if s.route == "search")
    counted = len(search.library_all)
    n = len(collection.people)
    enrolled = f"{n} {'person' if n == 1 else 'people'}"
    return "\n".join(
        [
            "## HTTP API overhead and throughput (`bench/http.py`)",
            "",
            f"A {collection.size:,}-image collection: {len(collection.searches)} scikit-image "
            f"photos indexed for real (the search queries, uploaded as JPEG) and "
            f"{collection.size - len(collection.searches):,} synthetic cnn vectors recorded "
            "through `catalog.record` (the mixture of `bench/speed.py`); exact (flat) search "
            f"below `ann_threshold`. {enrolled} enrolled ({collection.examples} "
            f"example(s) each) from {collection.faces_source}; {len(collection.faces)} "
            "identification queries (other photos of them, uploaded as they are). "
            "Server: `lookalike serve` "
            "(uvicorn, subprocess, loopback, read key in `X-API-Key`); clients: httpx, one "
            "keep-alive connection each. Library: the same engine calls in the benchmark's "
            "process on the same data folder (`engine.search_one(bytes, k=10)`, "
            "`engine.people.identify(bytes)`). Times in ms, from sending the upload to "
            "the parsed JSON answer.",
            "",
            f"One client, `--workers 1`: {counted} calls per side, in blocks of {BLOCK} "
            "taking turns (library, HTTP, HTTP, library, ...; each block starts with one "
            "uncounted call), after a warm-up in which both sides answered every query alike. "
            "*inside*: decode + embed + search as the server timed them (`timing_ms`). "
            "*ratio*: HTTP p50 / library p50; *paired*: median over blocks of the HTTP "
            "block's median / the median of the library block next to it.",
            "",
            common.table(
                [
                    "operation",
                    "library p50",
                    "library p99",
                    "HTTP p50",
                    "HTTP p99",
                    "inside p50",
                    "ratio",
                    "paired",
                ],
                seq_rows,
            ),
            "",
            f"Throughput: each client sends {per_client} requests one after the other, the "
            "clients start together; requests/s = requests / (first start to last answer). "
            f"The machine has {common.cpu_count()} cores, shared by the server's workers "
            "(ONNX Runtime threads per worker: cores / workers) and "
            "the clients.",
            "",
            common.table(
                ["operation", "workers", "clients", "requests", "requests/s", "p50", "p99"],
                load_rows,
            ),
            *(
                [
                    "",
                    "With `--workers 2`, the workers' listening socket lacks `IPPROTO_TCP`, "
                    "so asyncio leaves Nagle's algorithm on for their connections (uvicorn "
                    "issue #3149): a keep-alive request after the first waits for the "
                    "client's delayed ACK (about 40 ms on Linux), which shows most with one "
                    "client.",
                ]
                if nagle
                else [
                    "",
                    "`lookalike serve --workers N` binds the shared socket itself with "
                    f"`IPPROTO_TCP` (uvicorn {version('uvicorn')} makes it without, which "
                    "leaves Nagle's algorithm on: ~40 ms more per keep-alive request, uvicorn "
                    "issue #3149), and gives "
                    "each worker's ONNX Runtime cores / N threads. One request is then slower "
                    "with 2 workers than with 1 (one inference thread instead of two); "
                    "throughput with several clients is higher.",
                ]
            ),
        ]
    )


def api_targets(seq: list[Sequential], loads: list[Load]) -> list[Target]:
    """HTTP against the library for an uploaded search (the target); identify; throughput."""
    ratio = {s.route: s for s in seq}
    busiest = max(ld.clients for ld in loads)
    rps = [ld for ld in loads if ld.route == "search" and ld.clients == busiest]
    return [
        check(
            "an uploaded search over HTTP / the same call in the library, p50 (one client)",
            ratio["search"].ratio,
            "<=",
            TARGET,
        ),
        informational(
            "face identification over HTTP / in the library, p50", f"{ratio['identify'].ratio:.2f}"
        ),
        informational(
            f"search throughput with {busiest} clients, requests/s, "
            + " / ".join(f"{ld.workers} worker(s)" for ld in rps),
            " / ".join(f"{ld.rps:.1f}" for ld in rps),
        ),
    ]


def concurrency_targets(loads: list[SideLoad], embed: dict[str, list[float]]) -> list[Target]:
    """This tree's requests/s against the baseline's, with the most clients, each route;
    and the two servers' embedding times."""
    before, after = list(dict.fromkeys(ld.side for ld in loads))
    busiest = max(ld.clients for ld in loads)
    by = {(ld.side, ld.route, ld.clients): ld for ld in loads}
    embed_ratio = statistics.median(embed[after]) / statistics.median(embed[before])
    return [
        informational(
            f"one upload's embedding time in the server: this tree / {before} (cnn models differ)",
            f"{embed_ratio:.2f}",
        ),
        *(
            check(
                f"{route}, {busiest} clients on one worker: requests/s of this tree / {before}",
                by[after, route, busiest].rps / by[before, route, busiest].rps,
                ">=",
                TARGET_CONCURRENCY,
            )
            for route in dict.fromkeys(ld.route for ld in loads)
        ),
    ]


# --------------------------------------------------------------------------- main


def bench_api(
    collection: Collection, headers: dict[str, str], log: Path, args: argparse.Namespace
) -> tuple[str, list[Target]]:
    """Parts a) to c): library against HTTP, then throughput with 1 and 2 workers; the
    section and its headline."""
    routes = ((SEARCH, collection.searches), (IDENTIFY, collection.faces))
    seq: list[Sequential] = []
    loads: list[Load] = []
    with lookalike.open(collection.data_dir) as lk:
        for workers in (1, 2):
            with serve(collection.data_dir, workers, log) as base:
                print(f"server with --workers {workers} at {base}", flush=True)
                if workers == 1:
                    with httpx.Client(base_url=base, headers=headers, timeout=600) as c:
                        for route, queries in routes:
                            s = sequential(lk, c, route, queries, args.calls)
                            seq.append(s)
                            print(
                                f"{route.name}: library p50 {ms(pct(s.library_all, 50))} ms, "
                                f"HTTP p50 {ms(pct(s.http_all, 50))} ms, "
                                f"ratio {s.ratio:.2f}",
                                flush=True,
                            )
                for route, queries in routes:
                    # Warm-up: twice as many connections as clients, so that every
                    # worker process has loaded its models and indexes.
                    load(base, headers, route, queries, workers, 2 * args.clients, 2)
                    for clients in (1, args.clients):
                        ld = load(base, headers, route, queries, workers, clients, args.requests)
                        loads.append(ld)
                        print(
                            f"{route.name}, workers {workers}, clients {clients}: "
                            f"{ld.rps:.1f} req/s, p50 {ms(pct(ld.latencies, 50))} ms",
                            flush=True,
                        )
    md = render(collection, seq, loads, args.requests, workers_keep_nagle())
    return md, api_targets(seq, loads)


def bench_concurrency(
    collection: Collection, headers: dict[str, str], log: Path, args: argparse.Namespace
) -> tuple[str, list[Target]]:
    """Part d): this tree against ``args.baseline``, one worker each: this tree on a copy of
    the data folder (made before any server changes it), the baseline on one its own code
    built; the section and its headline."""
    baseline = f"baseline `{common.short_rev(args.baseline)}`"
    work = collection.data_dir.parent
    with common.git_worktree(args.baseline) as tree:
        before = build_with(tree / "src", work / "baseline", collection.size, collection.searches)
        before.name = baseline
        copy = work / "data-tree"
        shutil.copytree(collection.data_dir, copy)
        after = Side("this tree", None, copy, collection.searches, headers)
        loads, embed = concurrency([before, after], args.clients, args.requests, args.rounds, log)
    md = render_concurrency(loads, embed, collection.size, args.requests, args.rounds)
    return md, concurrency_targets(loads, embed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "parts", nargs="*", metavar="PART", help=f"{', '.join(PARTS)} (default: all)"
    )
    common.add_data_argument(parser)
    parser.add_argument("--size", type=int, default=10_000, help="images in the collection")
    parser.add_argument("--calls", type=int, default=100, help="sequential calls per side")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=25, help="requests per client")
    parser.add_argument(
        "--baseline", default=BASELINE, help=f"revision to compare with (default {BASELINE})"
    )
    parser.add_argument("--rounds", type=int, default=4, help="concurrency rounds per side")
    parser.add_argument("--build-into", type=Path, default=None, help=argparse.SUPPRESS)
    common.add_output_arguments(parser, QUICK)
    args = parser.parse_args(argv)
    parts = args.parts or list(PARTS)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    if args.build_into is not None:
        build_into(args.build_into, args.size)
        return 0
    if args.quick:
        args.calls, args.requests, args.rounds = min(args.calls, 30), min(args.requests, 10), 1
    out = common.Output.from_args(args, QUICK)

    with common.temp_dir("http") as work:
        collection = build(work, args.size, faces_folder(args.data))
        log = work / "server.log"
        headers = read_key(collection.data_dir)
        if "concurrency" in parts:
            md, targets = bench_concurrency(collection, headers, log, args)
            if server_failed(log):
                return 1
            out.write("http-concurrency", md, targets)
        if "api" in parts:
            md, targets = bench_api(collection, headers, log, args)
            if server_failed(log):
                return 1
            out.write("http", md, targets)
    return 0


def server_failed(log: Path) -> bool:
    """Whether a server's log shows a traceback (printed): its figures are not written."""
    text = log.read_text(errors="replace") if log.exists() else ""
    if "Traceback" in text:
        print(text[-4000:], file=sys.stderr)
    return "Traceback" in text


if __name__ == "__main__":
    sys.exit(main())
