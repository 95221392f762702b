"""Speed benchmarks: indexing throughput, search overhead over bare faiss, ANN at scale.

a) ``index``: ``Lookalike.index([folder])`` into a fresh data folder (all descriptors
   computed and stored), end to end, against a naive reference written here: per file
   ``Image.open(p).convert("RGB")`` (full decode), resize to 224x224, normalise as
   ``describe/cnn.py`` does, the same ONNX model as lookalike's cnn
   (``effnet.create_session`` with ``settings.cnn_precision``) one image at a time, GeM
   pooling (p = 3) and L2 normalisation. *naive @ same input* resizes instead to the input
   size lookalike's cnn uses (shorter side ``cnn.DEFAULT_SIDE``, longer side a multiple of
   32) so that the network does the same work; *naive fp32* is *naive* with the float32
   model. The sides take turns (naive, naive @ same input, naive fp32, lookalike, naive,
   ...). Folders: Holidays (805 small photos) and a *camera* set: every faces-photos file
   three times (its own bytes and JPEG re-saves at quality 92 and 80, full size), 186 files
   of up to 14 megapixels.
b) ``search``: the engine's search step for a query given as vectors (what ``search_one``
   does after embedding: ``indexes.get``, ``index.search`` over the query rows,
   ``merge_variants`` and the catalog lookup of the hits) against a bare
   ``faiss.IndexFlatIP.search`` of the same rows over the same vectors, for synthetic
   collections recorded through the catalog.
c) ``ann``: ``FloatIndex.build(ids, x, ann_threshold=0)`` (IVF) against an exact flat index
   on a synthetic collection (default 1,000,000 vectors): build time, query latency and
   recall@10 of IVF against exact search for several ``nprobe``.
d) ``checksum``: the checksum of index files. Throughput of CRC-32 (zlib), SHA-256 and
   BLAKE2b (hashlib) over an index file's bytes in memory, and the time to load a saved
   flat index (default 200,000 x 1280 vectors, 1 GB) as ``IndexManager`` does (checksum
   pass, then faiss reading the file), against the check alone and the format-1 loader
   (no checksum: the whole file read into memory, then ``faiss.deserialize_index``).

Synthetic vectors (b, c) imitate cnn descriptors: ``x = normalise(sqrt(0.48) m +
B (sqrt(0.34) c_j + sqrt(0.10) u) + sqrt(0.08) e)`` with ``m`` a fixed unit vector (the
common component of GeM descriptors), ``B`` a random orthonormal 1280x32 basis, ``c_j`` one
of 10,000 cluster centres and ``u`` the within-cluster spread (both N(0, I/32)), and ``e``
isotropic noise N(0, I/1280). The weights were fitted to the 805 Holidays cnn vectors:
pairwise cosine mean 0.48 (synthetic 0.48), 5th/95th percentiles 0.34/0.64 (0.34/0.62),
nearest-neighbour cosine 0.83 (same-cluster cosine 0.82).

Targets (the headline of each section): lookalike indexes at least as many images/s as the
naive loop, on each folder; the engine adds at most 20% to a bare faiss search; IVF keeps
recall@10 >= 0.95 at the default nprobe; loading an index file with its checksum is no
slower than the format-1 loader without one.

Usage: ``python bench/speed.py [index] [search] [ann] [checksum] [--size N] [--repeats R]
[--checksum-size N] [--data DIR] [--quick] [--no-write]``
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import hashlib
import io
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import lookalike
from lookalike.blas import single_threaded_blas
from lookalike.decode import decode, read_file, sha256_hex
from lookalike.describe.base import Descriptor
from lookalike.describe.cnn import DEFAULT_GEM_P, input_size
from lookalike.describe.cnn import DEFAULT_SIDE as CNN_SIDE
from lookalike.index import manager as index_manager
from lookalike.index.faiss_index import FloatIndex
from lookalike.models import effnet
from lookalike.search.engine import Hit
from lookalike.search.ranking import merge_variants
from lookalike.store.base import NewImage
from sections import Target, check, informational

if TYPE_CHECKING:
    import onnxruntime

PARTS = ("index", "search", "ann", "checksum")
NAIVE_SIDE = 224
K = 10
QUERY_ROWS = 4  # what CnnDescriptor.embed_query returns: 0/90/180/270 degree rotations
NPROBES = (8, 16, 32, 48, 64, 128, 256)
TARGET_INDEX = 1.0  # lookalike / naive images/s, on each folder
TARGET_OVERHEAD = 20.0  # % the engine adds to a bare faiss search
TARGET_RECALL = 0.95  # IVF recall@10 at the default nprobe
TARGET_LOAD = 1.0  # index load with the checksum / the format-1 load without it
QUICK = (
    "ANN at 200,000 vectors, search overhead at 10,000 only (100 queries), checksum at "
    "50,000 vectors, one indexing run per side"
)
_MEAN = np.array(effnet.MEAN, dtype=np.float32)
_STD = np.array(effnet.STD, dtype=np.float32)


# --------------------------------------------------------------------------- synthetic data


class Mixture:
    """Synthetic cnn-like descriptors; see the module docstring for the model."""

    WEIGHTS = (0.48, 0.34, 0.10, 0.08)  # squared norms: common, centre, spread, noise

    def __init__(self, dim: int, clusters: int = 10_000, subspace: int = 32, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.dim, self.subspace = dim, subspace
        m = rng.standard_normal(dim)
        self.mean = (m / np.linalg.norm(m)).astype(np.float32)
        self.basis = np.linalg.qr(rng.standard_normal((dim, subspace)))[0].astype(np.float32)
        self.centres = (rng.standard_normal((clusters, subspace)) / np.sqrt(subspace)).astype(
            np.float32
        )

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """float32 (n, dim), rows L2-normalised."""
        w_mean, w_centre, w_spread, w_noise = (np.float32(np.sqrt(w)) for w in self.WEIGHTS)
        pick = rng.integers(0, len(self.centres), n)
        z = self.centres[pick] * w_centre
        z += rng.standard_normal((n, self.subspace), dtype=np.float32) * (
            w_spread / np.float32(np.sqrt(self.subspace))
        )
        x = rng.standard_normal((n, self.dim), dtype=np.float32)
        x *= w_noise / np.float32(np.sqrt(self.dim))
        x += z @ self.basis.T
        x += w_mean * self.mean
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x

    def fill(self, n: int, seed: int, chunk: int = 50_000) -> np.ndarray:
        """n rows, generated chunk by chunk into one array (no transient copy of it)."""
        out = np.empty((n, self.dim), dtype=np.float32)
        rng = np.random.default_rng(seed)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            out[start:stop] = self.sample(stop - start, rng)
        return out


def pair_stats(x: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
    """Mean, 5th and 95th percentile of the cosine of random pairs of rows."""
    a = x[rng.integers(0, len(x), 2000)]
    b = x[rng.integers(0, len(x), 2000)]
    s = (a * b).sum(axis=1)
    p5, p95 = np.percentile(s, [5, 95])
    return float(s.mean()), float(p5), float(p95)


# --------------------------------------------------------------------------- a) index


def naive_index(
    files: Sequence[Path], settings: lookalike.Settings, same_input: bool, precision: str
) -> int:
    """The naive reference: full decode, resize, normalise, one image per ONNX call, GeM."""
    session = effnet.create_session(settings.model_cache_dir, settings.inference_threads, precision)
    rows: list[np.ndarray] = []
    for p in files:
        image = Image.open(p).convert("RGB")
        if same_input:
            size = input_size(image.width, image.height, CNN_SIDE)
        else:
            size = (NAIVE_SIDE, NAIVE_SIDE)
        rows.append(naive_embed(session, image, size))
    return len(np.stack(rows))


def naive_embed(
    session: onnxruntime.InferenceSession, image: Image.Image, size: tuple[int, int]
) -> np.ndarray:
    """Resize, normalise ((x / 255 - mean) / std), one ONNX call, GeM (p = 3), L2."""
    image = image.resize(size, Image.Resampling.BILINEAR)
    x = (np.asarray(image, dtype=np.float32) / 255.0 - _MEAN) / _STD
    x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
    (features,) = session.run(["features"], {"image": x})
    f = features.reshape(features.shape[1], -1).astype(np.float32)
    v = np.power(np.power(f, DEFAULT_GEM_P).mean(axis=1), 1.0 / DEFAULT_GEM_P)
    out: np.ndarray = v / max(float(np.linalg.norm(v)), 1e-12)
    return out


def lookalike_index(folder: Path, work: Path, faces: bool = False) -> int:
    """``Lookalike.index`` into a fresh data folder, open to close; returns files seen.

    Faces off by default, to compare with the naive reference, which computes image
    descriptors only; ``faces`` adds detection, embedding, storage and clustering of faces
    (the default of ``lookalike index``).
    """
    data = work / "lk-data"
    try:
        with lookalike.open(data) as lk:
            report = lk.index([folder], faces=faces, progress=False)
        return report.indexed + report.duplicates + report.unchanged
    finally:
        shutil.rmtree(data, ignore_errors=True)


def make_camera_set(source: Path, out: Path) -> list[Path]:
    """Each file of ``source`` three times with different bytes: as is, JPEG q92, JPEG q80."""
    out.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    for p in common.image_files(source):
        if p.suffix.lower() not in {".jpg", ".jpeg", ".png", ".webp"}:
            continue
        stem = f"{p.parent.name}_{p.stem}"
        target = out / f"{stem}_v0{p.suffix.lower()}"
        shutil.copyfile(p, target)
        made.append(target)
        with Image.open(p) as im:
            exif = im.info.get("exif")
            rgb = im.convert("RGB")
        for i, quality in enumerate((92, 80), start=1):
            target = out / f"{stem}_v{i}.jpg"
            buf = io.BytesIO()
            rgb.save(buf, "JPEG", quality=quality, **({"exif": exif} if exif else {}))
            target.write_bytes(buf.getvalue())
            made.append(target)
    return sorted(made)


@dataclass
class Throughput:
    name: str
    files: int
    megapixels: float
    times: dict[str, list[float]]  # side -> wall seconds of each run
    stages: dict[str, float]

    def ips(self, side: str) -> float:
        return self.files / statistics.median(self.times[side])


def embed_all(desc: Descriptor, images: Sequence[Image.Image], batch: int) -> None:
    for start in range(0, len(images), batch):
        desc.embed(images[start : start + batch])


def stage_split(files: Sequence[Path], settings: lookalike.Settings) -> dict[str, float]:
    """ms per image of each step of lookalike's pipeline and of the naive one, run one
    after the other (ONNX Runtime still uses its intra-op threads)."""
    with common.temp_dir("stages") as work, lookalike.open(work / "d") as lk:
        descs = {n: lk.descriptor(n) for n in ("cnn", "color", "phash")}
        min_side = max(d.input_side for d in descs.values())
        t: dict[str, float] = {}
        blobs, dt = common.timed(lambda: [read_file(p) for p in files])
        _, t["read + sha256"] = common.timed(lambda: [sha256_hex(b) for b in blobs])
        t["read + sha256"] += dt
        decoded, t["decode (draft)"] = common.timed(
            lambda: [
                decode(b, str(p), min_side=min_side, max_pixels=settings.max_image_pixels).image
                for b, p in zip(blobs, files, strict=True)
            ]
        )
        descs["cnn"].embed(decoded[:1])  # load the model outside the timing
        with single_threaded_blas():  # as an index run describes images (lookalike.blas)
            for name, desc in descs.items():
                bs = settings.batch_size
                embed = functools.partial(embed_all, desc, decoded, bs)
                t[f"embed {name}"] = common.timed(embed)[1]
        del decoded
        gc.collect()
        _, t["naive: full decode"] = common.timed(
            lambda: [Image.open(p).convert("RGB").size for p in files]
        )
        session = effnet.create_session(
            settings.model_cache_dir, settings.inference_threads, settings.cnn_precision
        )
        t["naive: resize 224 + normalise + ONNX (1 image/call) + GeM"] = 0.0
        for p in files:
            image = Image.open(p).convert("RGB")
            t["naive: resize 224 + normalise + ONNX (1 image/call) + GeM"] += common.timed(
                functools.partial(naive_embed, session, image, (NAIVE_SIDE, NAIVE_SIDE))
            )[1]
    return {k: v * 1e3 / len(files) for k, v in t.items()}


def megapixels(path: Path) -> float:
    with Image.open(path) as im:
        return im.width * im.height / 1e6


def bench_index(
    folders: list[tuple[str, list[Path], Path]], repeats: int, settings: lookalike.Settings
) -> list[Throughput]:
    precision = settings.cnn_precision
    sides: dict[str, Callable[[list[Path], Path, Path], int]] = {
        "naive": lambda files, _folder, _work: naive_index(files, settings, False, precision),
        "naive @ same input": lambda files, _folder, _work: naive_index(
            files, settings, True, precision
        ),
        "naive fp32": lambda files, _folder, _work: naive_index(files, settings, False, "fp32"),
        "lookalike": lambda _files, folder, work: lookalike_index(folder, work),
        "lookalike + faces": lambda _files, folder, work: lookalike_index(folder, work, True),
    }
    if precision == "fp32":
        del sides["naive fp32"]  # the same as "naive"
    out: list[Throughput] = []
    for name, files, folder in folders:
        for p in files:  # warm the page cache: neither side should pay for the first read
            p.read_bytes()
        mp = statistics.median([megapixels(p) for p in files])
        result = Throughput(name, len(files), mp, {side: [] for side in sides}, {})
        with common.temp_dir("index") as work:
            for r in range(repeats):
                line = []
                for side, run in sides.items():
                    n, t = common.timed(functools.partial(run, files, folder, work))
                    assert n == len(files), (side, n, len(files))
                    result.times[side].append(t)
                    line.append(f"{side} {len(files) / t:.1f}")
                print(f"{name} run {r + 1} (img/s): {', '.join(line)}", flush=True)
        result.stages = stage_split(files, settings)
        out.append(result)
    return out


def render_index(results: list[Throughput], repeats: int, precision: str) -> str:
    sides = list(results[0].times) if results else []
    rows = []
    for r in results:
        lk = r.ips("lookalike")
        rows.append(
            [
                r.name,
                r.files,
                f"{r.megapixels:.2f}",
                *(f"{r.ips(side):.1f}" for side in sides),
                f"**{lk / r.ips('naive'):.2f}**",
                f"{lk / r.ips('naive @ same input'):.2f}",
            ]
        )
    stage_names = list(results[0].stages) if results else []
    stage_rows = [[s, *(f"{r.stages[s]:.1f}" for r in results)] for s in stage_names]
    fp32 = (
        " *naive fp32*: *naive* with the float32 model (lookalike's cnn runs the INT8 one)."
        if "naive fp32" in sides
        else ""
    )
    return "\n".join(
        [
            "## Indexing throughput (`bench/speed.py index`)",
            "",
            "End to end, from opening a fresh data folder to closing it (model load included "
            "on both sides); images/s = files / wall time, median of "
            f"{repeats} runs, the sides taking turns. *naive*: full decode, 224x224, one "
            f"image per ONNX call of the same model as lookalike's cnn ({precision}), GeM, "
            "cnn only. *naive @ same input*: the same but resized to lookalike's cnn input "
            f"(shorter side {CNN_SIDE}), i.e. equal network work (its pooling stays plain "
            "GeM)." + fp32 + " *lookalike*: `engine.index([folder], faces=False)`, all three "
            "descriptors (cnn, color, phash) computed and stored in the catalog, indexes "
            "built. *lookalike + faces*: the same with faces found, embedded, stored and "
            "clustered, as `lookalike index` does by default (not part of the target).",
            "",
            common.descriptor_versions(),
            "",
            common.table(
                [
                    "folder",
                    "files",
                    "median MP",
                    *(f"{side} img/s" for side in sides),
                    "lookalike / naive",
                    "lookalike / naive @ same input",
                ],
                rows,
            ),
            "",
            "Where the time goes (ms per image; steps run one after the other, without the "
            "decode thread pool; *decode (draft)* is `lookalike.decode.decode` with the "
            "cnn's min_side, *embed* runs batches of `settings.batch_size`):",
            "",
            common.table(["step", *(r.name for r in results)], stage_rows),
        ]
    )


def index_targets(results: list[Throughput]) -> list[Target]:
    """Per folder: lookalike / naive images/s against the target; the same-input ratios."""
    out = [
        check(
            f"indexing throughput, {r.name} ({r.files} files, median {r.megapixels:.2f} MP): "
            "lookalike / naive images/s",
            r.ips("lookalike") / r.ips("naive"),
            ">=",
            TARGET_INDEX,
        )
        for r in results
    ]
    same = [f"{r.ips('lookalike') / r.ips('naive @ same input'):.2f}" for r in results]
    out.append(
        informational(
            "the same network work: lookalike / naive @ same input, "
            + " / ".join(r.name for r in results),
            " / ".join(same),
        )
    )
    return out


# --------------------------------------------------------------------------- b) search


@dataclass
class SearchTiming:
    n: int
    # "engine" (Lookalike.search_vectors), "bare" (faiss' default threads), "bare 1 thread".
    times: dict[str, list[float]]
    # "bare" and "bare 1 thread" again, while another process keeps one core busy.
    busy: dict[str, list[float]]
    parts: dict[str, list[float]]  # the engine's steps, made one by one
    ivf: list[float]
    ivf_recall: float
    record_s: float


def engine_search_step(
    lk: lookalike.Lookalike, desc: Descriptor, rows: np.ndarray, k: int
) -> tuple[list[Hit], dict[str, float]]:
    """``Lookalike.search_vectors`` made step by step, to time each step."""
    t0 = time.perf_counter()
    index = lk.indexes.get(desc)
    t1 = time.perf_counter()
    scores, ids = index.search(rows, k)
    t2 = time.perf_counter()
    best_ids, best_scores = merge_variants(scores, ids, k)
    t3 = time.perf_counter()
    info = lk.catalog.images(best_ids.tolist())
    hits = [
        Hit(rank, info[i].paths[0] if info[i].paths else "", info[i].sha256, float(s), int(i))
        for rank, (i, s) in enumerate(zip(best_ids, best_scores, strict=True), start=1)
        if int(i) in info
    ]
    t4 = time.perf_counter()
    parts = {
        "indexes.get": t1 - t0,
        "index.search": t2 - t1,
        "merge_variants": t3 - t2,
        "catalog.images + hits": t4 - t3,
    }
    return hits, parts


def engine_search(lk: lookalike.Lookalike, rows: np.ndarray, k: int) -> list[Hit]:
    """The engine's search for a query given as vectors (what search_one does after embed)."""
    return lk.search_vectors(rows, k=k, descriptor="cnn")


