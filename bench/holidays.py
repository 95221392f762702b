"""INRIA Holidays retrieval benchmark for the ``cnn`` descriptor.

Embeds every database image of the Holidays subset in ``../shared/data/holidays``, searches
exhaustively (inner product; a query keeps each image's best score over its rotated
variants, as the engine does), and prints mAP over the queries of ``queries.csv`` (the query
left out of its own ranking), plus precision@1, recall@10 and the embedding time per image
(wall and CPU milliseconds, decoding excluded, median of several runs).

By default it runs the network in both precisions, INT8 and float32, in the same run: the
INT8 rows then say how its mAP, its time and its vectors (cosine to the float ones of the
same images) compare. The CPU model and the instruction sets ONNX Runtime picks its kernels
by (AVX2, AVX-512, VNNI) are printed first: INT8 results depend on them where sums saturate.

    .venv/bin/python bench/holidays.py                       # the default descriptor
    .venv/bin/python bench/holidays.py --side 224 288 384 --p 2 3 --levels 0 3 --precision int8

Several sides, GeM exponents and region levels give one row per combination; the network
runs once per side and precision. Nothing is learnt from Holidays' labels; then, on the
default descriptor's vectors, ``rerank_ablation`` measures PCA-whitening learned on the
database images themselves, alpha-query expansion and database-side augmentation, alone and
together, and the whitening against the size of the collection it is fitted on
(``--no-ablation``: skipped).
On a busy machine, ``--threads 1`` makes the CPU column a stable cost measure (with more
threads, ONNX Runtime's workers spin while they wait for each other, which inflates CPU
time under load).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

import common
import lookalike
from lookalike.describe.cnn import DEFAULT_GEM_P, DEFAULT_LEVELS, DEFAULT_SIDE, CnnDescriptor
from lookalike.eval.retrieval import (
    RetrievalScores,
    evaluate,
    read_labels,
    read_queries,
    read_relevant,
)
from lookalike.settings import get_settings
from rerank_ablation import TARGET_MAP, Holidays, ablation
from sections import Target, check, informational

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "holidays"
# Holidays' extra_queries are query images outside the database (queries.csv does not use them).
EXCLUDED_SUBSETS = ("extra_queries",)
ROTATIONS = (
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_180,
    Image.Transpose.ROTATE_270,
)


@dataclass
class Row:
    """One setting's results."""

    precision: str
    side: int
    p: float
    levels: int
    version: str
    rot4: RetrievalScores  # query rotated 0/90/180/270, best score per image
    rot0: RetrievalScores  # the query as it is
    cosine: str
    ms_per_image: float = float("nan")  # wall time, median
    cpu_ms_per_image: float = float("nan")  # CPU time of all threads, median

    def as_dict(self) -> dict[str, object]:
        """The row as plain JSON-ready values."""
        return {
            "precision": self.precision,
            "side": self.side,
            "p": self.p,
            "levels": self.levels,
            "version": self.version,
            "rot4": self.rot4.as_dict(),
            "rot0": self.rot0.as_dict(),
            "cosine": self.cosine,
            "ms_per_image": self.ms_per_image,
            "cpu_ms_per_image": self.cpu_ms_per_image,
        }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Holidays folder")
    ap.add_argument("--side", type=int, nargs="+", default=[DEFAULT_SIDE], help="shorter sides")
    ap.add_argument("--p", type=float, nargs="+", default=[DEFAULT_GEM_P], help="GeM exponents")
    ap.add_argument(
        "--levels", type=int, nargs="+", default=[DEFAULT_LEVELS], help="region levels (0: GeM)"
    )
    ap.add_argument(
        "--precision",
        nargs="+",
        choices=["int8", "fp32"],
        default=["int8", "fp32"],
        help="network precisions (both by default: INT8 compared with float32)",
    )
    ap.add_argument("--cache-dir", type=Path, default=None, help="converted-model cache")
    ap.add_argument("--threads", type=int, default=None, help="inference threads (0: all)")
    ap.add_argument("--batch-size", type=int, default=None, help="images per inference call")
    ap.add_argument(
        "--timing-runs", type=int, default=5, help="timed runs per side (median is reported)"
    )
    ap.add_argument("--timing-images", type=int, default=64, help="images per timed run")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument(
        "--no-ablation",
        dest="ablation",
        action="store_false",
        help="skip the whitening / query expansion / DBA ablation (bench/rerank_ablation.py)",
    )
    common.add_output_arguments(ap)
    return ap.parse_args(argv)


