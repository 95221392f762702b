"""Face verification on LFW: accuracy, cross-validated accuracy, TAR at low FAR, threshold.

Data: ``lfw-dev/`` of the shared evaluation data: 2,202 grayscale 350x350 tight face crops
and ``pairs.csv`` (path_a, path_b, same, fold): 1,682 View-2 pairs in 3 person-disjoint folds.

Each image is embedded once per configuration (cached under ``--cache``):

- ``crop``: ``--crop`` mode, no detector: 5 landmarks predicted in the frame, aligned chip;
- ``detect``: the whole pipeline (the default CNN detector on the crop, the largest face;
  ``detect hog``: the same with HOG, the default before the CNN); where the
  detector finds nothing (the crops are tight, foreheads and chins are cut) the image falls
  back to ``crop`` mode, and the fallbacks are counted;
- ``crop+flip``: ``crop`` averaged with the embedding of the mirrored chip (2x the work);
- ``crop+jitterN`` (``--jitter N``): dlib's jitter, N perturbed copies averaged (N x work);
- ``--ablation``: crop-mode variants (frame inset, black or repeated-edge padding; the chip
  aligned on the 68-point landmarks; a histogram-equalised chip).

Scores per configuration: accuracy at the default threshold ``DEFAULT_THRESHOLD`` and at
dlib's classic 0.6; best-threshold accuracy by 3-fold cross-validation (the threshold that
maximises accuracy on two folds, scored on the third); TAR at FAR = 0.001 and 0.01 (with ~850
impostor pairs, FAR = 0.001 means no impostor accepted at all); the share of images whose
face the quality check marks unusable, and the accuracy on the pairs where both are usable.
The scoring functions are ``lookalike.eval.faces``'s (shared with ``lookalike eval faces``).

Target: the default threshold is calibrated: on ``detect`` (the pipeline as indexing runs it)
its accuracy is within CALIBRATION_POINTS of the cross-validated best-threshold accuracy.

Usage: ``python bench/faces_lfw.py [--data DIR] [--jitter N] [--ablation] [--no-write]``
"""

from __future__ import annotations

import argparse
import ast
import csv
import functools
import hashlib
import os
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from lookalike.decode.image import decode, read_file
from lookalike.eval.faces import accuracy, best_threshold, cross_validate, tar_at_far
from lookalike.faces import config, models
from lookalike.faces.detect import Face, detect_faces
from lookalike.faces.embed import crop_face, embed_faces
from sections import Target, check, informational

FOLDER = "lfw-dev"
CLASSIC_THRESHOLD = 0.6
FARS = (0.001, 0.01)
DEFAULT_CACHE = Path("/tmp/lookalike-faces-lfw")
# Bump when this file changes how embeddings are made (the faces package is hashed anyway).
CACHE_VERSION = "1"
# How far (accuracy points) the default threshold may fall below the CV best-threshold one.
CALIBRATION_POINTS = 0.5
# Three pairs of 1682: the accuracy two detectors may differ by without one being worse.
NOISE_POINTS = 0.18
QUICK = "the crop, detect and crop+flip variants only: no jitter, no ablation"


@dataclass(frozen=True)
class Variant:
    """One way of embedding the LFW crops."""

    name: str
    mode: str  # "crop" or "detect"
    inset: float = config.CROP_INSET
    pad: config.PadMode = config.CROP_PAD
    flip: bool = False
    jitter: int = 0
    # Ablations of the chip itself: aligned with the 68-point model instead of the 5-point
    # one, or histogram-equalised before embedding (the crops are grey and often flat).
    align68: bool = False
    equalize: bool = False
    detector: config.Detector = config.DEFAULT_DETECTOR  # in "detect" mode


@dataclass
class Embedded:
    """Embeddings of every image under one variant, with what happened on the way."""

    vectors: np.ndarray  # float32 (n, 128), image order
    fallback: np.ndarray  # bool (n,): detect mode found no face, crop mode used
    usable: np.ndarray  # bool (n,)
    quality: np.ndarray  # float32 (n,)
    ms: np.ndarray  # float64 (n,): landmarks + embedding (+ detection) per image


# --------------------------------------------------------------------------- embedding


def _main_face(faces: list[Face], width: int, height: int) -> Face:
    """The face a tight crop is about: the largest box, ties to the one nearest the centre."""

    def key(face: Face) -> tuple[float, float]:
        left, top, right, bottom = face.box
        cx, cy = (left + right) / 2 - width / 2, (top + bottom) / 2 - height / 2
        return (-(right - left) * (bottom - top), cx * cx + cy * cy)

    return min(faces, key=key)


