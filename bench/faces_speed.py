"""Face pipeline on press photos: time per stage, detection rate, identification.

Data: ``faces-photos/`` of the shared evaluation data: 62 colour photos (0.2 to 12.6 MP) of
13 people, one face of interest each; ``labels.csv``: path, person.

For each photo, each stage is timed ``--repeats`` times (median kept): decode (full size,
and JPEG draft decoding with ``decode(min_side=--min-side)``), detect, landmarks (+ chip and
quality), embed. The face kept per photo is the largest one found. Scores: detection rate
(at least one face, and at least one usable face), rank-1 identification (leave-one-out:
does the nearest other photo show the same person?) and verification accuracy over all pairs
at the default threshold. Both decodes are scored, to show what draft decoding costs in
accuracy. ``--cnn`` adds the CNN (MMOD, in ONNX Runtime; the default detector). Targets:
draft decoding, as indexing does it, finds a face in as many photos and identifies as many
people (rank-1) as full decoding.

Usage: ``python bench/faces_speed.py [--data DIR] [--repeats 3] [--cnn] [--no-write]``
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from lookalike.decode.image import decode, read_file
from lookalike.faces import config
from lookalike.faces.config import Detector
from lookalike.faces.detect import Face, StageTimes, detect_boxes, detect_faces
from lookalike.faces.embed import embed_faces, pairwise_distances
from sections import Target, check, informational

FOLDER = "faces-photos"
DEFAULT_MIN_SIDE = 1024
MAX_PIXELS = 100_000_000
QUICK = "one run per photo, and the detector input sweep at the default size only"


@dataclass
class PhotoResult:
    """One photo under one setting: median stage times, faces found, the main embedding."""

    path: str
    person: str
    megapixels: float
    decode_ms: float
    detect_ms: float
    landmarks_ms: float
    embed_ms: float
    faces: int
    usable: int
    embedding: np.ndarray | None = field(default=None, repr=False)

    @property
    def total_ms(self) -> float:
        return self.decode_ms + self.detect_ms + self.landmarks_ms + self.embed_ms


def run_photo(
    data: bytes,
    path: str,
    person: str,
    *,
    min_side: int | None,
    detector: Detector,
    repeats: int,
) -> PhotoResult:
    """Decode and analyse one photo ``repeats`` times; median times, the last run's faces."""
    decode_ms: list[float] = []
    stages: list[StageTimes] = []
    faces: list[Face] = []
    width = height = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        decoded = decode(data, path, min_side=min_side, max_pixels=MAX_PIXELS)
        decode_ms.append((time.perf_counter() - t0) * 1000.0)
        width, height = decoded.width, decoded.height
        times = StageTimes()
        faces = detect_faces(decoded.image, detector=detector, timings=times)
        main = max(faces, key=lambda f: f.width, default=None)
        if main is not None:
            t1 = time.perf_counter()
            embed_faces([main])
            times.embed_ms += (time.perf_counter() - t1) * 1000.0
        stages.append(times)
    main = max(faces, key=lambda f: f.width, default=None)
    return PhotoResult(
        path=path,
        person=person,
        megapixels=width * height / 1e6,
        decode_ms=statistics.median(decode_ms),
        detect_ms=statistics.median(s.detect_ms for s in stages),
        landmarks_ms=statistics.median(s.landmarks_ms for s in stages),
        embed_ms=statistics.median(s.embed_ms for s in stages),
        faces=len(faces),
        usable=sum(f.usable for f in faces),
        embedding=None if main is None else main.embedding,
    )


def identification(results: Sequence[PhotoResult]) -> tuple[float, float, int]:
    """(rank-1 accuracy, verification accuracy at the default threshold, photos scored).

    Photos without a face count as misses for rank-1 and are left out of the pairs.
    """
    found = [r for r in results if r.embedding is not None]
    if len(found) < 2:
        return float("nan"), float("nan"), len(found)
    vectors = np.stack([r.embedding for r in found if r.embedding is not None])
    people = np.array([r.person for r in found])
    dist = pairwise_distances(vectors, vectors)
    np.fill_diagonal(dist, np.inf)
    hits = int(np.sum(people[np.argmin(dist, axis=1)] == people))
    upper = np.triu_indices(len(found), k=1)
    same = (people[:, None] == people[None, :])[upper]
    accept = dist[upper] < config.DEFAULT_THRESHOLD
    return hits / len(results), float(np.mean(accept == same)), len(found)


def sweep_sides(
    photos: Sequence[tuple[bytes, str, str]], sides: Sequence[int], repeats: int
) -> list[list[object]]:
    """Detection time and rate for each detector input size (full decode, HOG)."""
    images = [
        decode(data, path, min_side=None, max_pixels=MAX_PIXELS).image for data, path, _ in photos
    ]
    rows: list[list[object]] = []
    for side in sides:
        times: list[float] = []
        found = 0
        for image in images:
            runs = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                boxes = detect_boxes(image, max_side=side)
                runs.append((time.perf_counter() - t0) * 1000.0)
            times.append(statistics.median(runs))
            found += bool(boxes)
        rows.append(
            [
                side,
                f"{statistics.median(times):.0f} / {np.percentile(times, 90):.0f}",
                f"{found}/{len(images)}",
                f"~{65 * 4000 / side:.0f} px",
            ]
        )
        print(f"max side {side}: done", flush=True)
    return rows


