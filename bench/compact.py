"""The compact index (``index/compact.py``) against the IVF index, and at 10M vectors.

a) ``candidates``: on N synthetic cnn-like vectors (default 1,000,000), whitened as the
   index manager does (``Whitening.fit`` on a 100k sample with the default settings:
   ``whiten_dim`` 256, power and shrinkage), the coarse-to-fine candidates, each
   re-ranking its shortlist exactly with the float16 rows memory-mapped from one file on
   disk:

   - *IVF-PQ fast-scan*: ``CompactIndex`` itself (IVF lists, 32-byte codes of 64 4-bit
     sub-quantizers, scanned by faiss' SIMD fast-scan);
   - *IVF-PQ 8-bit*: the same 32 bytes as 32 8-bit sub-quantizers (classic ``IndexIVFPQ``);
   - *OPQ + IVF-PQ*: 8-bit PQ with faiss' learned rotation (``OPQMatrix``) first;
   - *ITQ binary*: 256-bit ITQ codes (``ITQTransform`` then the sign) in an
     ``IndexBinaryIVF``, shortlist by Hamming distance;

   against today's kind above ``ann_threshold``, IVF-flat (``FloatIndex`` with IVF lists,
   float32 rows in RAM, the default nprobe), in the same run. For each: RAM per image (the
   faiss index's serialized bytes, which are its codes, list ids and centroids, plus the
   8-byte catalog id of each row that ``CompactIndex`` keeps), median one-row query time on
   one thread (as ``FloatIndex`` runs small batches), recall@10 of the final top 10 against
   exact search in the same whitened space, build time (train + add).
b) ``scale``: ``CompactIndex`` at 10,000,000 vectors, generated, whitened and added 100k at
   a time (10M x 1280 float32 is 48 GiB: never in RAM); its float16 rows (10 GB) go to its
   file under a temporary folder. Exact search for 200 queries is a brute-force pass over
   that file, in chunks.

Synthetic vectors: the mixture of ``bench/speed.py`` (fitted to the Holidays cnn vectors:
common component, cluster centre, within-cluster spread, isotropic noise), with one change
whitening calls for: the centres and spreads span a 512-d subspace with a power-law
spectrum (axis i's variance proportional to 1/i) rather than 32 equal axes. Whitening
equalises the variance of the axes it keeps; on the 32-axis mixture, 480 of the 512 kept
axes are pure isotropic noise, so whitened neighbours are decided by noise (IVF-flat's
recall@10 fell to 0.57 at 200k vectors), which real descriptors, whose spectra decay
smoothly, do not show. The power law keeps the pair statistics of the fit (printed: mean
pairwise cosine ~0.48, 5th/95th percentiles ~0.32/0.60, nearest-neighbour cosine ~0.86;
Holidays 0.48, 0.34/0.64, 0.83), since its effective dimension is ~30. There is one
cluster per 100 vectors (at 1M, the 10,000 of ``speed.py``), so that neighbourhoods keep
their size as the collection grows.

Targets (the issue's, at 10M): coarse index RAM <= 64 bytes per image, one-row query p50
<= 10 ms on one core, recall@10 >= 0.95; build time reported.

Usage: ``python bench/compact.py [candidates] [scale] [--size N] [--scale-size N]
[--quick] [--no-write]``
"""

from __future__ import annotations

import argparse
import functools
import gc
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import lookalike
from lookalike.index import compact as compact_module
from lookalike.index.compact import CompactIndex
from lookalike.index.faiss_index import FloatIndex, _lists
from lookalike.index.whiten import Whitening
from lookalike.index.whitened import SAMPLE
from lookalike.models import effnet
from sections import Target, check, informational
from speed import omp_threads

PARTS = ("candidates", "scale")
K = 10
QUERIES = 200
CHUNK = 100_000
SUBSPACE = 512
TARGET_RAM = 64.0  # bytes per image in RAM for the coarse index
TARGET_MS = 10.0  # one-row query p50, one core
TARGET_RECALL = 0.95
QUICK = "candidates at 200,000 vectors, the compact index at 1,000,000 instead of 10,000,000"
# A one-row search: the query row (1, d) in, the top K row numbers out.
QueryFn = Callable[[np.ndarray], np.ndarray]