def load_images(paths: Sequence[str]) -> list[Image.Image]:
    """The images, decoded to RGB in memory (decoding is not part of the timed embedding)."""
    out = []
    for path in paths:
        with Image.open(path) as im:
            out.append(im.convert("RGB"))
    return out


def score(
    db: np.ndarray,
    query_rows: Sequence[np.ndarray],
    paths: Sequence[str],
    queries: Sequence[str],
    groups: dict[str, str],
) -> RetrievalScores:
    """Scores of an exhaustive search; ``query_rows[v][i]`` is variant v of query i.

    Each database image gets its best inner product over a query's variants (as the engine
    does), and the database is ranked by it.
    """
    sims = np.max(np.stack([rows @ db.T for rows in query_rows]), axis=0)
    order = np.argsort(-sims, axis=1, kind="stable")
    ranked = {q: [paths[j] for j in row] for q, row in zip(queries, order, strict=True)}
    return evaluate(ranked, groups, queries)


def time_embedding(
    descriptors: Sequence[CnnDescriptor], images: Sequence[Image.Image], runs: int
) -> list[tuple[float, float]]:
    """Median (wall, CPU) milliseconds per image of each descriptor's ``embed``.

    The descriptors take turns within each of ``runs`` runs, so load from other processes
    spreads over all of them instead of skewing one. CPU time (all threads of this process)
    barely moves with such load, so it is the number to compare on a busy machine; wall time
    is what indexing takes. A warm-up call first creates the sessions and their arenas.
    """
    for desc in descriptors:
        desc.embed(images[: min(4, len(images))])
    wall: list[list[float]] = [[] for _ in descriptors]
    cpu: list[list[float]] = [[] for _ in descriptors]
    for _ in range(max(1, runs)):
        for i, desc in enumerate(descriptors):
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            desc.embed(images)
            cpu[i].append((time.process_time() - cpu_start) * 1000 / len(images))
            wall[i].append((time.perf_counter() - wall_start) * 1000 / len(images))
    return [(statistics.median(w), statistics.median(c)) for w, c in zip(wall, cpu, strict=True)]


def cosine_stats(db: np.ndarray, paths: Sequence[str], groups: dict[str, str]) -> str:
    """A line on how same-group and other-group cosine similarities are spread."""
    labels = np.array([groups[p] for p in paths])
    sims = db @ db.T
    same = labels[:, None] == labels[None, :]
    upper = np.triu(np.ones_like(same), k=1)
    pos = sims[same & upper]
    neg = sims[~same & upper]
    return (
        f"cosine: same group median {np.median(pos):.3f} (p10 {np.percentile(pos, 10):.3f}), "
        f"other groups p99 {np.percentile(neg, 99):.3f}, max {neg.max():.3f}"
    )