def synthetic_items(x: np.ndarray, first: int, version: str) -> list[NewImage]:
    """Rows of ``x`` as new images numbered from ``first`` (sha256 = the number in hex)."""
    return [
        NewImage(
            sha256=f"{first + i:064x}",
            path=f"/synthetic/{(first + i) // 1000:04d}/{first + i:07d}.jpg",
            size=100_000,
            mtime_ns=0,
            width=640,
            height=480,
            format="JPEG",
            vectors={"cnn": (version, row)},
        )
        for i, row in enumerate(x)
    ]


def record_synthetic(lk: lookalike.Lookalike, x: np.ndarray, version: str) -> None:
    chunk = 2_000
    for start in range(0, len(x), chunk):
        lk.catalog.record(synthetic_items(x[start : start + chunk], start, version))


def bench_search(n: int, queries: int, mixture: Mixture) -> SearchTiming:
    x = mixture.fill(n, seed=1)
    qrng = np.random.default_rng(2)
    query_rows = [mixture.sample(QUERY_ROWS, qrng) for _ in range(queries)]
    with common.temp_dir("search") as work:
        # Exact search in the engine, as the bare faiss side (the default switches to IVF
        # at 50,000 vectors; measured separately below).
        with lookalike.open(work / "d", ann_threshold=10**12) as lk:
            desc = lk.descriptor("cnn")
            _, record_s = common.timed(functools.partial(record_synthetic, lk, x, desc.version))
            print(f"n={n}: recorded in {record_s:.1f}s", flush=True)
            assert lk.indexes.get(desc).kind == "flat"
            bare = faiss.IndexFlatIP(desc.dim)
            bare.add(x)
            times: dict[str, list[float]] = {"engine": [], "bare": [], "bare 1 thread": []}
            parts: dict[str, list[float]] = {}
            for q in query_rows[:5]:  # warm-up
                engine_search(lk, q, K)
                bare.search(q, K)
            for i, q in enumerate(query_rows):
                # Take turns in a rotating order, so drifts in load hit every side alike.
                sides = list(times)
                for side in sides[i % 3 :] + sides[: i % 3]:
                    if side == "engine":
                        hits, t = common.timed(functools.partial(engine_search, lk, q, K))
                        assert len(hits) == K
                    elif side == "bare":
                        _, t = common.timed(functools.partial(bare.search, q, K))
                    else:
                        with omp_threads(1):
                            _, t = common.timed(functools.partial(bare.search, q, K))
                    times[side].append(t)
                _, p = engine_search_step(lk, desc, q, K)
                for name, v in p.items():
                    parts.setdefault(name, []).append(v)
        busy = bare_with_a_busy_core(bare, query_rows[: max(20, len(query_rows) // 3)])
        del bare
        # The engine with its default settings (IVF above ann_threshold): informative.
        ivf_t: list[float] = []
        recall = float("nan")
        with lookalike.open(work / "d") as lk:
            desc = lk.descriptor("cnn")
            if n >= lk.settings.ann_threshold:
                index = lk.indexes.rebuild(desc)
                exact = faiss.IndexFlatIP(desc.dim)
                exact.add(x)
                found = 0
                for q in query_rows[:5]:
                    engine_search(lk, q, K)
                for q in query_rows:
                    hits, t = common.timed(functools.partial(engine_search, lk, q, K))
                    ivf_t.append(t)
                    s, ids = exact.search(q, K)
                    truth, _ = merge_variants(s, ids, K)
                    # Row i of x was recorded with sha256 = i in hex.
                    found += len({int(h.sha256, 16) for h in hits} & set(truth.tolist()))
                recall = found / (K * len(query_rows))
                assert index.kind == "ivf"
    return SearchTiming(n, times, busy, parts, ivf_t, recall, record_s)


def bare_with_a_busy_core(bare: faiss.Index, queries: list[np.ndarray]) -> dict[str, list[float]]:
    """Seconds of each bare search, default threads and one thread taking turns, while a
    second Python process spins on one core (what a server's clients, indexing or another
    worker do to a search)."""
    times: dict[str, list[float]] = {"bare": [], "bare 1 thread": []}
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        for i, q in enumerate(queries):
            for side in ("bare", "bare 1 thread") if i % 2 == 0 else ("bare 1 thread", "bare"):
                with omp_threads(1) if side == "bare 1 thread" else contextlib.nullcontext():
                    _, t = common.timed(functools.partial(bare.search, q, K))
                times[side].append(t)
    finally:
        spinner.kill()
        spinner.wait()
    return times


def render_search(results: list[SearchTiming], queries: int) -> str:
    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1e3:.3f}"

    def overhead(r: SearchTiming, bare: str) -> str:
        return f"**{paired_overhead(r, bare):+.1f}%**"

    rows = []
    for r in results:
        rows.append(
            [
                f"{r.n:,}",
                ms(r.times["engine"]),
                ms(r.times["bare 1 thread"]),
                overhead(r, "bare 1 thread"),
                ms(r.times["bare"]),
                overhead(r, "bare"),
                ms(r.busy["bare 1 thread"]),
                ms(r.busy["bare"]),
                f"{ms(r.ivf)} (recall@10 {r.ivf_recall:.3f})" if r.ivf else "(flat: below)",
                f"{r.n / r.record_s:,.0f}",
            ]
        )
    part_names = list(results[0].parts) if results else []
    part_rows = [[f"{r.n:,}", *(ms(r.parts[p]) for p in part_names)] for r in results]
    return "\n".join(
        [
            "## Search overhead over bare faiss (`bench/speed.py search`)",
            "",
            f"Synthetic cnn vectors (1280-d, see the docstring of `bench/speed.py`) recorded "
            f"through `catalog.record`; {queries} queries of {QUERY_ROWS} rows each (what "
            f"`cnn.embed_query` returns), k = {K}, medians in ms. *engine*: "
            "`Lookalike.search_vectors` (the part of `search_one` after embedding: "
            "`indexes.get`, `index.search`, `merge_variants`, `catalog.images` and the hits), "
            "with `ann_threshold` raised so that the engine searches exactly too. *bare*: "
            "`faiss.IndexFlatIP.search` of the same rows on the same vectors on one OpenMP "
            "thread (`faiss.omp_set_num_threads(1)`), which is how `FloatIndex.search` runs "
            "batches of fewer than 32 rows, and with faiss' default threads (one per core). "
            "The three take turns query by query. *overhead*: median over queries of engine "
            "time / bare time of the same query, minus 1 (paired, so that changes in the "
            "machine's load cancel out). *one core busy*: the two bare searches again, taking "
            "turns, on a third of the queries, while another Python process spins on one core "
            "(as a server's clients, indexing or a second worker do): why the engine searches "
            "a few rows on one thread although idle cores would answer faster.",
            "",
            common.table(
                [
                    "vectors",
                    "engine",
                    "bare, 1 thread",
                    "overhead",
                    "bare, all cores",
                    "overhead vs all cores",
                    "one core busy: bare, 1 thread",
                    "one core busy: bare, all cores",
                    "engine, default settings (IVF)",
                    "catalog.record vectors/s",
                ],
                rows,
            ),
            "",
            "The IVF column is the engine with its default settings "
            "(IVF from `ann_threshold` vectors, nlist from `faiss_index._lists`, "
            "`ann_nprobe`), recall@10 against exact search of the merged rows.",
            "",
            "The engine's steps, one by one (medians, ms):",
            "",
            common.table(["vectors", *part_names], part_rows),
        ]
    )


def paired_overhead(r: SearchTiming, bare: str) -> float:
    """The engine's overhead over ``bare`` in %: the median of per-query time ratios, minus 1.

    Each engine search is paired with the bare searches of the same rows made right before
    or after it, which cancels drifts in load.
    """
    pairs = zip(r.times["engine"], r.times[bare], strict=True)
    return (statistics.median(e / b for e, b in pairs) - 1) * 100


def search_targets(results: list[SearchTiming]) -> list[Target]:
    def med(values: list[float]) -> float:
        return statistics.median(values) * 1e3

    targets = [
        check(
            f"search overhead over bare faiss (on one thread, as the engine), {r.n:,} vectors",
            paired_overhead(r, "bare 1 thread"),
            "<=",
            TARGET_OVERHEAD,
            "{:+.1f}%",
        )
        for r in results
    ]
    targets += [
        informational(
            f"bare faiss, {QUERY_ROWS}-row query on {r.n:,} vectors: all cores / 1 thread, "
            "idle / one core busy",
            f"{med(r.times['bare']) / med(r.times['bare 1 thread']):.2f} / "
            f"{med(r.busy['bare']) / med(r.busy['bare 1 thread']):.2f}",
        )
        for r in results
    ]
    return targets


# --------------------------------------------------------------------------- c) ann


@dataclass
class AnnResult:
    n: int
    dim: int
    gib: float
    nlist: int
    train_s: float
    add_s: float
    flat_build_s: float | None  # None: not built (memory), brute force without an index
    flat: tuple[float, float, float, float]  # 1-row, 4-row as FloatIndex; same, all cores
    by_nprobe: list[tuple[int, float, tuple[float, float, float, float]]]  # nprobe, recall
    stats: tuple[float, float, float]
    default_nprobe: int


@contextlib.contextmanager
def omp_threads(n: int) -> Iterator[None]:
    """faiss' OpenMP thread count set to ``n`` for the block."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def latencies(
    as_engine: Callable[[np.ndarray], object],
    all_cores: Callable[[np.ndarray], object],
    singles: list[np.ndarray],
    fours: list[np.ndarray],
    reps: int,
) -> tuple[float, float, float, float]:
    """Median seconds of 1-row and 4-row searches: as ``FloatIndex.search`` runs them (one
    OpenMP thread below 32 rows), then the same faiss index on all cores."""

    def med(search: Callable[[np.ndarray], object], queries: list[np.ndarray]) -> float:
        for q in queries[:3]:
            search(q)
        return statistics.median(
            [common.timed(functools.partial(search, q))[1] for q in queries[:reps]]
        )

    return (
        med(as_engine, singles),
        med(as_engine, fours),
        med(all_cores, singles),
        med(all_cores, fours),
    )


def raw_search(index: FloatIndex, rows: np.ndarray) -> object:
    """The faiss index inside ``index`` searched directly, with faiss' default threads."""
    return index._index.search(np.ascontiguousarray(rows, dtype=np.float32), K)


def knn(x: np.ndarray, rows: np.ndarray) -> object:
    return faiss.knn(rows, x, K, metric=faiss.METRIC_INNER_PRODUCT)


def knn_one_thread(x: np.ndarray, rows: np.ndarray) -> object:
    with omp_threads(1):
        return knn(x, rows)


def available_bytes() -> int:
    text = Path("/proc/meminfo").read_text()
    found = re.search(r"^MemAvailable:\s*(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else 0


def bench_ann(n: int, mixture: Mixture, nprobes: Sequence[int]) -> AnnResult:
    settings = lookalike.get_settings()
    dim = mixture.dim
    x, gen_s = common.timed(functools.partial(mixture.fill, n, 3))
    print(f"generated {n:,} x {dim} ({x.nbytes / 2**30:.2f} GiB) in {gen_s:.0f}s", flush=True)
    ids = np.arange(n, dtype=np.int64)
    qrng = np.random.default_rng(4)
    q = mixture.sample(200, qrng)
    singles = [q[i : i + 1] for i in range(len(q))]
    fours = [mixture.sample(QUERY_ROWS, qrng) for _ in range(100)]
    stats = pair_stats(x, np.random.default_rng(5))
    reps = 20 if n > 200_000 else 100

    flat_s: float | None = None
    if available_bytes() > 1.3 * x.nbytes:
        flat, flat_s = common.timed(
            functools.partial(FloatIndex.build, ids, x, ann_threshold=n + 1, nprobe=1)
        )
        assert flat.kind == "flat"
        _, truth = flat.search(q, K)
        flat_lat = latencies(
            functools.partial(flat.search, k=K),
            functools.partial(raw_search, flat),
            singles,
            fours,
            reps,
        )
        del flat
    else:
        # Not enough memory for a second copy: the same brute-force kernel, on x itself.
        print("not enough memory for a flat index: faiss.knn on the array", flush=True)
        _, truth = faiss.knn(q, x, K, metric=faiss.METRIC_INNER_PRODUCT)
        flat_lat = latencies(
            functools.partial(knn_one_thread, x),
            functools.partial(knn, x),
            singles,
            fours,
            reps,
        )
    gc.collect()
    print(f"flat: built in {flat_s or 0:.1f}s, 1 row {flat_lat[0] * 1e3:.1f} ms", flush=True)

    # FloatIndex.build(..., ann_threshold=0) is exactly these two steps, timed apart.
    ivf = FloatIndex(dim, kind="ivf", nprobe=settings.ann_nprobe)
    sample = x[FloatIndex.training_sample(n)]
    _, train_s = common.timed(functools.partial(ivf.train_ivf, sample, n))
    _, add_s = common.timed(functools.partial(ivf.add, ids, x))
    gib = x.nbytes / 2**30
    del x  # the index holds its own copy
    gc.collect()
    inner = faiss.extract_index_ivf(ivf._index)
    print(f"ivf: nlist {inner.nlist}, train {train_s:.1f}s, add {add_s:.1f}s", flush=True)
    by_nprobe = []
    for nprobe in sorted({*nprobes, settings.ann_nprobe}):
        inner.nprobe = nprobe
        _, found = ivf.search(q, K)
        recall = float(
            np.mean([len(set(a) & set(b)) / K for a, b in zip(found, truth, strict=True)])
        )
        lat = latencies(
            functools.partial(ivf.search, k=K),
            functools.partial(raw_search, ivf),
            singles,
            fours,
            100,
        )
        by_nprobe.append((nprobe, recall, lat))
        print(f"nprobe {nprobe}: recall@10 {recall:.3f}, 1 row {lat[0] * 1e3:.2f} ms", flush=True)
    nlist = int(inner.nlist)
    del ivf
    gc.collect()
    return AnnResult(
        n,
        dim,
        gib,
        nlist,
        train_s,
        add_s,
        flat_s,
        flat_lat,
        by_nprobe,
        stats,
        settings.ann_nprobe,
    )


def render_ann(r: AnnResult) -> str:
    def ms(lat: tuple[float, float, float, float]) -> list[str]:
        return [f"{v * 1e3:.2f}" for v in lat]

    rows = [
        [
            f"**{p}** (default)" if p == r.default_nprobe else str(p),
            f"{rec:.3f}",
            *ms(lat),
        ]
        for p, rec, lat in r.by_nprobe
    ]
    rows.append(["exact (flat)", "1.000", *ms(r.flat)])
    mean, p5, p95 = r.stats
    flat_build = (
        f"flat {r.flat_build_s:.1f} s"
        if r.flat_build_s is not None
        else "flat: not built (not enough free memory for a second copy; exact search by "
        "`faiss.knn` on the array, the same brute-force kernel)"
    )
    return "\n".join(
        [
            f"## ANN at scale (`bench/speed.py ann`): {r.n:,} vectors",
            "",
            f"{r.n:,} synthetic {r.dim}-d float32 vectors ({r.gib:.2f} GiB; the flat and IVF "
            "indexes each hold another copy, built one after the other): a mixture of 10,000 "
            "clusters on a random 32-d subspace plus a common component and isotropic noise, "
            "L2-normalised (exact recipe in the docstring of `bench/speed.py`); random pairs "
            f"have cosine {mean:.2f} on average (5th/95th percentile {p5:.2f}/{p95:.2f}), "
            "like the real cnn descriptors of Holidays. 200 queries are fresh draws from the "
            "same mixture; recall@10 = overlap of the IVF top 10 with the exact top 10.",
            "",
            f"Build: {flat_build}; IVF (`FloatIndex.build(ids, x, ann_threshold=0, ...)`, "
            f"nlist {r.nlist}) train {r.train_s:.1f} s + add {r.add_s:.1f} s = "
            f"{r.train_s + r.add_s:.1f} s.",
            "",
            common.table(
                [
                    "nprobe",
                    "recall@10",
                    "1-row query ms",
                    "4-row query ms",
                    "1-row, all cores",
                    "4-row, all cores",
                ],
                rows,
            ),
            "",
            "Latencies are medians of single searches (k = 10): as `FloatIndex.search` runs "
            "them (on one OpenMP thread below 32 query rows), and *all cores*: the same faiss "
            "index searched directly with faiss' default threads (one per core), in the same "
            "run.",
        ]
    )


def ann_targets(r: AnnResult) -> list[Target]:
    recall, lat = next((rec, lat) for p, rec, lat in r.by_nprobe if p == r.default_nprobe)
    return [
        check(
            f"IVF recall@10 at the default nprobe ({r.default_nprobe}), {r.n:,} vectors",
            recall,
            ">=",
            TARGET_RECALL,
            "{:.3f}",
        ),
        informational(
            "1-row query at the default nprobe / exact (flat), ms",
            f"{lat[0] * 1e3:.2f} / {r.flat[0] * 1e3:.2f}",
        ),
    ]


# --------------------------------------------------------------------------- d) checksum


@dataclass(frozen=True)
class _Spec:
    """An index spec for a synthetic collection (``IndexSpec``)."""

    name: str
    version: str
    dim: int
    kind: str = "float"


@dataclass
class ChecksumResult:
    n: int
    file_bytes: int
    rates: list[tuple[str, float]]  # name, MB/s
    load_s: float  # IndexManager: check, then faiss reads the file
    check_s: float  # the check alone
    old_load_s: float  # format 1: read_bytes, slice, faiss.deserialize_index


def hash_rates(data: memoryview, repeats: int) -> list[tuple[str, float]]:
    """MB/s of each candidate checksum over ``data``, fed in the loader's chunks."""
    step = index_manager.CHECK_CHUNK
    chunks = [data[s : s + step] for s in range(0, len(data), step)]

    def crc32() -> None:
        crc = 0
        for chunk in chunks:
            crc = zlib.crc32(chunk, crc)

    def digest(name: str) -> Callable[[], None]:
        def run() -> None:
            h = hashlib.new(name)
            for chunk in chunks:
                h.update(chunk)

        return run

    cases = [("zlib.crc32", crc32), ("hashlib.sha256", digest("sha256"))]
    cases.append(("hashlib.blake2b", digest("blake2b")))
    return [(name, len(data) / 1e6 / common.median_of(fn, repeats, warmup=1)) for name, fn in cases]


def format1_load(path: Path) -> FloatIndex:
    """How format 1 (no checksum) was loaded: the whole file in memory, the faiss part
    sliced out of it (a copy), then ``faiss.deserialize_index`` (another)."""
    data = path.read_bytes()
    head_end = data.index(b"\n", len(index_manager.MAGIC))
    n = int(json.loads(data[len(index_manager.MAGIC) : head_end])["n"])
    ids = np.frombuffer(data, dtype=np.int64, count=n, offset=head_end + 1)
    return FloatIndex.from_bytes(data[head_end + 1 + 8 * n :], ids, kind="flat", nprobe=1)


def file_check(path: Path) -> int:
    """The checksum pass of ``IndexManager``'s loader alone."""
    with path.open("rb") as f:
        f.readline()
        head = f.readline()
        return index_manager._crc32(f, head)


def bench_checksum(n: int, mixture: Mixture, repeats: int) -> ChecksumResult:
    x = mixture.fill(n, seed=6)
    index = FloatIndex.build(np.arange(n, dtype=np.int64), x, ann_threshold=n + 1, nprobe=1)
    del x
    spec = _Spec("cnn", "bench", mixture.dim)
    with common.temp_dir("checksum") as work:
        # The source is never asked: only saving and loading are measured.
        manager = index_manager.IndexManager(None, work, ann_threshold=n + 1, nprobe=1)  # type: ignore[arg-type]
        manager._save(spec.name, index_manager._Held(index, spec.version, 0))
        del index
        path = work / f"{spec.name}.idx"
        rates = hash_rates(memoryview(path.read_bytes()), repeats)
        loaded = manager._load(spec)  # type: ignore[arg-type]
        assert loaded is not None and len(loaded.index) == n
        del loaded
        gc.collect()
        load_s = common.median_of(lambda: manager._load(spec), repeats)  # type: ignore[arg-type]
        check_s = common.median_of(functools.partial(file_check, path), repeats)
        old_s = common.median_of(functools.partial(format1_load, path), repeats)
        size = path.stat().st_size
    return ChecksumResult(n, size, rates, load_s, check_s, old_s)


def render_checksum(r: ChecksumResult, repeats: int) -> str:
    mb = r.file_bytes / 1e6
    rows = [[name, f"{rate:,.0f}", f"{mb / rate:.2f}"] for name, rate in r.rates]
    return "\n".join(
        [
            "## Index file checksum (`bench/speed.py checksum`)",
            "",
            f"A flat index of {r.n:,} synthetic cnn vectors ({mb:,.0f} MB file) saved by "
            "`IndexManager`. Each candidate checksum over the file's bytes in memory, fed in "
            f"the loader's {index_manager.CHECK_CHUNK >> 20} MiB chunks (median of {repeats}):",
            "",
            common.table(["checksum", "MB/s", f"s per {mb:,.0f} MB"], rows),
            "",
            "Loading the file (medians, s; the file is in the page cache): "
            f"*IndexManager* (CRC-32 pass, then faiss streams the file in) **{r.load_s:.2f}**, "
            f"of which the CRC-32 pass alone {r.check_s:.2f} "
            f"({r.check_s / r.load_s:.0%}); the format-1 loader (no checksum: whole file "
            f"read, faiss part copied out, `faiss.deserialize_index`) {r.old_load_s:.2f} "
            f"(new / old: **{r.load_s / r.old_load_s:.2f}**).",
        ]
    )


def checksum_targets(r: ChecksumResult) -> list[Target]:
    mb = r.file_bytes / 1e6
    return [
        check(
            f"loading a {mb:,.0f} MB index file: with its CRC-32 check / the format-1 loader",
            r.load_s / r.old_load_s,
            "<=",
            TARGET_LOAD,
        ),
        informational("the CRC-32 pass's share of the load", f"{r.check_s / r.load_s:.0%}"),
    ]


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "parts", nargs="*", metavar="PART", help=f"{', '.join(PARTS)} (default: all)"
    )
    common.add_data_argument(parser)
    parser.add_argument("--repeats", type=int, default=3, help="index runs per side")
    parser.add_argument(
        "--search-sizes",
        type=int,
        nargs="+",
        default=[10_000, 100_000],
        help="collection sizes for the search overhead",
    )
    parser.add_argument("--queries", type=int, default=300, help="queries per search size")
    parser.add_argument("--size", type=int, default=1_000_000, help="vectors for the ANN part")
    parser.add_argument("--nprobe", type=int, nargs="+", default=list(NPROBES))
    parser.add_argument(
        "--checksum-size", type=int, default=200_000, help="vectors for the checksum part"
    )
    common.add_output_arguments(parser, QUICK)
    args = parser.parse_args(argv)
    parts = args.parts or list(PARTS)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    if args.quick:
        args.size = min(args.size, 200_000)
        args.search_sizes = [min(args.search_sizes)]
        args.queries = min(args.queries, 100)
        args.checksum_size = min(args.checksum_size, 50_000)
        args.repeats = 1
    out = common.Output.from_args(args, QUICK)
    settings = lookalike.get_settings()
    mixture = Mixture(effnet.FEATURE_DIM)

    if "index" in parts:
        data = common.data_dir(args.data, "holidays/images", "faces-photos")
        with common.temp_dir("camera") as cam:
            camera = make_camera_set(data / "faces-photos", cam)
            holidays = data / "holidays" / "images"
            folders = [
                ("Holidays thumbnails", common.image_files(holidays), holidays),
                ("camera (faces-photos x3)", camera, cam),
            ]
            made = bench_index(folders, args.repeats, settings)
        md = render_index(made, args.repeats, settings.cnn_precision)
        out.write("speed-index", md, index_targets(made))
    if "search" in parts:
        results = [bench_search(n, args.queries, mixture) for n in args.search_sizes]
        out.write("speed-search", render_search(results, args.queries), search_targets(results))
    if "ann" in parts:
        ann = bench_ann(args.size, mixture, args.nprobe)
        out.write("speed-ann", render_ann(ann), ann_targets(ann))
    if "checksum" in parts:
        summed = bench_checksum(args.checksum_size, mixture, 5)
        out.write("speed-checksum", render_checksum(summed, 5), checksum_targets(summed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