def _fit(sample: np.ndarray) -> Whitening:
    """The whitening the index manager would fit on ``sample`` with the default settings."""
    s = lookalike.get_settings()
    return Whitening.fit(
        sample,
        s.whiten_dim,
        source_version="b",
        power=s.whiten_power,
        shrinkage=s.whiten_shrinkage,
    )


class Spectral:
    """Synthetic cnn-like descriptors; the model is in the module docstring."""

    WEIGHTS = (0.48, 0.34, 0.10, 0.08)  # squared norms: common, centre, spread, noise

    def __init__(self, dim: int, n: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.dim = dim
        m = rng.standard_normal(dim)
        self.mean = (m / np.linalg.norm(m)).astype(np.float32)
        self.basis = np.linalg.qr(rng.standard_normal((dim, SUBSPACE)))[0].astype(np.float32)
        scale = np.arange(1, SUBSPACE + 1) ** -0.5
        self.scale = (scale / np.linalg.norm(scale)).astype(np.float32)
        clusters = max(10_000, n // 100)
        self.centres = (rng.standard_normal((clusters, SUBSPACE)) * self.scale).astype(np.float32)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """float32 (n, dim), rows L2-normalised."""
        w_mean, w_centre, w_spread, w_noise = (np.float32(np.sqrt(w)) for w in self.WEIGHTS)
        z = self.centres[rng.integers(0, len(self.centres), n)] * w_centre
        z += rng.standard_normal((n, SUBSPACE), dtype=np.float32) * self.scale * w_spread
        x = rng.standard_normal((n, self.dim), dtype=np.float32)
        x *= w_noise / np.float32(np.sqrt(self.dim))
        x += z @ self.basis.T
        x += w_mean * self.mean
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x

    def chunks(self, n: int, seed: int) -> Iterator[np.ndarray]:
        """``n`` rows, CHUNK at a time."""
        rng = np.random.default_rng(seed)
        for start in range(0, n, CHUNK):
            yield self.sample(min(CHUNK, n - start), rng)


def pair_stats(x: np.ndarray, q: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, 5th and 95th percentile of random pairs' cosine; median nearest-neighbour
    cosine of the queries ``q`` among ``x`` (raw descriptors)."""
    rng = np.random.default_rng(5)
    s = (x[rng.integers(0, len(x), 5000)] * x[rng.integers(0, len(x), 5000)]).sum(axis=1)
    p5, p95 = np.percentile(s, [5, 95])
    nn, _ = faiss.knn(q, x, 1, metric=faiss.METRIC_INNER_PRODUCT)
    return float(s.mean()), float(p5), float(p95), float(np.median(nn))


@dataclass(frozen=True)
class Measured:
    name: str
    ram: float  # bytes per image
    p50_ms: float
    recall: float
    build_s: float
    note: str = ""


@dataclass(frozen=True)
class Built:
    """A candidate built and ready to be queried."""

    name: str
    ram: float  # bytes per image
    build_s: float
    search: QueryFn
    note: str = ""


def evaluate(search: QueryFn, q: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(median ms of one-row searches on one thread, recall@10 against ``truth``)."""
    return evaluate_together([search], q, truth)[0]


def evaluate_together(
    searches: list[QueryFn], q: np.ndarray, truth: np.ndarray
) -> list[tuple[float, float]]:
    """Per search, (median ms of one-row searches on one thread, recall@10 against
    ``truth``), the searches taking turns query by query so that other work on the machine
    weighs on each alike."""
    found: list[list[np.ndarray]] = [[] for _ in searches]
    times: list[list[float]] = [[] for _ in searches]
    with omp_threads(1):
        for row in q[:5]:
            for search in searches:
                search(row[None])
        for row in q:
            for i, search in enumerate(searches):
                top, s = common.timed(functools.partial(search, row[None]))
                found[i].append(top)
                times[i].append(s)
    out = []
    for tops, spent in zip(found, times, strict=True):
        pairs = zip(tops, truth, strict=True)
        recall = np.mean([len(set(f.tolist()) & set(t.tolist())) / K for f, t in pairs])
        out.append((statistics.median(spent) * 1e3, float(recall)))
    return out


def reranked(coarse: QueryFn, rows: np.ndarray) -> QueryFn:
    """A search: ``coarse``'s shortlist (row numbers) re-ranked exactly by the float16
    ``rows`` (a memory map), as ``CompactIndex.search_space`` does."""

    def search(q: np.ndarray) -> np.ndarray:
        short = coarse(q)
        short = np.unique(short[short >= 0])
        exact = np.einsum("ij,j->i", rows[short].astype(np.float32), q[0])
        return np.asarray(short[np.argsort(-exact, kind="stable")[:K]])

    return search


def ram_per_image(index: Any, n: int, extra: int = 0, binary: bool = False) -> float:
    """Serialized bytes of a faiss index per row (what it holds in RAM), plus ``extra``."""
    data = faiss.serialize_index_binary(index) if binary else faiss.serialize_index(index)
    return len(data) / n + extra


def exact_truth(rows: np.ndarray, q: np.ndarray) -> np.ndarray:
    """int64 (m, K) exact top-K row numbers of ``q`` among ``rows`` (float16 (n, d), a
    memory map read a million rows at a time)."""
    best_s = np.full((len(q), K), -np.inf, dtype=np.float32)
    best_i = np.full((len(q), K), -1, dtype=np.int64)
    for start in range(0, len(rows), 1_000_000):
        part = np.asarray(rows[start : start + 1_000_000], dtype=np.float32)
        s, i = faiss.knn(q, part, K, metric=faiss.METRIC_INNER_PRODUCT)
        s_all = np.concatenate([best_s, s], axis=1)
        i_all = np.concatenate([best_i, i + start], axis=1)
        order = np.argsort(-s_all, axis=1, kind="stable")[:, :K]
        best_s = np.take_along_axis(s_all, order, axis=1)
        best_i = np.take_along_axis(i_all, order, axis=1)
    return best_i


def build_compact(
    folder: Path, model: Spectral, n: int, whitening: Whitening, train: np.ndarray
) -> tuple[CompactIndex, float, float]:
    """A ``CompactIndex`` of ``n`` generated rows (ids = row numbers): (index, train
    seconds, generate + whiten + add seconds)."""
    index, train_s = common.timed(functools.partial(CompactIndex.train, folder / "cnn", train, n))
    t0 = time.perf_counter()
    done = 0
    for raw in model.chunks(n, seed=3):
        index.add(np.arange(done, done + len(raw), dtype=np.int64), whitening.apply(raw))
        done += len(raw)
        if done % 1_000_000 == 0:
            print(f"  added {done:,} rows ({time.perf_counter() - t0:.0f} s)", flush=True)
    return index, train_s, time.perf_counter() - t0


def compact_search(index: CompactIndex) -> QueryFn:
    return lambda q: index.search_space(q, K)[1][0]


def bench_candidates(n: int, folder: Path) -> tuple[list[Measured], tuple[float, ...], float]:
    """Every candidate on ``n`` vectors; also the pair statistics and the whitening's fit s."""
    dim = effnet.FEATURE_DIM
    model = Spectral(dim, n)
    raw = np.concatenate(list(model.chunks(min(n, SAMPLE), seed=3)))
    qraw = model.sample(QUERIES, np.random.default_rng(4))
    stats = pair_stats(raw, qraw)
    print("pairs mean {:.3f} p5 {:.3f} p95 {:.3f}, nn {:.3f}".format(*stats), flush=True)
    whitening, fit_s = common.timed(functools.partial(_fit, raw))
    del raw
    q = whitening.apply(qraw)
    train_at = CompactIndex.training_sample(n)
    x = np.concatenate([whitening.apply(c) for c in model.chunks(n, seed=3)])
    train = x[train_at]

    compact, train_s = common.timed(functools.partial(CompactIndex.train, folder / "a", train, n))
    _, add_s = common.timed(functools.partial(compact.add, np.arange(n, dtype=np.int64), x))
    rows = compact._rows
    truth = exact_truth(rows, q)
    built = [
        Built(
            f"IVF-PQ fast-scan {compact_module.CODE_BYTES} B + re-rank (`CompactIndex`)",
            ram_per_image(compact._coarse, n, extra=8),
            train_s + add_s,
            compact_search(compact),
        )
    ]
    for make in (ivf_pq8, opq, itq):
        built.append(make(x, train, rows))
        print(f"built {built[-1].name} in {built[-1].build_s:.0f} s", flush=True)
    built.append(ivf_flat(x, train))
    measured = evaluate_together([b.search for b in built], q, truth)
    out = [
        Measured(b.name, b.ram, p50, recall, b.build_s, b.note)
        for b, (p50, recall) in zip(built, measured, strict=True)
    ]
    for m in out:
        print(m, flush=True)
    return out, stats, fit_s


def ivf_pq8(x: np.ndarray, train: np.ndarray, rows: np.ndarray) -> Built:
    m = compact_module.CODE_BYTES
    return _factory_pq(
        f"IVF{_lists(len(x))},PQ{m}", f"IVF-PQ 8-bit {m} B + re-rank", x, train, rows
    )


def opq(x: np.ndarray, train: np.ndarray, rows: np.ndarray) -> Built:
    m = compact_module.CODE_BYTES
    spec = f"OPQ{m},IVF{_lists(len(x))},PQ{m}"
    return _factory_pq(spec, f"OPQ{m} + IVF-PQ 8-bit {m} B + re-rank", x, train, rows)


def _factory_pq(spec: str, name: str, x: np.ndarray, train: np.ndarray, rows: np.ndarray) -> Built:
    """A faiss ``index_factory`` IVF index of ``spec`` over ``x`` measured as ``name``."""
    n, d = x.shape
    index = faiss.index_factory(d, spec, faiss.METRIC_INNER_PRODUCT)
    _, train_s = common.timed(functools.partial(index.train, train))
    _, add_s = common.timed(functools.partial(index.add, x))
    faiss.extract_index_ivf(index).nprobe = compact_module.nprobe_for(_lists(n))
    shortlist = compact_module.SHORTLIST
    search = reranked(lambda v: index.search(v, shortlist)[1][0], rows)
    return Built(name, ram_per_image(index, n, extra=8), train_s + add_s, search)


def itq(x: np.ndarray, train: np.ndarray, rows: np.ndarray) -> Built:
    n, d = x.shape
    bits = 256
    rotation = faiss.ITQTransform(d, bits, False)

    def codes(v: np.ndarray) -> np.ndarray:
        return np.packbits(rotation.apply(np.ascontiguousarray(v)) > 0, axis=1)

    t0 = time.perf_counter()
    rotation.train(train[:50_000])
    index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(bits), bits, _lists(n))
    index.train(codes(train))
    for start in range(0, n, CHUNK):
        index.add(codes(x[start : start + CHUNK]))
    build_s = time.perf_counter() - t0
    index.nprobe = compact_module.nprobe_for(_lists(n))
    shortlist = compact_module.SHORTLIST
    search = reranked(lambda v: index.search(codes(v), shortlist)[1][0], rows)
    return Built(
        f"ITQ {bits}-bit binary IVF + re-rank",
        ram_per_image(index, n, extra=8, binary=True),
        build_s,
        search,
    )


def ivf_flat(x: np.ndarray, train: np.ndarray) -> Built:
    n, d = x.shape
    nprobe = lookalike.get_settings().ann_nprobe
    index = FloatIndex(d, nprobe=nprobe)
    sample = x[FloatIndex.training_sample(n)]
    _, train_s = common.timed(functools.partial(index.train_ivf, sample, n))
    _, add_s = common.timed(functools.partial(index.add, np.arange(n, dtype=np.int64), x))
    return Built(
        f"IVF-flat (today's index above `ann_threshold`, nprobe {nprobe}): baseline",
        ram_per_image(index._index, n, extra=8),  # FloatIndex keeps its sorted ids too
        train_s + add_s,
        lambda v: index.search_space(v, K)[1][0],
        note="no re-rank: float32 rows in RAM",
    )


def bench_scale(n: int, folder: Path) -> tuple[Measured, float, float]:
    """``CompactIndex`` at ``n`` vectors: (figures, train s, f16 GB on disk)."""
    model = Spectral(effnet.FEATURE_DIM, n)
    first = next(model.chunks(n, seed=3))
    whitening = _fit(first)
    q = whitening.apply(model.sample(QUERIES, np.random.default_rng(4)))
    # Trained on as many fresh draws of the mixture as a sample of the rows would hold.
    size = len(CompactIndex.training_sample(n))
    train = np.concatenate([whitening.apply(c) for c in model.chunks(size, seed=11)])
    index, train_s, add_s = build_compact(folder, model, n, whitening, train)
    print(f"compact at {n:,}: train {train_s:.0f} s, add {add_s:.0f} s", flush=True)
    ram = ram_per_image(index._coarse, n, extra=8)
    truth, truth_s = common.timed(functools.partial(exact_truth, index._rows, q))
    print(f"exact search of {QUERIES} queries: {truth_s:.0f} s", flush=True)
    p50, recall = evaluate(compact_search(index), q, truth)
    gb = index.path.stat().st_size / 1e9
    SWEEP.extend(nprobe_sweep(index, q, truth))
    return Measured("compact", ram, p50, recall, train_s + add_s), train_s, gb


# (nprobe, p50 ms, recall@10) of the scale part's index at other nprobes, in turns.
SWEEP: list[tuple[int, float, float]] = []


def nprobe_sweep(
    index: CompactIndex, q: np.ndarray, truth: np.ndarray
) -> list[tuple[int, float, float]]:
    """The same index searched at several nprobes, query by query in turns."""
    ivf = faiss.extract_index_ivf(index._coarse)
    shipped = int(ivf.nprobe)
    probes = sorted({compact_module.NPROBE, 128, 256, shipped} - {0})

    def at(nprobe: int) -> QueryFn:
        def search(v: np.ndarray) -> np.ndarray:
            ivf.nprobe = nprobe
            return compact_search(index)(v)

        return search

    try:
        measured = evaluate_together([at(p) for p in probes], q, truth)
    finally:
        ivf.nprobe = shipped
    out = [(p, ms, r) for p, (ms, r) in zip(probes, measured, strict=True)]
    for row in out:
        print("nprobe {}: p50 {:.2f} ms, recall@10 {:.3f}".format(*row), flush=True)
    return out


# --------------------------------------------------------------------------- rendering


def render_candidates(n: int, results: list[Measured], stats: tuple[float, ...]) -> str:
    base = results[-1]
    rows = [
        [
            r.name,
            f"{r.ram:,.1f}",
            f"{r.p50_ms:.2f}",
            f"{r.p50_ms / base.p50_ms:.2f}x",
            f"{r.recall:.3f}",
            f"{r.build_s:.0f}",
        ]
        for r in results
    ]
    mean, p5, p95, nn = stats
    return "\n".join(
        [
            f"## Compact index candidates (`bench/compact.py candidates`): {n:,} vectors",
            "",
            f"{n:,} synthetic 1280-d cnn-like vectors (random pairs' cosine {mean:.2f}, 5th/95th "
            f"percentile {p5:.2f}/{p95:.2f}, queries' nearest neighbour {nn:.2f}; recipe in "
            "the docstring of `bench/compact.py`), whitened as the default settings say. "
            "Each compact "
            f"candidate scans {compact_module.nprobe_for(_lists(n))} of its {_lists(n):,} IVF "
            "lists for a shortlist of "
            f"{compact_module.SHORTLIST} rows and re-ranks it exactly with the float16 rows "
            "memory-mapped from disk (in the page cache here). RAM per image: the faiss "
            "index's bytes (codes, list ids, centroids) per row, plus the 8-byte catalog id "
            "kept per row. Query: median of 200 one-row searches on one thread, the candidates "
            "taking turns query by query (load on the machine weighs on each alike). Recall@10: "
            "the final top 10 against exact search in the whitened space. The baseline is "
            "measured in the same run.",
            "",
            common.table(
                [
                    "index",
                    "RAM bytes/image",
                    "1-row query ms",
                    "vs baseline",
                    "recall@10",
                    "build s",
                ],
                rows,
            ),
        ]
    )


def candidate_targets(results: list[Measured]) -> list[Target]:
    chosen, base = results[0], results[-1]
    return [
        informational(
            "IVF-PQ fast-scan + re-rank against IVF-flat: RAM/image, 1-row query ms, recall@10",
            f"{chosen.ram:.0f} / {base.ram:.0f} B, {chosen.p50_ms:.2f} / {base.p50_ms:.2f} ms, "
            f"{chosen.recall:.3f} / {base.recall:.3f}",
        )
    ]


def render_scale(n: int, r: Measured, train_s: float, gb: float) -> str:
    return "\n".join(
        [
            f"## Compact index at {n:,} vectors (`bench/compact.py scale`)",
            "",
            f"`CompactIndex` over {n:,} synthetic vectors (the recipe of the candidates "
            "section), generated, whitened and added 100,000 at a time; whitening fitted on "
            f"the first 100,000. RAM per image {r.ram:.1f} bytes (codes, list ids, "
            f"centroids, catalog ids); float16 rows on disk: {gb:.1f} GB. Build: train "
            f"{train_s:.0f} s, generate + whiten + add {r.build_s - train_s:.0f} s. "
            f"One-row query p50 {r.p50_ms:.2f} ms on one thread (nprobe "
            f"{compact_module.nprobe_for(_lists(n))} of {_lists(n):,} lists: "
            f"`nprobe_for`, shortlist {compact_module.SHORTLIST}, the float16 rows "
            f"in the page cache), recall@10 {r.recall:.3f} against a brute-force pass over "
            "the float16 rows for 200 queries.",
            "",
            "The same index at other nprobes (queries in turns):",
            "",
            common.table(
                ["nprobe", "1-row query p50 ms", "recall@10"],
                [[str(p), f"{ms:.2f}", f"{rec:.3f}"] for p, ms, rec in SWEEP],
            ),
        ]
    )


def scale_targets(n: int, r: Measured) -> list[Target]:
    return [
        check(f"coarse index RAM per image at {n:,}, bytes", r.ram, "<=", TARGET_RAM, "{:.1f}"),
        check(f"one-row query p50 at {n:,}, one core, ms", r.p50_ms, "<=", TARGET_MS, "{:.2f}"),
        check(f"recall@10 after re-rank at {n:,}", r.recall, ">=", TARGET_RECALL, "{:.3f}"),
        informational(f"build time at {n:,}", common.duration(r.build_s)),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "parts", nargs="*", metavar="PART", help=f"{', '.join(PARTS)} (default: all)"
    )
    parser.add_argument("--size", type=int, default=1_000_000, help="vectors for the candidates")
    parser.add_argument(
        "--scale-size", type=int, default=10_000_000, help="vectors for the compact index"
    )
    common.add_output_arguments(parser, QUICK)
    args = parser.parse_args(argv)
    parts = args.parts or list(PARTS)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    if args.quick:
        args.size = min(args.size, 200_000)
        args.scale_size = min(args.scale_size, 1_000_000)
    out = common.Output.from_args(args, QUICK)
    if "candidates" in parts:
        with common.temp_dir("compact") as folder:
            results, stats, _ = bench_candidates(args.size, folder)
        gc.collect()
        out.write(
            "compact-candidates",
            render_candidates(args.size, results, stats),
            candidate_targets(results),
        )
    if "scale" in parts:
        with common.temp_dir("compact") as folder:
            r, train_s, gb = bench_scale(args.scale_size, folder)
        out.write(
            "compact-scale",
            render_scale(args.scale_size, r, train_s, gb),
            scale_targets(args.scale_size, r),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
