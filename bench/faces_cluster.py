"""Face clustering on press photos and LFW identities: pairwise P/R/F1, clusters, mixing.

Data (shared evaluation data):

- ``faces-photos/``: 62 colour photos of 13 people (``labels.csv``: path, person); the main
  face of each photo (``lookalike.faces.main_face``), read as indexing reads faces
  (``lookalike.faces.read``: JPEG draft decoding, HOG);
- ``lfw-dev/``: the 2,202 tight crops, identity = folder name, crop mode (no detector); the
  embeddings are ``bench/faces_lfw.py``'s ``crop`` variant, from its cache when present.

Each face is its own photo. For each threshold (0.40 to 0.60 by 0.05) ``cluster_faces``
runs with and without its merge pass, faces placed best quality first; scores from
``lookalike.eval.faces.cluster_scores``: pairwise precision, recall and F1 against the
identities, clusters made, and clusters that mix two or more people. Target, on the press
photos at the default threshold with the merge pass: F1 >= 0.95 and no mixed cluster.

Usage: ``python bench/faces_cluster.py [--data DIR] [--no-write]``
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import faces_lfw
from lookalike.eval.faces import ClusterScores, cluster_scores, rank1
from lookalike.eval.runner import main_faces
from lookalike.settings import get_settings
from sections import Target, check, informational

THRESHOLDS = (0.40, 0.45, 0.50, 0.55, 0.60)
PHOTOS = "faces-photos"
# The goal on the press photos at the default threshold.
TARGET_F1 = 0.95


def photo_faces(root: Path) -> tuple[np.ndarray, list[str], list[float], list[str]]:
    """(embeddings (n, 128), people, qualities, photos without a face) of faces-photos."""
    with open(root / "labels.csv", newline="") as f:
        labels = {str((root / r["path"]).resolve()): r["person"] for r in csv.DictReader(f)}
    found = main_faces(list(labels), get_settings(), progress=False)
    vectors: list[np.ndarray] = []
    people: list[str] = []
    quality: list[float] = []
    for path, person in labels.items():
        face = found.faces[path]
        if face is not None and face.embedding is not None:
            vectors.append(face.embedding)
            people.append(person)
            quality.append(face.quality)
    missing = found.no_face + list(found.unreadable)
    return np.stack(vectors), people, quality, missing


def lfw_faces(root: Path, workers: int, cache: Path) -> tuple[np.ndarray, list[str], list[float]]:
    """(embeddings (n, 128), identities, qualities) of the lfw-dev crops, crop mode."""
    paths, *_ = faces_lfw.read_pairs(root)
    embedded, cached = faces_lfw.embed_all(
        root, paths, faces_lfw.Variant("crop", "crop"), workers, cache
    )
    print(f"lfw-dev: {len(paths)} crops embedded{' (cached)' if cached else ''}", flush=True)
    return embedded.vectors, [Path(p).parent.name for p in paths], embedded.quality.tolist()


def sweep(
    name: str, vectors: np.ndarray, people: Sequence[str], quality: Sequence[float]
) -> tuple[list[ClusterScores], list[float]]:
    """Scores and clustering seconds for every threshold, merge off and on."""
    scores: list[ClusterScores] = []
    seconds: list[float] = []
    for threshold in THRESHOLDS:
        for merge in (False, True):
            t0 = time.perf_counter()
            result = cluster_scores(
                vectors, people, threshold=threshold, quality=quality, merge=merge
            )
            seconds.append(time.perf_counter() - t0)
            scores.append(result)
            print(
                f"{name} @ {threshold:.2f} merge {'on ' if merge else 'off'}: "
                f"P {result.precision:.3f} R {result.recall:.3f} F1 {result.f1:.3f}, "
                f"{result.clusters} clusters, {result.mixed} mixed ({seconds[-1]:.1f} s)",
                flush=True,
            )
    return scores, seconds


def rows_of(
    scores: Sequence[ClusterScores], seconds: Sequence[float], default: float
) -> list[list[object]]:
    best = max(s.f1 for s in scores)
    rows: list[list[object]] = []
    for s, took in zip(scores, seconds, strict=True):
        mark = " (default)" if abs(s.threshold - default) < 1e-9 and s.merge else ""
        rows.append(
            [
                f"{s.threshold:.2f}{mark}",
                "on" if s.merge else "off",
                f"{s.precision:.3f}",
                f"{s.recall:.3f}",
                f"**{s.f1:.3f}**" if s.f1 == best else f"{s.f1:.3f}",
                s.clusters,
                s.mixed,
                f"{took:.1f}",
            ]
        )
    return rows


HEADERS = ["threshold", "merge", "precision", "recall", "F1", "clusters", "mixed clusters", "s"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    common.add_data_argument(parser)
    parser.add_argument(
        "--workers", type=int, default=common.cpu_count(), help="processes for LFW embedding"
    )
    parser.add_argument("--cache", type=Path, default=faces_lfw.DEFAULT_CACHE, help="LFW cache")
    common.add_output_arguments(parser)
    args = parser.parse_args(argv)
    out = common.Output.from_args(args)

    data = common.data_dir(args.data, f"{PHOTOS}/labels.csv", f"{faces_lfw.FOLDER}/pairs.csv")
    default = get_settings().face_cluster_threshold

    photo_vectors, photo_people, photo_quality, missing = photo_faces(data / PHOTOS)
    photo_rank1 = rank1(list(photo_vectors), photo_people)
    photo_scores, photo_seconds = sweep("faces-photos", photo_vectors, photo_people, photo_quality)

    lfw_vectors, lfw_people, lfw_quality = lfw_faces(
        data / faces_lfw.FOLDER, max(1, args.workers), args.cache
    )
    lfw_rank1 = rank1(list(lfw_vectors), lfw_people)
    lfw_scores, lfw_seconds = sweep("lfw-dev", lfw_vectors, lfw_people, lfw_quality)

    at_default = next(s for s in photo_scores if abs(s.threshold - default) < 1e-9 and s.merge)
    lfw_default = next(s for s in lfw_scores if abs(s.threshold - default) < 1e-9 and s.merge)
    targets: list[Target] = [
        check(
            f"faces-photos, default threshold {default}: pairwise F1",
            at_default.f1,
            ">=",
            TARGET_F1,
            "{:.3f}",
        ),
        check(
            f"faces-photos, default threshold {default}: clusters mixing people",
            at_default.mixed,
            "==",
            0,
            "{:.0f}",
        ),
        informational(
            f"lfw-dev crops, default threshold {default}: pairwise F1 (mixed clusters)",
            f"{lfw_default.f1:.3f} ({lfw_default.mixed})",
        ),
    ]
    lfw_singletons = sum(1 for p in set(lfw_people) if lfw_people.count(p) == 1)
    markdown = "\n".join(
        [
            "## Faces: clustering (`bench/faces_cluster.py`)",
            "",
            "`lookalike.people.cluster.cluster_faces` (average linkage, faces placed best "
            "quality first, then the optional merge pass), each face its own photo. Pairwise "
            "precision / recall / F1 against the identities; mixed clusters hold two or more "
            f"people. Default threshold (`face_cluster_threshold`): {default}; best F1 in bold. "
            "`s`: seconds to cluster (one process, shared machine).",
            "",
            f"### faces-photos: {len(photo_people)} main faces of {len(set(photo_people))} "
            f"people (HOG, read as indexing reads them; photos without a face: "
            f"{', '.join(missing) or 'none'})",
            "",
            common.table(HEADERS, rows_of(photo_scores, photo_seconds, default)),
            "",
            f"Rank-1 leave-one-out: {100 * photo_rank1.accuracy:.1f}% "
            f"({photo_rank1.hits}/{photo_rank1.queries}).",
            "",
            f"### lfw-dev: {len(lfw_people)} crops of {len(set(lfw_people))} people "
            f"({lfw_singletons} with a single image), crop mode",
            "",
            common.table(HEADERS, rows_of(lfw_scores, lfw_seconds, default)),
            "",
            f"Rank-1 leave-one-out: {100 * lfw_rank1.accuracy:.1f}% "
            f"({lfw_rank1.hits}/{lfw_rank1.queries} crops whose person has another crop).",
        ]
    )
    out.write("faces-cluster", markdown, targets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