def _embed_one(path: Path, variant: Variant) -> tuple[np.ndarray, bool, bool, float, float]:
    """(embedding, fell back, usable, quality, milliseconds) of one image under ``variant``."""
    image = decode(read_file(path), str(path), min_side=None, max_pixels=100_000_000).image
    t0 = time.perf_counter()
    fallback = False
    face: Face | None = None
    if variant.mode == "detect":
        faces = detect_faces(image, detector=variant.detector)
        if faces:
            face = _main_face(faces, image.width, image.height)
        else:
            fallback = True
    if face is None:
        face = crop_face(image, inset=variant.inset, pad=variant.pad)
    if variant.align68 or variant.equalize:
        face.chip = _ablated_chip(image, face, variant)
    (vector,) = embed_faces([face], jitter=variant.jitter, flip=variant.flip)
    ms = (time.perf_counter() - t0) * 1000.0
    return vector, fallback, face.usable, face.quality, ms


def _ablated_chip(image: Image.Image, face: Face, variant: Variant) -> np.ndarray:
    """The chip of ``face`` aligned on 68 landmarks and/or histogram-equalised."""
    chip = face.chip
    if variant.align68:
        dlib = models.dlib_module()
        pixels = np.asarray(image.convert("RGB"))
        left, top, right, bottom = face.box
        rect = dlib.rectangle(left, top, right - 1, bottom - 1)
        with models.SHAPE_68.use() as predictor:
            shape = predictor(pixels, rect)
        chip = np.asarray(
            dlib.get_face_chip(pixels, shape, size=config.CHIP_SIZE, padding=config.CHIP_PADDING)
        )
    assert chip is not None
    if variant.equalize:
        chip = np.asarray(ImageOps.equalize(Image.fromarray(chip)))
    return np.ascontiguousarray(chip)


def _embed_chunk(
    args: tuple[list[Path], Variant],
) -> list[tuple[np.ndarray, bool, bool, float, float]]:
    paths, variant = args
    return [_embed_one(p, variant) for p in paths]


# The modules whose code decides a variant's embeddings and quality verdicts.
_HASHED_MODULES = ("detect", "embed", "models", "quality")


