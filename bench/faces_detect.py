"""Face detection on crowded photos: recall by face size, false detections, time per photo.

The development set is composed at run time (never stored in the repository), deterministic
from ``--seed``: faces cut from ``lfw-dev`` crops and ``faces-photos`` press photos are
pasted onto real backgrounds from ``photos`` (those showing no person), 4-30 faces per canvas
1024 px wide, face widths log-uniform over 20-400 px, half of them turned in-plane by up to
±30°, through a soft elliptical mask (no square edge for a detector to key on), the canvas
then JPEG-compressed at quality 70-95. ``--save DIR`` writes the canvases and their truth.

Ground truth. Each source face's box is where HOG and dlib's MMOD agree on it (IoU >= 0.5,
their mean taken) on the source photo at high resolution; faces where they disagree are not
used. Both are dlib boxes (roughly eyebrows to chin, ear to ear), so the truth means what
the detectors' boxes mean; a pasted face's truth is that box scaled with the paste and kept
upright around the face's centre (what a detector reports for a turned face), its width the
face size. Faces are placed largest first, none over another's box (its opaque core must
keep clear of the boxes placed, and its box of their cores); a face that finds no room after
some tries is dropped.

Matching: a detection finds a face when their boxes overlap with IoU >= 0.3, one detection
per face (greedily, best overlap first); every detection left over is a false detection.
IoU rather than centre-in-box: a box around a whole group has its centre in some face and
would count as finding it; 0.3 (not WIDER FACE's 0.5) leaves room for the detectors' own box
conventions (HOG's boxes are ~10% wider than MMOD's) and for turned faces, while a box one
face width off (IoU 0) never counts.

Detectors, each through an adapter ``image -> boxes`` (:data:`ADAPTERS`), so that a new one
is one line: lookalike's ``detect_boxes`` (``hog``, ``cnn``) with ``min_face`` 20 (the
smallest face here), dlib's own MMOD at upsample 0 and 1 (``mmod``, ``mmod-up1``), and
face_recognition's defaults (``face_recognition``: HOG on the image upsampled once). All run
on the same decoded canvases, in an order rotating from canvas to canvas; times cover the
detector call alone.

The press photos are scored too: does each detector find the photo's main face (the widest
face HOG and MMOD agree on at full resolution, standing for the labelled person) on the photo
reduced to the canvases' width.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from faces_compare import import_face_recognition
from lookalike.faces import config, models
from lookalike.faces.config import Detector
from lookalike.faces.detect import detect_boxes
from lookalike.files import atomic_write
from sections import Target, check, informational

HEADING = "## Faces: detection on crowded photos (`bench/faces_detect.py`)"
QUICK = "8 canvases, 4 press photos, dlib's MMOD upsampled on 1 canvas"
NEEDS = ("lfw-dev/images", "faces-photos/labels.csv", "photos")

Box = tuple[float, float, float, float]  # left, top, right, bottom (pixels, right exclusive)
Detect = Callable[[Image.Image], list[Box]]

SMALLEST_FACE, LARGEST_FACE = 20, 400
# (low, high) face widths in px; recall is reported per bucket.
BUCKETS = ((20, 40), (40, 80), (80, 160), (160, 10_000))
FACES_PER_CANVAS = (4, 30)
CANVAS_WIDTH, CANVAS_MAX_HEIGHT = 1024, 768
MAX_ANGLE = 30.0
ROTATED_SHARE = 0.5
JPEG_QUALITY = (70, 95)
MATCH_IOU = 0.3
AGREE_IOU = 0.5
# A source patch spans this many face widths; its mask is opaque out to OPAQUE face widths
# (the face and some hair), then fades to nothing at the patch's edge.
PATCH_WIDTHS, OPAQUE_WIDTHS = 1.8, 1.35
# A face is never enlarged more than this (a press face 100 px wide pasted at 400 px is blur).
MAX_ENLARGE = 2.0
PLACE_TRIES = 60
LFW_SOURCES = 40
# The LFW crops are ~120 px faces enlarged to 350 px: pasted no wider than this.
LFW_MAX_WIDTH = 160
# Backgrounds of ../shared/data/photos showing people or carved faces (seen by eye): a face in
# the background would be scored as a false detection.
PEOPLE = frozenset(
    {
        *("101085", "101087", "119082", "145086", "157055", "170057", "189080", "216081"),
        *("220075", "229036", "24077", "271035", "285079", "299086", "300091", "302008"),
        *("304074", "33039", "barbara", "face", "foreman", "man", "baby", "head", "woman"),
    }
)
# Where the agreed source boxes are kept between runs (finding them takes ~1 s a photo).
BOX_CACHE = common.REPO / "bench" / "out" / "faces_detect-boxes.json"
TARGETS = {"recall >= 40 px": 0.95, "recall 20-40 px": 0.80, "false per photo": 0.1}
# The targets are for the default detector, asked for faces down to 20 px (which
# face_min_size's default of 40 excludes): the CNN with the crowd settings.
CROWD, CROWD_SIDE = "cnn-crowd", 4096
HEADLINE_DETECTOR = CROWD
BASELINE = "face_recognition"


# --------------------------------------------------------------------------- boxes


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0.0 when either is empty)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(truth: Sequence[Box], found: Sequence[Box], min_iou: float = MATCH_IOU) -> list[bool]:
    """For each truth box, whether a detection in ``found`` matched it: pairs of IoU >=
    ``min_iou`` taken best first, each box in at most one pair."""
    pairs = sorted(
        ((iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)),
        reverse=True,
    )
    hit, used = [False] * len(truth), [False] * len(found)
    for overlap, i, j in pairs:
        if overlap < min_iou:
            break
        if not hit[i] and not used[j]:
            hit[i] = used[j] = True
    return hit


def scaled_box(box: Box, factor: float) -> Box:
    """``box`` grown (or shrunk) by ``factor`` around its centre."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw, hh = (box[2] - box[0]) * factor / 2, (box[3] - box[1]) * factor / 2
    return (cx - hw, cy - hh, cx + hw, cy + hh)


