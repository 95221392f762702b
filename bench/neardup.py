"""Near-duplicate benchmark: does each edited copy of a photo find its original?

From every photo in ``photos/`` (84 photos) eight copies are written to a temp folder:

- ``jpeg_q20``: re-encoded as JPEG at quality 20;
- ``half_size``: each side halved (a quarter of the pixels), Lanczos;
- ``crop70``: central crop keeping 70% of each side (49% of the pixels);
- ``rotate90``: rotated 90 degrees (counter-clockwise);
- ``mirror``: flipped left-right;
- ``bright_flat``: brightness x1.3 then contrast x0.6 (Pillow ImageEnhance);
- ``blur``: Gaussian blur, radius 2;
- ``caption``: a black bar over the bottom 15% of the height, with white text on it.

All but ``jpeg_q20`` are saved as PNG, so the edit is the only change.

1. Search: the originals plus the Holidays photos (805 distractors) are indexed into a
   fresh data folder; each copy queries it (``search_one(copy, k=1)``) with the ``cnn``,
   ``color`` and ``phash`` descriptors. Recall@1 = share of copies whose top hit is their
   original. Targets (cnn): >= 0.97 overall, >= 0.9 for every edit.
2. Duplicates: originals + copies + Holidays in a second data folder, scored pairwise: a
   pair of images in one group is correct iff both come from the same original photo; any
   pair with a Holidays photo is a false positive (strict: two Holidays shots of one scene,
   a burst, count wrong too).
   - Verified (``duplicates()``): candidate pairs checked on the pixels
     (``search/verify.py``). Strict precision and recall of ``near``, overall and per edit,
     and of ``scenes`` (right: one Holidays scene or one photo). Targets: strict precision
     >= 0.99 and recall >= 0.95, overall and for every edit.
   - Baseline, the vector test alone (``duplicates(t, verify=False)``), in the same run: a
     sweep of thresholds; the lowest with precision >= 0.99; at the default threshold,
     precision >= 0.99 when bursts count as right (what the default was chosen for).
   - Time of ``duplicates()`` at the default threshold, verified and not (medians).

Usage: ``python bench/neardup.py [--data DIR] [--no-write]``
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import lookalike
from sections import Target, check, informational

DESCRIPTORS = ("cnn", "color", "phash")
THRESHOLDS = (
    0.70, 0.72, 0.74, 0.76, 0.78, 0.80, 0.82, 0.84, 0.86, 0.88, 0.90, 0.92, 0.94, 0.96, 0.98
)  # fmt: skip
# Above any cosine: only the perceptual-hash links of ``duplicates`` remain.
PHASH_ONLY = 1.01
TARGET_OVERALL = 0.97
TARGET_EACH = 0.90
TARGET_PRECISION = 0.99
# Verified duplicates (strict: bursts of one scene count wrong), overall and per edit.
TARGET_STRICT_PRECISION = 0.99
TARGET_STRICT_RECALL = 0.95
# Runs of the verified duplicates() timed (each reads and verifies everything again).
VERIFIED_RUNS = 1
# Pairs of files in photos/ that show the same photo (checked by eye): CSet5's head is
# CSet14's face rescaled, CSet5's butterfly a crop of CSet14's monarch. Each pair counts as
# one original: matching or grouping one with the other is right, not a false positive.
SAME_PHOTO = (
    ("CSet14/face.png", "CSet5/head.png"),
    ("CSet14/monarch.png", "CSet5/butterfly.png"),
)


def _half_size(im: Image.Image) -> Image.Image:
    return im.resize((max(1, im.width // 2), max(1, im.height // 2)), Image.Resampling.LANCZOS)


def _crop70(im: Image.Image) -> Image.Image:
    w, h = round(im.width * 0.7), round(im.height * 0.7)
    left, top = (im.width - w) // 2, (im.height - h) // 2
    return im.crop((left, top, left + w, top + h))


def _bright_flat(im: Image.Image) -> Image.Image:
    return ImageEnhance.Contrast(ImageEnhance.Brightness(im).enhance(1.3)).enhance(0.6)


def _caption(im: Image.Image) -> Image.Image:
    out = im.copy()
    bar = max(1, round(0.15 * im.height))
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, im.height - bar, im.width, im.height), fill=(0, 0, 0))
    size = max(8, round(bar * 0.55))
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont
    try:
        font = ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the small bitmap font
        font = ImageFont.load_default()
    draw.text(
        (max(2, im.width // 40), im.height - bar + (bar - size) // 2),
        "(c) 2024 Photo News - all rights reserved",
        fill=(255, 255, 255),
        font=font,
    )
    return out


# name -> (edit, file suffix); the JPEG one is the save itself.
TRANSFORMS: dict[str, tuple[Callable[[Image.Image], Image.Image], str]] = {
    "jpeg_q20": (lambda im: im, ".jpg"),
    "half_size": (_half_size, ".png"),
    "crop70": (_crop70, ".png"),
    "rotate90": (lambda im: im.transpose(Image.Transpose.ROTATE_90), ".png"),
    "mirror": (lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), ".png"),
    "bright_flat": (_bright_flat, ".png"),
    "blur": (lambda im: im.filter(ImageFilter.GaussianBlur(2)), ".png"),
    "caption": (_caption, ".png"),
}


@dataclass(frozen=True)
class Copy:
    path: str
    original: str
    transform: str


def origins(originals_dir: Path, originals: list[Path]) -> dict[str, str]:
    """Absolute path of each original -> the photo it shows (SAME_PHOTO pairs share one)."""
    out = {os.path.abspath(p): os.path.abspath(p) for p in originals}
    for a, b in SAME_PHOTO:
        pa, pb = os.path.abspath(originals_dir / a), os.path.abspath(originals_dir / b)
        if pa in out and pb in out:
            out[pb] = out[pa]
    return out


def make_copies(originals: list[Path], out: Path) -> list[Copy]:
    """Write the eight edited copies of each original under ``out/<transform>/``."""
    copies: list[Copy] = []
    for orig in originals:
        with Image.open(orig) as opened:
            im = opened.convert("RGB")
        stem = f"{orig.parent.name}__{orig.stem}"
        for name, (edit, suffix) in TRANSFORMS.items():
            folder = out / name
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"{stem}{suffix}"
            edited = edit(im)
            if suffix == ".jpg":
                edited.save(target, "JPEG", quality=20)
            else:
                edited.save(target, "PNG", compress_level=1)
            copies.append(Copy(str(target), os.path.abspath(orig), name))
    return copies


# --------------------------------------------------------------------------- search


def search_recall(
    originals_dir: Path,
    distractors: Path,
    copies: list[Copy],
    origin: dict[str, str],
    work: Path,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]], int]:
    """Recall@1 per descriptor and transform ("all" overall); median query timings (ms).

    A hit is right when it shows the copy's original photo (``origin``: see SAME_PHOTO).
    """
    recall: dict[str, dict[str, float]] = {}
    timing: dict[str, dict[str, float]] = {}
    with lookalike.open(work / "search-data") as lk:
        report = lk.index([originals_dir, distractors], faces=False, progress=False)
        indexed = report.indexed
        print(f"indexed {indexed} images ({len(report.failed)} failed)", flush=True)
        for desc in DESCRIPTORS:
            found: Counter[str] = Counter()
            total: Counter[str] = Counter()
            stages: dict[str, list[float]] = {}
            for c in copies:
                result = lk.search_one(c.path, k=1, descriptor=desc)
                total[c.transform] += 1
                top = result.results[0].path if result.results else None
                if top is not None and origin.get(top) == origin[c.original]:
                    found[c.transform] += 1
                for stage, ms in result.timing_ms.items():
                    stages.setdefault(stage, []).append(ms)
            per = {t: found[t] / total[t] for t in TRANSFORMS}
            per["all"] = sum(found.values()) / sum(total.values())
            recall[desc] = per
            timing[desc] = {s: common.median(v) for s, v in stages.items()}
            print(f"{desc}: recall@1 {per['all']:.3f}", flush=True)
    return recall, timing, indexed


# --------------------------------------------------------------------------- duplicates


@dataclass
class PairScore:
    threshold: float
    groups: int
    largest: int
    predicted: int
    correct: int
    truth: int
    fp_holidays_same_scene: int  # two Holidays photos of one scene group (labels.csv)
    fp_holidays_other: int  # two Holidays photos of different scene groups
    fp_holidays_photo: int
    fp_photo_photo: int
    linked: dict[str, float]

    @property
    def precision(self) -> float:
        return self.correct / self.predicted if self.predicted else 1.0

    @property
    def precision_scene(self) -> float:
        """Precision counting two Holidays shots of one scene as a right pair (bursts)."""
        right = self.correct + self.fp_holidays_same_scene
        return right / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.correct / self.truth if self.truth else 1.0


def score_groups(
    report: lookalike.DuplicateReport,
    origin: dict[str, str],
    scene: dict[str, str],
    copies: list[Copy],
    truth: int,
    threshold: float,
) -> PairScore:
    """Pairwise precision/recall of ``report.near`` against the photo each image came from.

    ``scene``: Holidays path -> its scene group, to tell same-scene pairs from others.
    """
    predicted = correct = hh_same = hh_other = hp = pp = 0
    group_of: dict[str, int] = {}
    largest = 0
    for gi, group in enumerate(report.near):
        labels: list[tuple[str | None, str | None]] = []
        for row in group.images:
            # One image may have several paths (exact duplicates); any names its origin.
            label = next((origin[p] for p in row.paths if p in origin), None)
            labels.append((label, next((scene[p] for p in row.paths if p in scene), None)))
            for p in row.paths:
                group_of[p] = gi
        largest = max(largest, len(labels))
        for (a, scene_a), (b, scene_b) in combinations(labels, 2):
            predicted += 1
            if a is not None and a == b:
                correct += 1
            elif a is None and b is None:
                if scene_a is not None and scene_a == scene_b:
                    hh_same += 1
                else:
                    hh_other += 1
            elif a is None or b is None:
                hp += 1
            else:
                pp += 1
    linked: dict[str, float] = {}
    for name in TRANSFORMS:
        mine = [c for c in copies if c.transform == name]
        hits = sum(
            1
            for c in mine
            if c.path in group_of and group_of.get(c.original, -1) == group_of[c.path]
        )
        linked[name] = hits / len(mine) if mine else 0.0
    return PairScore(
        threshold,
        len(report.near),
        largest,
        predicted,
        correct,
        truth,
        hh_same,
        hh_other,
        hp,
        pp,
        linked,
    )


@dataclass
class Verified:
    """``duplicates()`` with verification at the default threshold, scored strictly."""

    near: PairScore
    # edit -> (precision, recall) of the pairs with a copy of that edit, strictly.
    per_edit: dict[str, tuple[float, float]]
    scenes_precision: float
    scenes_recall: float
    scenes_pairs: int
    scenes_truth: int
    unverified: int
    pairs_verified: int
    images_read: int


@dataclass
class Timing:
    baseline_s: float  # duplicates(default, verify=False): the vector test alone
    verified_s: float  # duplicates(default): candidates verified on the pixels


def per_edit(
    report: lookalike.DuplicateReport, origin: dict[str, str], copies: list[Copy]
) -> dict[str, tuple[float, float]]:
    """Per edit: strict pairwise precision of ``near`` pairs holding a copy with that edit
    (any other image of the pair), and recall of (original, copy) pairs for that edit."""
    edit_of = {c.path: c.transform for c in copies}
    group_of: dict[str, int] = {}
    right: Counter[str] = Counter()
    said: Counter[str] = Counter()
    for gi, group in enumerate(report.near):
        paths = [row.paths[0] for row in group.images if row.paths]
        for p in (p for row in group.images for p in row.paths):
            group_of[p] = gi
        for a, b in combinations(paths, 2):
            ok = origin.get(a) is not None and origin.get(a) == origin.get(b)
            for edit in {edit_of.get(a), edit_of.get(b)} - {None}:
                said[str(edit)] += 1
                right[str(edit)] += ok
    out: dict[str, tuple[float, float]] = {}
    for name in TRANSFORMS:
        mine = [c for c in copies if c.transform == name]
        found = sum(
            1 for c in mine if c.path in group_of and group_of.get(c.original) == group_of[c.path]
        )
        precision = right[name] / said[name] if said[name] else 1.0
        out[name] = (precision, found / len(mine) if mine else 0.0)
    return out


def score_scenes(
    report: lookalike.DuplicateReport,
    origin: dict[str, str],
    scene: dict[str, str],
    present: set[str],
) -> tuple[float, float, int, int]:
    """Precision (a pair is right when both show one Holidays scene or one photo) and recall
    (of the pairs of Holidays photos of one scene, ``present`` ones) of ``report.scenes``."""
    said = right = 0
    group_of: dict[str, int] = {}
    for gi, group in enumerate(report.scenes):
        paths = [row.paths[0] for row in group.images if row.paths]
        for p in paths:
            group_of[p] = gi
        for a, b in combinations(paths, 2):
            said += 1
            same_scene = scene.get(a) is not None and scene.get(a) == scene.get(b)
            right += same_scene or (origin.get(a) is not None and origin.get(a) == origin.get(b))
    members: dict[str, list[str]] = {}
    for p, g in scene.items():
        if p in present:
            members.setdefault(g, []).append(p)
    truth = found = 0
    for paths in members.values():
        for a, b in combinations(paths, 2):
            truth += 1
            found += a in group_of and group_of.get(b) == group_of[a]
    return (right / said if said else 1.0), (found / truth if truth else 1.0), said, truth


def duplicate_sweep(
    originals_dir: Path,
    distractors: Path,
    copies_dir: Path,
    copies: list[Copy],
    originals: list[Path],
    scene: dict[str, str],
    work: Path,
) -> tuple[list[PairScore], Verified, Timing, float, int]:
    """Scores per threshold without verification (the baseline), the verified run at the
    default threshold, the median times of both, the default threshold, the image count."""
    origin = origins(originals_dir, originals)
    origin.update({c.path: origin[c.original] for c in copies})
    per_photo = Counter(origin.values())
    truth = sum(n * (n - 1) // 2 for n in per_photo.values())
    scores: list[PairScore] = []
    with lookalike.open(work / "dup-data") as lk:
        report = lk.index([originals_dir, copies_dir, distractors], faces=False, progress=False)
        n = lk.catalog.count_images()
        print(f"duplicates collection: {n} images ({len(report.failed)} failed)", flush=True)
        for thr in (*THRESHOLDS, PHASH_ONLY):
            s = score_groups(lk.duplicates(thr, verify=False), origin, scene, copies, truth, thr)
            scores.append(s)
            print(
                f"threshold {thr:.2f}: precision {s.precision:.4f} recall {s.recall:.4f}",
                flush=True,
            )
        default = lk.settings.duplicate_threshold
        present = set(scene) - {os.path.abspath(f.path) for f in report.failed}
        times: list[float] = []
        verified_report = None
        for _ in range(VERIFIED_RUNS):
            verified_report, seconds = common.timed(lambda: lk.duplicates(default))
            times.append(seconds)
            print(f"verified duplicates(): {seconds:.1f} s", flush=True)
        assert verified_report is not None
        near = score_groups(verified_report, origin, scene, copies, truth, default)
        sp, sr, said, scene_truth = score_scenes(verified_report, origin, scene, present)
        verified = Verified(
            near,
            per_edit(verified_report, origin, copies),
            sp,
            sr,
            said,
            scene_truth,
            len(verified_report.unverified),
            verified_report.pairs_verified,
            verified_report.images_read,
        )
        print(
            f"verified near: precision {near.precision:.4f} recall {near.recall:.4f}; "
            f"scenes: precision {sp:.4f} recall {sr:.4f}",
            flush=True,
        )
        baseline = common.median_of(lambda: lk.duplicates(default, verify=False), 5, warmup=1)
    return scores, verified, Timing(baseline, common.median(times)), default, n


# --------------------------------------------------------------------------- report


def recommend(scores: list[PairScore], *, same_scene_right: bool = False) -> PairScore | None:
    """The lowest threshold of the sweep reaching the precision target."""

    def precision(s: PairScore) -> float:
        return s.precision_scene if same_scene_right else s.precision

    ok = [s for s in scores if s.threshold <= 1.0 and precision(s) >= TARGET_PRECISION]
    return min(ok, key=lambda s: s.threshold) if ok else None


def holiday_scenes(distractors: Path) -> dict[str, str]:
    """Absolute path of each Holidays image -> its scene group (from labels.csv)."""
    labels = distractors.parent / "labels.csv"
    if not labels.exists():
        return {}
    with labels.open(newline="") as f:
        return {
            os.path.abspath(distractors.parent / row["path"]): row["group"]
            for row in csv.DictReader(f)
        }


def render(
    recall: dict[str, dict[str, float]],
    timing: dict[str, dict[str, float]],
    indexed: int,
    n_originals: int,
    scores: list[PairScore],
    verified: Verified,
    times: Timing,
    default_thr: float,
    dup_n: int,
) -> str:
    rows: list[list[object]] = []
    for name in (*TRANSFORMS, "all"):
        label = "**overall**" if name == "all" else f"`{name}`"
        rows.append([label, *(f"{recall[d][name]:.3f}" for d in DESCRIPTORS)])
    timing_rows = [
        [d, *(f"{timing[d].get(s, float('nan')):.1f}" for s in ("decode", "embed", "search"))]
        for d in DESCRIPTORS
    ]
    sweep_rows = []
    for s in scores:
        label = "phash only" if s.threshold > 1.0 else f"{s.threshold:.2f}"
        sweep_rows.append(
            [
                label,
                f"{s.precision:.4f}",
                f"{s.recall:.4f}",
                f"{s.precision_scene:.4f}",
                s.predicted,
                s.correct,
                f"{s.fp_holidays_same_scene}/{s.fp_holidays_other}/{s.fp_holidays_photo}/"
                f"{s.fp_photo_photo}",
                s.groups,
                s.largest,
            ]
        )
    best = recommend(scores)
    rec = (
        f"**Recommended threshold: {best.threshold:.2f}** (the lowest of the sweep with "
        f"pairwise precision >= {TARGET_PRECISION}: precision {best.precision:.4f}, recall "
        f"{best.recall:.4f}); the current default is {default_thr:.2f}."
        if best
        else f"**No threshold of the sweep reaches precision {TARGET_PRECISION}**; the current "
        f"default is {default_thr:.2f}."
    )
    lenient = recommend(scores, same_scene_right=True)
    if lenient:
        rec += (
            " Counting same-scene Holidays pairs as right, the lowest threshold with precision "
            f">= {TARGET_PRECISION} would be {lenient.threshold:.2f} (precision "
            f"{lenient.precision_scene:.4f}, recall {lenient.recall:.4f})."
        )
    picked = {default_thr, *(x.threshold for x in (best, lenient) if x is not None)}
    shown = [s for s in scores if s.threshold in picked]
    link_rows = [[f"`{t}`", *(f"{s.linked[t]:.3f}" for s in shown)] for t in TRANSFORMS]
    parts = [
        "## Near-duplicates (`bench/neardup.py`)",
        "",
        f"{n_originals} photos from `photos/` (CBSD68, CSet14, CSet5), eight edited copies of "
        "each: JPEG quality 20; half of each side (a quarter of the pixels, Lanczos); central "
        "crop keeping 70% of each side; rotated 90°; mirrored left-right; brightness x1.3 then "
        "contrast x0.6; Gaussian blur radius 2; a black caption bar with white text over the "
        "bottom 15%. Copies other than the JPEG one are saved as PNG.",
        "",
        "Two pairs of files in `photos/` show the same photo: CSet5 `head` is CSet14 `face` "
        "rescaled and CSet5 `butterfly` is a crop of CSet14 `monarch`; each pair counts as "
        "one original (a copy of one finding the other is a hit; grouping them is right).",
        "",
        common.descriptor_versions(),
        "",
        f"### Search: recall@1 of each copy against originals + Holidays ({indexed} images "
        "indexed)",
        "",
        f"Each of the {sum(1 for _ in TRANSFORMS) * n_originals} copies is a query "
        "(`search_one(copy, k=1, descriptor=...)`); a hit is its own original.",
        "",
        common.table(["edit", *DESCRIPTORS], rows),
        "",
        "Median query time per stage (ms, from `SearchResult.timing_ms`; *search* is very "
        "sensitive to other load on the machine, see `speed-search`):",
        "",
        common.table(["descriptor", "decode", "embed", "search"], timing_rows),
        "",
        f"### Duplicates: {dup_n} images (originals + copies + Holidays distractors)",
        "",
        verified_section(verified, times, default_thr),
        "",
        "#### Baseline: the vector test alone (`duplicates(threshold, verify=False)`)",
        "",
        "Pairwise scoring of `duplicates(threshold, verify=False).near`: a pair of images in "
        "one group is correct iff both come from the same original photo (9 images per "
        f"original, {scores[0].truth} true pairs); any pair containing a Holidays photo counts "
        "as a false positive. `duplicates` also links images whose 64-bit perceptual hashes "
        "are within 6 bits under any rotation/flip, whatever the threshold (row *phash only*: "
        "threshold above 1, no cnn links). False positives are split into two Holidays "
        "photos of the same scene group (Holidays has bursts: several shots of one scene "
        "seconds apart) / of different scenes / a Holidays photo with a photo or copy / two "
        "different photos. *precision, same-scene H pairs right* counts the first kind as "
        "right instead.",
        "",
        common.table(
            [
                "threshold",
                "precision",
                "recall",
                "precision, same-scene H pairs right",
                "pairs",
                "correct",
                "false: HH same scene/HH other/HP/PP",
                "groups",
                "largest",
            ],
            sweep_rows,
        ),
        "",
        rec,
        "",
        "Share of copies grouped with their own original, per edit:",
        "",
        common.table(["edit", *(f"threshold {s.threshold:.2f}" for s in shown)], link_rows),
    ]
    return "\n".join(parts)


def verified_section(v: Verified, times: Timing, default_thr: float) -> str:
    """The verified run: strict scores of near, per edit, of scenes; times before/after."""
    n = v.near
    edit_rows = [[f"`{t}`", f"{p:.4f}", f"{r:.4f}"] for t, (p, r) in v.per_edit.items()]
    ratio = times.verified_s / times.baseline_s if times.baseline_s > 0 else float("nan")
    return "\n".join(
        [
            f"#### Verified on the pixels (`duplicates()`, default threshold {default_thr:.2f})",
            "",
            "Candidate pairs (cnn cosine >= the candidate threshold among each image's "
            "neighbours, or perceptual hashes within 6 bits) are verified with local "
            "features (ORB), a RANSAC similarity and a photometric check "
            f"(`search/verify.py`): {v.pairs_verified} pairs, {v.images_read} images read. "
            "Scored **strictly**: a pair in one `near` group is right only when both come "
            "from the same original photo (two Holidays shots of one scene count wrong).",
            "",
            common.table(
                [
                    "`near`",
                    "precision",
                    "recall",
                    "pairs",
                    "correct",
                    "false: HH same scene/HH other/HP/PP",
                ],
                [
                    [
                        "all edits",
                        f"{n.precision:.4f}",
                        f"{n.recall:.4f}",
                        n.predicted,
                        n.correct,
                        f"{n.fp_holidays_same_scene}/{n.fp_holidays_other}/"
                        f"{n.fp_holidays_photo}/{n.fp_photo_photo}",
                    ]
                ],
            ),
            "",
            "Per edit: precision of the `near` pairs holding a copy with that edit; recall: "
            "share of those copies grouped with their own original.",
            "",
            common.table(["edit", "precision", "recall"], edit_rows),
            "",
            f"`scenes` (pairs alike to the cnn at >= {default_thr:.2f} or by the hash, not "
            f"verified as copies): {v.scenes_pairs} pairs, precision {v.scenes_precision:.4f} "
            "(a pair is right when both show one Holidays scene or one photo), recall "
            f"{v.scenes_recall:.4f} of the {v.scenes_truth} pairs of Holidays photos of one "
            f"scene. `unverified` groups: {v.unverified} (every file is readable here).",
            "",
            f"`duplicates()` time, median: {times.baseline_s * 1e3:.0f} ms with the vector "
            f"test alone (`verify=False`, 5 runs after a warm-up), {times.verified_s:.1f} s "
            f"verified ({VERIFIED_RUNS} run(s); each reads and verifies again): {ratio:.0f}x.",
        ]
    )


def targets(
    recall: dict[str, dict[str, float]],
    scores: list[PairScore],
    verified: Verified,
    default_thr: float,
) -> list[Target]:
    """cnn recall@1 overall and on its weakest edit; verified duplicates' strict precision
    and recall, overall and on the weakest edit; the old threshold's lenient precision."""
    cnn = recall["cnn"]
    worst = min(TRANSFORMS, key=lambda t: cnn[t])
    at_default = next(s for s in scores if abs(s.threshold - default_thr) < 1e-9)
    best = recommend(scores)
    edits = verified.per_edit
    worst_p = min(edits, key=lambda t: edits[t][0])
    worst_r = min(edits, key=lambda t: edits[t][1])
    return [
        check(
            "search: cnn recall@1 of the copies, overall",
            cnn["all"],
            ">=",
            TARGET_OVERALL,
            "{:.3f}",
        ),
        check(
            f"search: cnn recall@1 of the weakest edit (`{worst}`)",
            cnn[worst],
            ">=",
            TARGET_EACH,
            "{:.3f}",
        ),
        check(
            "duplicates, verified: strict pairwise precision of `near` (bursts counted wrong)",
            verified.near.precision,
            ">=",
            TARGET_STRICT_PRECISION,
            "{:.4f}",
        ),
        check(
            "duplicates, verified: pairwise recall of `near`",
            verified.near.recall,
            ">=",
            TARGET_STRICT_RECALL,
            "{:.4f}",
        ),
        check(
            f"duplicates, verified: strict precision of the weakest edit (`{worst_p}`)",
            edits[worst_p][0],
            ">=",
            TARGET_STRICT_PRECISION,
            "{:.4f}",
        ),
        check(
            f"duplicates, verified: recall of the weakest edit (`{worst_r}`)",
            edits[worst_r][1],
            ">=",
            TARGET_STRICT_RECALL,
            "{:.4f}",
        ),
        check(
            f"baseline, vector test alone at {default_thr:.2f}: pairwise precision, "
            "same-scene Holidays bursts counted right",
            at_default.precision_scene,
            ">=",
            TARGET_PRECISION,
            "{:.4f}",
        ),
        informational(
            f"baseline: the lowest threshold with strict pairwise precision >= {TARGET_PRECISION}",
            f"{best.threshold:.2f} (recall {best.recall:.4f})" if best else "none in the sweep",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    common.add_data_argument(parser)
    common.add_output_arguments(parser)
    args = parser.parse_args(argv)
    out = common.Output.from_args(args)
    data = common.data_dir(args.data, "photos", "holidays/images")
    originals_dir, distractors = data / "photos", data / "holidays" / "images"
    originals = common.image_files(originals_dir)

    with common.temp_dir("neardup") as work:
        copies_dir = work / "copies"
        copies = make_copies(originals, copies_dir)
        print(f"{len(originals)} originals, {len(copies)} copies in {copies_dir}", flush=True)
        origin = origins(originals_dir, originals)
        scene = holiday_scenes(distractors)
        recall, timing, indexed = search_recall(originals_dir, distractors, copies, origin, work)
        scores, verified, times, default_thr, dup_n = duplicate_sweep(
            originals_dir, distractors, copies_dir, copies, originals, scene, work
        )
    markdown = render(
        recall, timing, indexed, len(originals), scores, verified, times, default_thr, dup_n
    )
    out.write("neardup", markdown, targets(recall, scores, verified, default_thr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