def _code_only(source: str) -> bytes:
    """``source`` parsed, docstrings dropped: editing comments or docs keeps cached results."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
    return ast.dump(tree).encode()


@functools.cache
def _code_hash() -> str:
    """A hash of what makes the embeddings: the face code, its settings, the model files.

    The thresholds are left out (they change the scores, not the embeddings).
    Taken once per run, so that edits made while a run goes on cannot label its results
    as the new code's.
    """
    digest = hashlib.sha256(CACHE_VERSION.encode())
    package = Path(config.__file__).parent
    for name in _HASHED_MODULES:
        digest.update(_code_only((package / f"{name}.py").read_text()))
    thresholds = ("DEFAULT_THRESHOLD", "DEFAULT_CLUSTER_THRESHOLD")
    settings = {k: v for k, v in vars(config).items() if k.isupper() and k not in thresholds}
    digest.update(repr(sorted(settings.items())).encode())
    for model in sorted(models.models_dir().glob("*.dat")):
        digest.update(f"{model.name}:{model.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def _cache_file(cache: Path, paths: Sequence[str], variant: Variant) -> Path:
    """Where the embeddings of ``paths`` under ``variant`` are cached."""
    key = hashlib.sha256(f"{_code_hash()}|{variant}|{'|'.join(paths)}".encode()).hexdigest()
    return cache / f"{variant.name}-{key[:20]}.npz"


def embed_all(
    root: Path, paths: Sequence[str], variant: Variant, workers: int, cache: Path
) -> tuple[Embedded, bool]:
    """Embeddings of ``paths`` (relative to ``root``) under ``variant``; (result, from cache)."""
    file = _cache_file(cache, paths, variant)
    if file.exists():
        with np.load(file) as saved:
            return Embedded(**{k: saved[k] for k in Embedded.__dataclass_fields__}), True
    full = [root / p for p in paths]
    # Chunks interleaved across workers so that each sees a similar mix of images.
    chunks = [(full[i :: workers * 8], variant) for i in range(workers * 8)]
    results: list[list[tuple[np.ndarray, bool, bool, float, float]]]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_embed_chunk, chunks))
    else:
        results = [_embed_chunk(c) for c in chunks]
    ordered: list[tuple[np.ndarray, bool, bool, float, float]] = [None] * len(full)  # type: ignore[list-item]
    for i, part in enumerate(results):
        for j, item in enumerate(part):
            ordered[i + j * workers * 8] = item
    out = Embedded(
        vectors=np.stack([o[0] for o in ordered]).astype(np.float32),
        fallback=np.array([o[1] for o in ordered]),
        usable=np.array([o[2] for o in ordered]),
        quality=np.array([o[3] for o in ordered], dtype=np.float32),
        ms=np.array([o[4] for o in ordered], dtype=np.float64),
    )
    cache.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp.npz")
    np.savez(tmp, **{k: getattr(out, k) for k in Embedded.__dataclass_fields__})
    os.replace(tmp, file)
    return out, False


# --------------------------------------------------------------------------- main


def _error_summary(
    dist: np.ndarray, same: np.ndarray, paths: Sequence[str], ia: np.ndarray, ib: np.ndarray
) -> str:
    """False rejects and accepts at the default threshold, and the farthest same pairs
    (where label noise shows: a "same" pair at a distance no real pair reaches)."""
    accept = dist <= config.DEFAULT_THRESHOLD
    rejects = np.flatnonzero(same & ~accept)
    accepts = np.flatnonzero(~same & accept)
    worst = rejects[np.argsort(-dist[rejects])][:3]
    shown = "; ".join(
        f"{Path(paths[ia[k]]).stem} / {Path(paths[ib[k]]).stem} {dist[k]:.2f}" for k in worst
    )
    return (
        f"{len(rejects)} false rejects, {len(accepts)} false accepts; farthest same-person "
        f"pairs: {shown}."
    )


def read_pairs(root: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(image paths, index a, index b, same, fold) from ``pairs.csv``."""
    with open(root / "pairs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    paths = sorted({r[k] for r in rows for k in ("path_a", "path_b")})
    index = {p: i for i, p in enumerate(paths)}
    a = np.array([index[r["path_a"]] for r in rows])
    b = np.array([index[r["path_b"]] for r in rows])
    same = np.array([r["same"] == "1" for r in rows])
    folds = np.array([int(r["fold"]) for r in rows])
    return paths, a, b, same, folds


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    common.add_data_argument(parser)
    parser.add_argument("--jitter", type=int, default=0, help="also run dlib jitter N (slow)")
    parser.add_argument("--no-flip", action="store_true", help="skip the crop+flip variant")
    parser.add_argument("--ablation", action="store_true", help="crop inset/padding variants")
    parser.add_argument(
        "--workers", type=int, default=common.cpu_count(), help="processes (default: nproc)"
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="embedding cache")
    common.add_output_arguments(parser, QUICK)
    args = parser.parse_args(argv)
    if args.quick:
        args.jitter, args.ablation = 0, False
    out = common.Output.from_args(args, QUICK)

    root = common.data_dir(args.data, f"{FOLDER}/pairs.csv", f"{FOLDER}/images") / FOLDER
    paths, ia, ib, same, folds = read_pairs(root)
    variants = [
        Variant("crop", "crop"),
        Variant("detect", "detect"),
        Variant("detect hog", "detect", detector="hog"),
    ]
    if not args.no_flip:
        variants.append(Variant("crop+flip", "crop", flip=True))
    if args.jitter > 1:
        variants.append(Variant(f"crop+jitter{args.jitter}", "crop", jitter=args.jitter))
    if args.ablation:
        for inset in (0.0, 0.05, 0.1):
            for pad in ("zero", "edge"):
                name = f"crop inset {inset:g} pad {pad}"
                if (inset, pad) != (config.CROP_INSET, config.CROP_PAD):
                    variants.append(Variant(name, "crop", inset=inset, pad=pad))  # type: ignore[arg-type]
        variants.append(Variant("crop aligned on 68 points", "crop", align68=True))
        variants.append(Variant("crop equalised chip", "crop", equalize=True))
    print(
        f"{len(paths)} images, {len(same)} pairs ({int(same.sum())} same), folds "
        f"{sorted(set(folds.tolist()))}; default threshold {config.DEFAULT_THRESHOLD}",
        flush=True,
    )

    rows: list[list[object]] = []
    extra: list[list[object]] = []
    errors: dict[str, str] = {}
    scored: dict[str, tuple[float, float, float]] = {}  # acc @ default, CV acc, TAR @ 0.001
    for variant in variants:
        t0 = time.perf_counter()
        emb, cached = embed_all(root, paths, variant, max(1, args.workers), args.cache)
        took = time.perf_counter() - t0
        dist = np.linalg.norm(emb.vectors[ia] - emb.vectors[ib], axis=1)
        cv_accs, cv_thresholds = cross_validate(dist, same, folds)
        overall_t, overall_acc = best_threshold(dist, same)
        errors[variant.name] = _error_summary(dist, same, paths, ia, ib)
        both_usable = emb.usable[ia] & emb.usable[ib]
        usable_acc = (
            accuracy(dist[both_usable], same[both_usable], config.DEFAULT_THRESHOLD)
            if both_usable.any()
            else float("nan")
        )
        fallbacks = int(emb.fallback.sum())
        scored[variant.name] = (
            accuracy(dist, same, config.DEFAULT_THRESHOLD),
            statistics.mean(cv_accs),
            tar_at_far(dist, same, FARS[0]).tar,
        )
        rows.append(
            [
                variant.name,
                _pct(accuracy(dist, same, config.DEFAULT_THRESHOLD)),
                *(
                    [_pct(accuracy(dist, same, CLASSIC_THRESHOLD))]
                    if config.DEFAULT_THRESHOLD != CLASSIC_THRESHOLD
                    else []
                ),
                f"{_pct(statistics.mean(cv_accs))} ± {100 * statistics.pstdev(cv_accs):.2f}",
                " / ".join(f"{t:.3f}" for t in cv_thresholds),
                f"{overall_t:.3f} ({_pct(overall_acc)})",
                *(_pct(tar_at_far(dist, same, far).tar) for far in FARS),
            ]
        )
        extra.append(
            [
                variant.name,
                f"{fallbacks} ({_pct(fallbacks / len(paths))})"
                if variant.mode == "detect"
                else "-",
                f"{int((~emb.usable).sum())} ({_pct(float(np.mean(~emb.usable)))})",
                f"{_pct(usable_acc)} on {int(both_usable.sum())} pairs",
                f"{np.median(emb.ms):.0f}",
                f"{np.median(np.linalg.norm(emb.vectors, axis=1)):.3f}",
            ]
        )
        print(
            f"{variant.name}: {'cached' if cached else f'{took:.0f} s'}; "
            f"acc@{config.DEFAULT_THRESHOLD} {rows[-1][1]}, CV {rows[-1][-5]}",
            flush=True,
        )

    markdown = "\n".join(
        [
            "## Faces: verification on LFW (`bench/faces_lfw.py`)",
            "",
            f"{len(same)} View-2 pairs of `lfw-dev/` ({int(same.sum())} same, "
            f"{int((~same).sum())} different; 3 person-disjoint folds), 350x350 grayscale "
            "tight crops. Accept = Euclidean distance <= threshold. CV: the threshold that "
            "maximises accuracy on two folds, scored on the third (mean ± sd over the three; "
            "the thresholds chosen per held-out fold listed). TAR@FAR 0.001 with "
            f"{int((~same).sum())} impostor pairs means no impostor accepted.",
            "",
            common.table(
                [
                    "variant",
                    f"acc @ default {config.DEFAULT_THRESHOLD}",
                    *(
                        [f"acc @ dlib's {CLASSIC_THRESHOLD}"]
                        if config.DEFAULT_THRESHOLD != CLASSIC_THRESHOLD
                        else []
                    ),
                    "CV acc",
                    "CV thresholds",
                    "best threshold (acc)",
                    "TAR @ FAR 0.001",
                    "TAR @ FAR 0.01",
                ],
                rows,
            ),
            "",
            common.table(
                [
                    "variant",
                    "detector fallbacks",
                    "unusable faces",
                    "acc, both usable",
                    "ms / image (median)",
                    "embedding norm",
                ],
                extra,
            ),
            "",
            "Times: landmarks + alignment + embedding (+ detection), one process, median per "
            f"image, measured when the embeddings were computed (cached in {args.cache}); "
            f"{max(1, args.workers)} worker process(es) on a shared machine.",
            "",
            f"Errors of `detect` at the default threshold: {errors['detect']}",
        ]
    )
    out.write("faces-lfw", markdown, targets(*scored["detect"], scored["detect hog"][0]))
    return 0


def targets(at_default: float, cv: float, tar: float, hog_at_default: float) -> list[Target]:
    """The default threshold's calibration on ``detect``; its accuracy against ``detect hog``
    (HOG was the default detector before the CNN); its accuracy and TAR."""
    return [
        check(
            f"`detect` (CNN, the default) accuracy at {config.DEFAULT_THRESHOLD} minus "
            "`detect hog`'s (the default before), points: does not fall beyond noise "
            "(3 of 1682 pairs)",
            100 * (at_default - hog_at_default),
            ">=",
            -NOISE_POINTS,
        ),
        check(
            f"the default threshold {config.DEFAULT_THRESHOLD} is calibrated: on `detect`, the "
            f"CV best-threshold accuracy minus the accuracy at {config.DEFAULT_THRESHOLD}, points",
            100 * (cv - at_default),
            "<=",
            CALIBRATION_POINTS,
        ),
        informational(
            f"`detect` accuracy at the default threshold; TAR @ FAR {FARS[0]}",
            f"{_pct(at_default)}; {_pct(tar)}",
        ),
    ]


if __name__ == "__main__":
    sys.exit(main())