def _mean_box(a: Box, b: Box) -> Box:
    return (
        (a[0] + b[0]) / 2,
        (a[1] + b[1]) / 2,
        (a[2] + b[2]) / 2,
        (a[3] + b[3]) / 2,
    )


def _intersects(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# --------------------------------------------------------------------------- detectors


def lookalike_detector(detector: Detector, max_side: int | None = None) -> Detect:
    """lookalike's ``detect_boxes`` with ``detector``, asked for faces of SMALLEST_FACE px,
    looking at most ``max_side`` px (default: the settings' default for ``detector``)."""

    def detect(image: Image.Image) -> list[Box]:
        found = detect_boxes(image, detector=detector, min_face=SMALLEST_FACE, max_side=max_side)
        return [box for box, _ in found]

    return detect


def dlib_mmod(upsample: int) -> Detect:
    """dlib's own MMOD CNN detector on the image, upsampled ``upsample`` times (its pyramid)."""

    def detect(image: Image.Image) -> list[Box]:
        with models.CNN_DETECTOR.use() as cnn:
            found = cnn(np.asarray(image), upsample)
        return [_rect_box(d.rect) for d in found]

    return detect


def face_recognition_default(fr: Any) -> Detect:
    """face_recognition's ``face_locations`` with its defaults (HOG, upsampled once)."""

    def detect(image: Image.Image) -> list[Box]:
        found = fr.face_locations(np.asarray(image))
        return [(float(lt), float(tp), float(rt + 1), float(bt + 1)) for tp, rt, bt, lt in found]

    return detect


def _rect_box(rect: Any) -> Box:
    """A dlib rectangle (inclusive corners) as a Box."""
    return (rect.left(), rect.top(), rect.right() + 1.0, rect.bottom() + 1.0)


@dataclass(frozen=True)
class Adapter:
    """How to build one detector's adapter, and what it is."""

    make: Callable[[Any], Detect]  # gets the face_recognition module (None if absent)
    about: str
    slow: bool = False  # runs on the first --upsampled canvases only


ADAPTERS: dict[str, Adapter] = {
    "hog": Adapter(lambda _: lookalike_detector("hog"), "lookalike `detect_boxes(detector='hog')`"),
    "cnn": Adapter(
        lambda _: lookalike_detector("cnn"),
        "lookalike `detect_boxes(detector='cnn')`, the default detector at its default "
        f"`face_cnn_max_side` ({config.CNN_MAX_SIDE}): the photo looked at no larger than that",
    ),
    CROWD: Adapter(
        lambda _: lookalike_detector("cnn", CROWD_SIDE),
        f"lookalike's cnn with the crowd settings README gives (`face_min_size` {SMALLEST_FACE}, "
        f"`face_cnn_max_side` {CROWD_SIDE}): the pyramid starts where a {SMALLEST_FACE} px face "
        "is 80 px",
    ),
    "mmod": Adapter(lambda _: dlib_mmod(0), "dlib's MMOD (`cnn_face_detection_model_v1`), x1"),
    "mmod-up1": Adapter(lambda _: dlib_mmod(1), "dlib's MMOD upsampled once (x2)", slow=True),
    BASELINE: Adapter(face_recognition_default, "face_recognition `face_locations` defaults"),
}


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Source:
    """A face to paste: an RGBA patch (alpha: the soft mask) centred on the face's box, and
    the box's width and height in patch pixels."""

    name: str
    patch: Image.Image
    width: float
    height: float
    max_width: float  # pasted at most this wide (its detail runs out beyond)


def agreed_faces(image: Image.Image, max_side: int = 2048) -> list[Box]:
    """The faces of an RGB photo where HOG (on a copy at most ``max_side`` px) and dlib's
    MMOD (on a crop around each HOG face, reduced to ~120 px faces) agree, IoU >= AGREE_IOU:
    each the mean of the two boxes, in the photo's pixels, widest first."""
    mmod = dlib_mmod(0)
    out: list[Box] = []
    for box, _ in detect_boxes(image, detector="hog", min_face=80, max_side=max_side):
        x0, y0, x1, y1 = scaled_box(box, 1.6)
        region = (round(x0), round(y0), round(x1), round(y1))
        crop = image.crop(region)  # outside the photo: black
        scale = min(1.0, 120.0 / (box[2] - box[0]))
        small = crop.resize((round(crop.width * scale), round(crop.height * scale)))
        for left, top, right, bottom in mmod(small):
            x, y = region[0], region[1]
            mine = (left / scale + x, top / scale + y, right / scale + x, bottom / scale + y)
            if iou(mine, box) >= AGREE_IOU:
                out.append(_mean_box(mine, box))
                break
    return sorted(out, key=lambda b: b[0] - b[2])


class BoxCache:
    """Boxes found in files, kept in a JSON file between runs, each under the file's path,
    size and modification time and what found them (``method``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.boxes: dict[str, list[list[float]]] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.boxes = {}
        self.changed = False

    def get(self, file: Path, method: str, find: Callable[[], list[Box]]) -> list[Box]:
        """What ``find()`` returns for ``file``: kept from an earlier run, or found now."""
        stat = file.stat()
        key = f"{file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{method}"
        if key not in self.boxes:
            self.boxes[key] = [list(box) for box in find()]
            self.changed = True
        return [(b[0], b[1], b[2], b[3]) for b in self.boxes[key]]

    def save(self) -> None:
        """Write the boxes back if any were found in this run."""
        if self.changed:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, json.dumps(self.boxes).encode())


def masked_patch(image: Image.Image, box: Box) -> Image.Image:
    """The RGBA patch of ``image`` PATCH_WIDTHS face widths wide centred on ``box``, with an
    elliptical mask opaque out to OPAQUE_WIDTHS/PATCH_WIDTHS of its radii, then fading to
    nothing at the ellipse's edge; the ellipse is the patch's inscribed circle, narrowed
    where ``image`` ends sooner (a tight LFW crop keeps only its central part)."""
    side = PATCH_WIDTHS * max(box[2] - box[0], box[3] - box[1])
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    left, top = round(cx - side / 2), round(cy - side / 2)
    region = (left, top, left + round(side), top + round(side))  # square
    patch = image.convert("RGB").crop(region)
    n = patch.width
    mx, my = cx - region[0], cy - region[1]  # the face's centre in the patch
    ax = min(n / 2, cx, image.width - cx)
    ay = min(n / 2, cy, image.height - cy)
    yy, xx = np.mgrid[0:n, 0:n]
    r = np.hypot((xx + 0.5 - mx) / ax, (yy + 0.5 - my) / ay)  # 1.0 on the ellipse
    inner = OPAQUE_WIDTHS / PATCH_WIDTHS
    alpha = np.clip((1.0 - r) / (1.0 - inner), 0.0, 1.0)
    alpha = alpha * alpha * (3 - 2 * alpha)  # smoothstep: no visible ring
    patch.putalpha(Image.fromarray((alpha * 255).round().astype(np.uint8)))
    return patch


def source_from(name: str, image: Image.Image, box: Box, max_width: float) -> Source:
    """The source face of ``image`` in ``box``, to be pasted at most ``max_width`` wide."""
    width, height = box[2] - box[0], box[3] - box[1]
    return Source(name, masked_patch(image, box), width, height, max_width)


def lfw_sources(root: Path, count: int, cache: BoxCache) -> tuple[list[Source], int]:
    """Faces of ``count`` LFW crops (one per person, spread over the set) and how many
    crops were tried; a crop is padded with grey so that its face is not at the border."""
    people = sorted(p for p in (root / "lfw-dev" / "images").iterdir() if p.is_dir())
    step = max(1, len(people) // count)
    out: list[Source] = []
    tried = 0
    for person in people[::step][:count]:
        path = sorted(person.iterdir())[0]
        tried += 1
        with Image.open(path) as opened:
            crop = opened.convert("RGB")
        pad = crop.width // 2
        padded = ImageOps.expand(crop, pad, fill=(128, 128, 128))
        faces = cache.get(path, f"padded {pad}, {AGREE_IOU}", partial(agreed_faces, padded))
        if faces:
            # The patch comes from the crop alone: what lies outside it is transparent.
            left, top, right, bottom = faces[0]
            box = (left - pad, top - pad, right - pad, bottom - pad)
            out.append(source_from(path.name, crop, box, LFW_MAX_WIDTH))
    return out, tried


@dataclass
class PressPhoto:
    """A press photo, its person and its main face (None if HOG and MMOD agree on none)."""

    path: str
    person: str
    image: Image.Image
    main: Box | None
    faces: list[Box] = field(default_factory=list)


def press_photos(root: Path, cache: BoxCache) -> list[PressPhoto]:
    """The press photos (RGB) with the faces HOG and MMOD agree on."""
    folder = root / "faces-photos"
    with open(folder / "labels.csv", newline="") as f:
        labels = [(r["path"], r["person"]) for r in csv.DictReader(f)]
    out = []
    for path, person in labels:
        with Image.open(folder / path) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
        faces = cache.get(folder / path, f"{AGREE_IOU}", partial(agreed_faces, image))
        out.append(PressPhoto(path, person, image, faces[0] if faces else None, faces))
    return out


def press_sources(photos: Sequence[PressPhoto]) -> list[Source]:
    """Every agreed face of the press photos whose patch holds no other face's centre."""
    out = []
    for photo in photos:
        for k, box in enumerate(photo.faces):
            around = scaled_box(box, PATCH_WIDTHS)
            others = [b for b in photo.faces if b is not box]
            if not any(_intersects(around, scaled_box(b, 0.1)) for b in others):
                width = MAX_ENLARGE * (box[2] - box[0])
                out.append(source_from(f"{photo.path}#{k}", photo.image, box, width))
    return out


def backgrounds(root: Path) -> list[Path]:
    """The background photos: those of ``photos/`` showing no person, sorted."""
    return [p for p in common.image_files(root / "photos") if p.stem not in PEOPLE]


# --------------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class Truth:
    """A pasted face: its box on the canvas, its width (the size bucketed) and turn."""

    box: Box
    angle: float
    source: str

    @property
    def size(self) -> float:
        return self.box[2] - self.box[0]


@dataclass
class Scene:
    """A composed canvas (JPEG bytes) and the faces pasted on it."""

    name: str
    jpeg: bytes
    faces: list[Truth]
    background: str
    quality: int

    def image(self) -> Image.Image:
        """The canvas decoded to RGB."""
        with Image.open(io.BytesIO(self.jpeg)) as opened:
            return opened.convert("RGB")


def canvas_from(background: Image.Image, rng: np.random.Generator) -> Image.Image:
    """``background`` CANVAS_WIDTH px wide (mirrored at random), cut to at most
    CANVAS_MAX_HEIGHT px tall at a random height."""
    if rng.random() < 0.5:
        background = ImageOps.mirror(background)
    height = round(background.height * CANVAS_WIDTH / background.width)
    canvas = background.convert("RGB").resize((CANVAS_WIDTH, height), Image.Resampling.BICUBIC)
    top = int(rng.integers(0, max(0, height - CANVAS_MAX_HEIGHT) + 1))
    return canvas.crop((0, top, CANVAS_WIDTH, top + min(height, CANVAS_MAX_HEIGHT)))


def _turned(source: Source, width: float, angle: float) -> Image.Image:
    """The source's patch scaled so that its face is ``width`` px wide, turned ``angle``°
    (counter-clockwise) around its centre, the face's centre."""
    scale = width / source.width
    size = max(1, round(source.patch.width * scale))
    patch = source.patch.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    if angle:
        patch = patch.rotate(angle, Image.Resampling.BICUBIC, expand=True)
    return patch


def _place(
    width: float, height: float, canvas: Image.Image, placed: list[Truth], rng: np.random.Generator
) -> Box | None:
    """A box ``width`` x ``height`` inside ``canvas`` whose opaque core keeps clear of the
    placed faces' boxes and whose box keeps clear of their cores; None if none is found."""
    if width >= canvas.width or height >= canvas.height:
        return None
    for _ in range(PLACE_TRIES):
        x = float(rng.uniform(0, canvas.width - width))
        y = float(rng.uniform(0, canvas.height - height))
        box = (x, y, x + width, y + height)
        core = scaled_box(box, OPAQUE_WIDTHS)
        if not any(
            _intersects(core, p.box) or _intersects(box, scaled_box(p.box, OPAQUE_WIDTHS))
            for p in placed
        ):
            return box
    return None


def compose(
    index: int, seed: int, sources: Sequence[Source], background: Image.Image, name: str
) -> Scene:
    """Canvas ``index`` of the set of ``seed``: faces from ``sources`` pasted on
    ``background`` (see the module's docstring), JPEG-compressed."""
    rng = np.random.default_rng([seed, index])
    canvas = canvas_from(background, rng)
    count = int(rng.integers(FACES_PER_CANVAS[0], FACES_PER_CANVAS[1] + 1))
    widths = np.exp(rng.uniform(math.log(SMALLEST_FACE), math.log(LARGEST_FACE), count))
    placed: list[Truth] = []
    for width in sorted(widths.tolist(), reverse=True):
        angle = float(rng.uniform(-MAX_ANGLE, MAX_ANGLE)) if rng.random() < ROTATED_SHARE else 0.0
        fit = [s for s in sources if s.max_width >= width] or list(sources)
        source = fit[int(rng.integers(len(fit)))]
        height = width * source.height / source.width
        box = _place(width, height, canvas, placed, rng)
        if box is None:
            continue
        patch = _turned(source, width, angle)
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        corner = (round(cx - patch.width / 2), round(cy - patch.height / 2))
        canvas.paste(patch, corner, patch)
        placed.append(Truth(box, angle, source.name))
    quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    return Scene(f"canvas-{index:03d}", common.jpeg(canvas, quality), placed, name, quality)


def scenes(root: Path, sources: Sequence[Source], count: int, seed: int) -> list[Scene]:
    """The first ``count`` canvases of the set of ``seed``."""
    paths = backgrounds(root)
    out = []
    for index in range(count):
        path = paths[int(np.random.default_rng([seed, index, 1]).integers(len(paths)))]
        with Image.open(path) as opened:
            out.append(compose(index, seed, sources, opened.convert("RGB"), path.stem))
    return out


def save(folder: Path, made: Sequence[Scene]) -> None:
    """The canvases as JPEG files and their faces in ``truth.json``, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for scene in made:
        (folder / f"{scene.name}.jpg").write_bytes(scene.jpeg)
    truth = {
        s.name: {
            "background": s.background,
            "quality": s.quality,
            "faces": [{"box": f.box, "angle": f.angle, "source": f.source} for f in s.faces],
        }
        for s in made
    }
    (folder / "truth.json").write_text(json.dumps(truth, indent=1))


# --------------------------------------------------------------------------- scoring


def bucket_of(size: float) -> tuple[int, int]:
    """The bucket of BUCKETS a face ``size`` px wide falls in (the first for smaller)."""
    return next((b for b in BUCKETS if size < b[1]), BUCKETS[-1])


@dataclass
class Score:
    """One detector's results over the canvases it ran on."""

    found: dict[tuple[int, int], int] = field(default_factory=dict)  # bucket -> faces found
    total: dict[tuple[int, int], int] = field(default_factory=dict)
    upright: list[int] = field(default_factory=lambda: [0, 0])  # found, total (>= 40 px)
    turned: list[int] = field(default_factory=lambda: [0, 0])
    false: int = 0
    photos: int = 0
    times: list[float] = field(default_factory=list)

    def add(self, truth: Sequence[Truth], found: Sequence[Box], seconds: float) -> int:
        """Count one photo: its faces, the detections ``found``, the detector's time;
        returns how many of its faces were found."""
        hits = match([t.box for t in truth], found)
        for face, hit in zip(truth, hits, strict=True):
            bucket = bucket_of(face.size)
            self.total[bucket] = self.total.get(bucket, 0) + 1
            self.found[bucket] = self.found.get(bucket, 0) + hit
            if face.size >= 40:
                pair = self.turned if face.angle else self.upright
                pair[0] += hit
                pair[1] += 1
        self.false += len(found) - sum(hits)
        self.photos += 1
        self.times.append(seconds)
        return sum(hits)

    def recall(self, low: int = 0, high: int = 10_000) -> float:
        """The share of faces of width in [low, high) found (NaN when there are none)."""
        buckets = [b for b in BUCKETS if low <= b[0] and b[1] <= high]
        total = sum(self.total.get(b, 0) for b in buckets)
        return sum(self.found.get(b, 0) for b in buckets) / total if total else float("nan")

    def false_per_photo(self) -> float:
        return self.false / self.photos if self.photos else float("nan")

    def median_ms(self) -> float:
        return 1000 * statistics.median(self.times) if self.times else float("nan")


def evaluate(
    detectors: dict[str, Detect], made: Sequence[Scene], slow: set[str], upsampled: int
) -> dict[str, Score]:
    """Each detector on each canvas (those in ``slow`` on the first ``upsampled`` only),
    which one runs first rotating from canvas to canvas."""
    names = list(detectors)
    scores = {name: Score() for name in names}
    for i, scene in enumerate(made):
        image = scene.image()
        line = []
        for name in names[i % len(names) :] + names[: i % len(names)]:
            if name in slow and i >= upsampled:
                continue
            found, seconds = common.timed(partial(detectors[name], image))
            hits = scores[name].add(scene.faces, found, seconds)
            line.append(f"{name} {hits}/{len(found)} {seconds:.1f} s")
        print(
            f"{scene.name} ({len(scene.faces)} faces): found/detections {', '.join(line)}",
            flush=True,
        )
    return scores


@dataclass
class PressScore:
    """One detector on the press photos: main faces found, detections, times."""

    found: int = 0
    photos: int = 0
    detections: int = 0
    times: list[float] = field(default_factory=list)


def evaluate_press(
    detectors: dict[str, Detect], photos: Sequence[PressPhoto], slow: set[str]
) -> dict[str, PressScore]:
    """Each detector (not those in ``slow``) on each press photo reduced to CANVAS_WIDTH px:
    whether a detection matches its main face."""
    scores = {name: PressScore() for name in detectors if name not in slow}
    for photo in photos:
        assert photo.main is not None
        scale = min(1.0, CANVAS_WIDTH / max(photo.image.size))
        size = (round(photo.image.width * scale), round(photo.image.height * scale))
        image = photo.image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
        left, top, right, bottom = photo.main
        main = (left * scale, top * scale, right * scale, bottom * scale)
        for name, score in scores.items():
            found, seconds = common.timed(partial(detectors[name], image))
            score.found += match([main], found)[0]
            score.photos += 1
            score.detections += len(found)
            score.times.append(seconds)
    return scores


# --------------------------------------------------------------------------- report


def bucket_name(low: int, high: int) -> str:
    """``20-40``, or ``160+`` for the last bucket."""
    return f"{low}+" if (low, high) == BUCKETS[-1] else f"{low}-{high}"


def _fmt(value: float, digits: int = 2) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def headlines(scores: dict[str, Score]) -> list[Target]:
    """The issue's targets for the default-to-be detector, and its time against
    face_recognition's defaults measured in the same run."""
    mine = scores.get(HEADLINE_DETECTOR)
    name = f"lookalike `{HEADLINE_DETECTOR}`"
    wanted = [
        (f"{name}: recall of faces >= 40 px", ">=", TARGETS["recall >= 40 px"]),
        (f"{name}: recall of faces 20-40 px", ">=", TARGETS["recall 20-40 px"]),
        (f"{name}: false detections per photo", "<", TARGETS["false per photo"]),
    ]
    if mine is None:
        why = f"--detectors left out {HEADLINE_DETECTOR}"
        return [Target(h, "-", f"{op} {goal:.2f}", None, why) for h, op, goal in wanted]
    values = [mine.recall(40), mine.recall(20, 40), mine.false_per_photo()]
    out = [check(h, v, op, goal) for (h, op, goal), v in zip(wanted, values, strict=True)]
    base = scores.get(BASELINE)
    if base is not None:
        figures = [base.recall(40), base.recall(20, 40), base.false_per_photo()]
        out.append(
            informational(
                "face_recognition's defaults on the same canvases: recall >= 40 px, "
                "recall 20-40 px, false detections per photo",
                ", ".join(_fmt(v) for v in figures),
            )
        )
        out.append(
            informational(
                f"time per photo, {name} / face_recognition's defaults (median over canvases)",
                f"{mine.median_ms() / base.median_ms():.2f}x "
                f"({mine.median_ms():.0f} / {base.median_ms():.0f} ms)",
            )
        )
    return out


def render(
    scores: dict[str, Score],
    press: dict[str, PressScore],
    made: Sequence[Scene],
    pool: str,
    press_note: str,
    upsampled: int,
) -> str:
    """The section's body: how the set was made, the canvases' table, the press photos'."""
    faces = [f for s in made for f in s.faces]
    per_bucket = ", ".join(
        f"{bucket_name(lo, hi)} px: {sum(lo <= f.size < hi for f in faces)}" for lo, hi in BUCKETS
    )
    rows = []
    for name, s in scores.items():
        rows.append(
            [
                f"`{name}`: {ADAPTERS[name].about}",
                s.photos,
                *(f"{_fmt(s.recall(lo, hi))} ({s.total.get((lo, hi), 0)})" for lo, hi in BUCKETS),
                _fmt(s.recall(40)),
                _fmt(s.upright[0] / s.upright[1] if s.upright[1] else float("nan")),
                _fmt(s.turned[0] / s.turned[1] if s.turned[1] else float("nan")),
                _fmt(s.false_per_photo()),
                f"{s.median_ms():.0f}",
            ]
        )
    press_rows = [
        [
            f"`{name}`",
            p.photos,
            f"{p.found}/{p.photos}",
            _fmt(p.detections / p.photos if p.photos else float("nan"), 1),
            f"{1000 * statistics.median(p.times):.0f}" if p.times else "-",
        ]
        for name, p in press.items()
    ]
    slow = [n for n in scores if ADAPTERS[n].slow]
    slow_note = (
        f" {', '.join(f'`{n}`' for n in slow)} ran on the first {upsampled} canvas(es) "
        "only, not on the press photos (upsampling quadruples dlib's MMOD's time)."
        if slow
        else ""
    )
    return "\n".join(
        [
            HEADING,
            "",
            f"{len(made)} composed canvases ({CANVAS_WIDTH} px wide, {len(faces)} faces: "
            f"{per_bucket}; {sum(bool(f.angle) for f in faces)} turned in-plane by up to "
            f"±{MAX_ANGLE:.0f}°), faces from {pool}, pasted through a soft mask on "
            f"{len(backgrounds_used(made))} background photos of `photos/` showing no person, "
            f"JPEG quality {JPEG_QUALITY[0]}-{JPEG_QUALITY[1]}. Truth: the box where HOG and "
            "dlib's MMOD agree on the source face, scaled with the paste, kept upright. A face "
            f"is found by a detection of IoU >= {MATCH_IOU} (one each, best overlap first); "
            "other detections are false. Times: the detector call on the decoded canvas, "
            f"median over canvases. lookalike's detectors get `min_face={SMALLEST_FACE}`. "
            f"Recall columns: found share (faces).{slow_note}",
            "",
            common.table(
                [
                    "detector",
                    "canvases",
                    *(f"recall {bucket_name(lo, hi)} px" for lo, hi in BUCKETS),
                    "recall >= 40 px",
                    "upright >= 40",
                    "turned >= 40",
                    "false / photo",
                    "ms / photo",
                ],
                rows,
            ),
            "",
            f"Press photos ({press_note}): is the main face (the widest face HOG and MMOD "
            "agree on at full resolution, standing for the labelled person) found on the "
            f"photo reduced to at most {CANVAS_WIDTH} px?",
            "",
            common.table(
                ["detector", "photos", "main face found", "detections / photo", "ms / photo"],
                press_rows,
            ),
        ]
    )


def backgrounds_used(made: Sequence[Scene]) -> set[str]:
    return {s.background for s in made}


# --------------------------------------------------------------------------- main


def chosen_detectors(names: str, fr: Any) -> dict[str, Detect]:
    """The adapters of the comma-separated ``names`` (all of them for "all")."""
    wanted = list(ADAPTERS) if names == "all" else [n.strip() for n in names.split(",")]
    unknown = [n for n in wanted if n not in ADAPTERS]
    if unknown:
        raise ValueError(f"unknown detector(s) {', '.join(unknown)}; choose from {list(ADAPTERS)}")
    return {n: ADAPTERS[n].make(fr) for n in wanted if n != BASELINE or fr is not None}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    common.add_data_argument(parser)
    parser.add_argument("--photos", type=int, default=30, help="canvases to compose and score")
    parser.add_argument("--press", type=int, default=12, help="press photos to score (spread)")
    parser.add_argument(
        "--upsampled", type=int, default=3, help="canvases dlib's upsampled MMOD runs on"
    )
    parser.add_argument("--seed", type=int, default=10, help="the set's seed")
    parser.add_argument(
        "--detectors", default="all", help=f"comma-separated, of {', '.join(ADAPTERS)}"
    )
    parser.add_argument("--save", type=Path, help="also write the canvases and truth here")
    parser.add_argument("--no-install", action="store_true", help="never install face_recognition")
    common.add_output_arguments(parser, QUICK)
    args = parser.parse_args(argv)
    if args.quick:
        args.photos, args.press, args.upsampled = 8, 4, 1
    out = common.Output.from_args(args, QUICK)
    root = common.data_dir(args.data, *NEEDS)

    fr, why = import_face_recognition(install=not args.no_install)
    if fr is None:
        print(f"face_recognition left out: {why}", file=sys.stderr)
    try:
        detectors = chosen_detectors(args.detectors, fr)
    except ValueError as e:
        parser.error(str(e))
    slow = {n for n in detectors if ADAPTERS[n].slow}

    t0 = time.perf_counter()
    cache = BoxCache(BOX_CACHE)
    lfw, tried = lfw_sources(root, LFW_SOURCES, cache)
    photos = press_photos(root, cache)
    cache.save()
    press = press_sources(photos)
    pool = (
        f"{len(lfw)} LFW crops (of {tried} tried) and {len(press)} press-photo faces "
        f"(of {sum(len(p.faces) for p in photos)} agreed on)"
    )
    print(f"sources: {pool} in {time.perf_counter() - t0:.0f} s", flush=True)
    made = scenes(root, [*lfw, *press], args.photos, args.seed)
    if args.save:
        save(args.save, made)
    scores = evaluate(detectors, made, slow, args.upsampled)

    scored = [p for p in photos if p.main is not None]
    picked = [
        scored[round(k)] for k in np.linspace(0, len(scored) - 1, min(args.press, len(scored)))
    ]
    press_scores = evaluate_press(detectors, picked, slow)
    press_note = (
        f"{len(picked)} of the {len(scored)} with a face HOG and MMOD agree on, spread over "
        f"the {len(photos)}"
    )
    body = render(scores, press_scores, made, pool, press_note, args.upsampled)
    if fr is None and (args.detectors == "all" or BASELINE in args.detectors.split(",")):
        body += f"\n\n`{BASELINE}` left out: {why}."
    out.write("faces-detect", body, headlines(scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