def precision_comparison(
    rows: Sequence[Row], vectors: dict[tuple[str, int, float, int], np.ndarray]
) -> list[str]:
    """One line per setting run in both precisions: INT8 against float32 on mAP, CPU time
    (the speed-up: float CPU ms / INT8 CPU ms) and the cosine between the two vectors of
    each database image (median, 1st percentile, minimum)."""
    fp32_rows = {(r.side, r.p, r.levels): r for r in rows if r.precision == "fp32"}
    lines = []
    for int8 in (r for r in rows if r.precision == "int8"):
        side, p, levels = int8.side, int8.p, int8.levels
        fp32 = fp32_rows.get((side, p, levels))
        if fp32 is None:
            continue
        cos = (vectors["int8", side, p, levels] * vectors["fp32", side, p, levels]).sum(axis=1)
        lines.append(
            f"int8 vs fp32 (side {side}, p {p:g}, levels {levels}): "
            f"mAP {int8.rot4.map:.4f} vs {fp32.rot4.map:.4f}, "
            f"speed-up {fp32.cpu_ms_per_image / int8.cpu_ms_per_image:.2f}x (CPU time), "
            f"cosine of the two vectors: median {np.median(cos):.4f}, "
            f"1st percentile {np.percentile(cos, 1):.4f}, min {cos.min():.4f}"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = common.Output.from_args(args)
    printed = common.tee_stdout()
    data: Path = args.data.resolve()
    labels_csv, queries_csv = data / "labels.csv", data / "queries.csv"
    if not labels_csv.is_file() or not queries_csv.is_file():
        sys.exit(
            f"Holidays data not found: expected labels.csv and queries.csv in {data}.\n"
            "The benchmark needs the shared evaluation data (../shared/data/holidays); "
            "pass --data to point at it."
        )

    groups = read_labels(labels_csv, exclude_subsets=EXCLUDED_SUBSETS)
    queries = read_queries(queries_csv)
    paths = list(groups)
    missing = [p for p in [*paths, *queries] if not Path(p).is_file()]
    if missing:
        sys.exit(f"{len(missing)} Holidays images are missing, e.g. {missing[0]}")
    # The group labels must give exactly the relevant sets queries.csv lists.
    for query, relevant in read_relevant(queries_csv).items():
        derived = {p for p in paths if groups[p] == groups.get(query) and p != query}
        if derived != relevant:
            print(f"warning: relevant set of {query} differs from queries.csv", file=sys.stderr)

    index_of = {p: i for i, p in enumerate(paths)}
    query_index = np.array([index_of[q] for q in queries])

    print(f"CPU: {common.cpu_model()} ({common.cpu_features()})")
    print(f"Holidays: {len(paths)} database images, {len(queries)} queries ({data})")
    t0 = time.perf_counter()
    db_images = load_images(paths)
    print(f"decoded in {time.perf_counter() - t0:.1f}s")
    timing_images = db_images[: args.timing_images]

    results: list[Row] = []
    # The re-ranking ablation runs on the shipped descriptor's vectors, if among those run.
    default_version = CnnDescriptor(get_settings(model_cache_dir=args.cache_dir)).version
    holidays: Holidays | None = None
    timed: list[CnnDescriptor] = []
    vectors: dict[tuple[str, int, float, int], np.ndarray] = {}
    for precision, side in itertools.product(args.precision, args.side):
        settings = get_settings(
            model_cache_dir=args.cache_dir,
            inference_threads=args.threads,
            batch_size=args.batch_size,
            cnn_precision=precision,
        )
        desc = CnnDescriptor(settings, side=side)
        db_maps = desc.feature_maps(db_images)
        # Query variants: the database row is the unrotated query; add the three rotations.
        rotated_maps = [
            desc.feature_maps([db_images[i].transpose(r) for i in query_index]) for r in ROTATIONS
        ]
        for p, levels in itertools.product(args.p, args.levels):
            variant = desc.with_pooling(p, levels)

            def pool(maps: list[np.ndarray], variant: CnnDescriptor = variant) -> np.ndarray:
                return np.concatenate([variant.pool(m[None]) for m in maps])

            db = pool(db_maps)
            vectors[precision, side, p, levels] = db
            plain = [db[query_index]]
            variants = plain + [pool(maps) for maps in rotated_maps]
            if args.ablation and variant.version == default_version:
                holidays = Holidays(db, variants, query_index, paths, queries, groups)
            rot4 = score(db, variants, paths, queries, groups)
            rot0 = score(db, plain, paths, queries, groups)
            print(
                f"{variant.version}: mAP {rot4.map:.4f} (no rotations {rot0.map:.4f})", flush=True
            )
            timed.append(variant)
            cosine = cosine_stats(db, paths, groups)
            results.append(Row(precision, side, p, levels, variant.version, rot4, rot0, cosine))

    print(f"timing: {args.timing_runs} runs of {len(timing_images)} decoded images each ...")
    timings = time_embedding(timed, timing_images, args.timing_runs)
    for row, (wall_ms, cpu_ms) in zip(results, timings, strict=True):
        row.ms_per_image, row.cpu_ms_per_image = wall_ms, cpu_ms

    header = (
        f"{'net':>4} {'side':>5} {'p':>4} {'levels':>6} | {'mAP rot4':>8} {'mAP rot0':>8} "
        f"{'p@1':>6} {'r@10':>6} | {'ms/img':>7} {'CPU ms':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in results:
        print(
            f"{row.precision:>4} {row.side:>5} {row.p:>4g} {row.levels:>6} | "
            f"{row.rot4.map:>8.4f} {row.rot0.map:>8.4f} {row.rot4.p1:>6.3f} "
            f"{row.rot4.r10:>6.3f} | {row.ms_per_image:>7.1f} {row.cpu_ms_per_image:>7.1f}"
        )
    for row in results:
        print(f"{row.version}: {row.cosine}")
    for line in precision_comparison(results, vectors):
        print(line)
    extra = [] if holidays is None else ablation(holidays, get_settings())
    if args.ablation:
        extra.append(engine_target(paths, queries, groups, args.cache_dir))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([row.as_dict() for row in results], indent=2))
    out.write("holidays", section(printed.getvalue(), data), [*targets(results), *extra])
    return 0


def engine_target(
    paths: Sequence[str], queries: Sequence[str], groups: dict[str, str], cache_dir: Path | None
) -> Target:
    """mAP of the engine itself with its default settings: the database images indexed into
    a fresh data folder (whitening, augmentation as the index manager applies them), each
    query searched with ``search_one`` (rotations, expansion as the defaults say)."""
    with tempfile.TemporaryDirectory() as tmp:
        overrides = {} if cache_dir is None else {"model_cache_dir": cache_dir}
        with lookalike.open(Path(tmp) / "data", **overrides) as lk:
            t0 = time.perf_counter()
            lk.index(paths, faces=False, progress=False)
            t1 = time.perf_counter()
            results = {q: lk.search_one(q, k=len(paths)) for q in queries}
            t2 = time.perf_counter()
            index = lk.indexes.get(lk.descriptor("cnn"))
    ranked = {q: [h.path for h in r.results] for q, r in results.items()}
    value = evaluate(ranked, groups, queries).map
    expanded = sum(r.expanded for r in results.values())
    print(
        f"engine with the default settings: mAP {value:.4f} (index {t1 - t0:.0f} s, "
        f"{(t2 - t1) / len(queries) * 1e3:.0f} ms per query, {expanded}/{len(queries)} expanded, "
        f"index width {index.to_space(np.zeros((1, 1280), np.float32)).shape[1]})"
    )
    return check(
        "mAP through the engine with the default settings (index, search_one)",
        value,
        ">=",
        TARGET_MAP,
        "{:.4f}",
    )


# --------------------------------------------------------------------------- BENCHMARKS.md

# The most mAP the INT8 network may lose to the float32 one (README: the same Holidays mAP).
INT8_MAP_LOSS = 0.01


def targets(rows: Sequence[Row]) -> list[Target]:
    """The default descriptor's mAP; INT8 against float32 where rows of both precisions ran."""
    wanted = {"side": DEFAULT_SIDE, "p": DEFAULT_GEM_P, "levels": DEFAULT_LEVELS}
    default = [d for d in (r.as_dict() for r in rows) if all(d[k] == v for k, v in wanted.items())]
    if not default:
        return [
            informational("mAP of the default cnn descriptor", "- (not among the settings run)")
        ]
    shipped = get_settings().cnn_precision
    by_precision = {str(d.get("precision", shipped)): d for d in default}
    main = by_precision.get(shipped, default[0])
    out = [
        informational(
            f"mAP of the default cnn descriptor `{main['version']}` (each query in 4 rotations)",
            f"{_map(main):.4f}",
        )
    ]
    if {"int8", "fp32"} <= by_precision.keys():
        out.append(
            check(
                "INT8 mAP minus float32 mAP, default descriptor (README: the same mAP)",
                _map(by_precision["int8"]) - _map(by_precision["fp32"]),
                ">=",
                -INT8_MAP_LOSS,
                "{:+.4f}",
            )
        )
    return out


def _map(row: dict[str, object]) -> float:
    scores = row["rot4"]
    assert isinstance(scores, dict)
    return float(scores["mAP"])


def section(printed: str, data: Path) -> str:
    """The section: what was measured, then the script's output as it printed it."""
    return "\n".join(
        [
            "## Holidays retrieval quality (`bench/holidays.py`)",
            "",
            f"The Holidays subset in `{data}`: every database image embedded, exhaustive "
            "search, mAP over the queries of `queries.csv` (each left out of its own ranking) "
            "with each query tried in its four rotations, best score per image, as the engine "
            "searches (*rot4*), and as it is (*rot0*); precision@1, recall@10; embedding time "
            "per image (decoding excluded, median of several runs). Then, on the default "
            "descriptor's vectors, the re-ranking ablation (`bench/rerank_ablation.py`): "
            "PCA-whitening learned without labels on the 805 database images (width, power, "
            "shrinkage; and fitted on random subsets, to find the collection size below which "
            "it does not help), alpha-query expansion (n, alpha) and database-side "
            "augmentation (k), alone and together. Output of the script:",
            "",
            "```text",
            printed.rstrip(),
            "```",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