def summary_row(name: str, results: Sequence[PhotoResult]) -> list[object]:
    def stat(values: list[float]) -> str:
        return f"{statistics.median(values):.0f} / {np.percentile(values, 90):.0f}"

    rank1, verification, _ = identification(results)
    return [
        name,
        f"{sum(r.faces > 0 for r in results)}/{len(results)}",
        f"{sum(r.usable > 0 for r in results)}/{len(results)}",
        f"{100 * rank1:.1f}%",
        f"{100 * verification:.2f}%",
        stat([r.decode_ms for r in results]),
        stat([r.detect_ms for r in results]),
        stat([r.landmarks_ms for r in results]),
        stat([r.embed_ms for r in results]),
        stat([r.total_ms for r in results]),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    common.add_data_argument(parser)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per photo")
    parser.add_argument(
        "--min-side", type=int, default=DEFAULT_MIN_SIDE, help="draft-decode shorter side"
    )
    parser.add_argument("--cnn", action="store_true", help="also run the CNN detector")
    parser.add_argument(
        "--sides",
        type=int,
        nargs="*",
        default=[800, 1024, 1280, 1600, 2048],
        help="detector input sizes to compare",
    )
    common.add_output_arguments(parser, QUICK)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.sides = 1, [config.DETECT_MAX_SIDE]
    out = common.Output.from_args(args, QUICK)

    root = common.data_dir(args.data, f"{FOLDER}/labels.csv") / FOLDER
    with open(root / "labels.csv", newline="") as f:
        labels = [(r["path"], r["person"]) for r in csv.DictReader(f)]
    photos = [(read_file(root / p), p, person) for p, person in labels]

    settings: list[tuple[str, int | None, Detector]] = [
        ("hog, full decode", None, "hog"),
        (f"hog, draft decode (min_side {args.min_side})", args.min_side, "hog"),
    ]
    if args.cnn:
        settings.append((f"cnn, draft decode (min_side {args.min_side})", args.min_side, "cnn"))
    # One untimed run per detector first: model loading is not part of any photo's time.
    for detector in sorted({d for _, _, d in settings}):
        run_photo(*photos[0], min_side=None, detector=detector, repeats=1)

    rows: list[list[object]] = []
    by_setting: dict[str, list[PhotoResult]] = {}
    for name, min_side, detector in settings:
        repeats = max(1, args.repeats)
        results = [
            run_photo(data, path, person, min_side=min_side, detector=detector, repeats=repeats)
            for data, path, person in photos
        ]
        by_setting[name] = results
        rows.append(summary_row(name, results))
        print(f"{name}: done", flush=True)

    # Per size bucket, for the default setting: where the time goes as photos grow.
    full = by_setting[settings[0][0]]
    buckets = [(0, 1), (1, 3), (3, 6), (6, 100)]
    size_rows: list[list[object]] = []
    for lo, hi in buckets:
        part = [r for r in full if lo <= r.megapixels < hi]
        if part:
            size_rows.append(
                [
                    f"{lo}-{hi if hi < 100 else '∞'} MP",
                    len(part),
                    *(
                        f"{statistics.median(getattr(r, k) for r in part):.0f}"
                        for k in ("decode_ms", "detect_ms", "landmarks_ms", "embed_ms", "total_ms")
                    ),
                ]
            )
    missed = [r.path for r in full if r.faces == 0]
    side_rows = sweep_sides(photos, args.sides, max(1, args.repeats))

    markdown = "\n".join(
        [
            "## Faces: speed and detection on press photos (`bench/faces_speed.py`)",
            "",
            f"{len(photos)} photos of `faces-photos/` "
            f"({min(r.megapixels for r in full):.1f}-{max(r.megapixels for r in full):.1f} MP), "
            "one person of interest each; the largest face found is kept. Times in ms, "
            f"median / 90th percentile over photos, each the median of {args.repeats} runs "
            "(CNN: 1 run), one thread. Rank-1: leave-one-out identification; verification: "
            f"all pairs at the default threshold {config.DEFAULT_THRESHOLD}.",
            "",
            common.table(
                [
                    "setting",
                    "face found",
                    "usable face",
                    "rank-1",
                    "verification",
                    "decode",
                    "detect",
                    "landmarks",
                    "embed",
                    "total",
                ],
                rows,
            ),
            "",
            "By photo size (hog, full decode; medians, ms):",
            "",
            common.table(
                ["size", "photos", "decode", "detect", "landmarks", "embed", "total"], size_rows
            ),
            "",
            f"Photos without a face (hog, full decode): {', '.join(missed) or 'none'}.",
            "",
            "HOG detector input size (`DETECT_MAX_SIDE`, default "
            f"{config.DETECT_MAX_SIDE}): the longer side photos are shrunk to before detection. "
            "Detect time per photo (median / 90th percentile, ms), photos with a face found, "
            "and the smallest face it can find in a 4000 px-wide photo (HOG needs ~65 px "
            "in its input):",
            "",
            common.table(
                ["max side", "detect ms", "face found", "smallest face in 4000 px photo"],
                side_rows,
            ),
        ]
    )
    draft_name = settings[1][0]
    out.write("faces-speed", markdown, targets(full, by_setting[draft_name], draft_name))
    return 0


def targets(full: Sequence[PhotoResult], draft: Sequence[PhotoResult], name: str) -> list[Target]:
    """Draft decoding (setting ``name``) against full decoding: photos with a face, rank-1;
    the time per photo."""
    found = [sum(r.faces > 0 for r in rs) for rs in (full, draft)]
    rank1 = [identification(rs)[0] for rs in (full, draft)]
    return [
        check(
            f"{name}: photos with a face found, of {len(draft)} (target: as many as full decoding)",
            found[1],
            ">=",
            found[0],
            "{:.0f}",
        ),
        check(
            f"{name}: rank-1 (target: as high as full decoding)",
            100 * rank1[1],
            ">=",
            100 * rank1[0],
            "{:.1f}%",
        ),
        informational(
            f"{name}: median time per photo, decode to embedding",
            f"{statistics.median(r.total_ms for r in draft):.0f} ms",
        ),
    ]


if __name__ == "__main__":
    sys.exit(main())
