"""Find faces in a photo: boxes, landmarks, aligned chips and a quality verdict.

Detection runs on a resized copy of the image: large photos are shrunk so that their longer
side is at most ``max_side`` (HOG's cost grows with the pixel count, and a 24 MP photo
would take seconds), small ones are enlarged (at most 2x) so that a ``min_face``-pixel face
reaches the ~80 px the detectors need. Boxes are scaled back to the original pixels.

Landmarks are then predicted, for each box, on a crop of the *original* image around it
(reduced only when the face is wider than ``LANDMARK_MAX_FACE``): the aligned chip, and so
the embedding, keeps the detail that the detection copy lost. The 5-point model always runs,
since it drives alignment and pose; the 68-point model only when those landmarks are asked for.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from lookalike.decode import to_rgb
from lookalike.errors import BadInput
from lookalike.faces import config, mmod, models
from lookalike.faces.config import Detector, LandmarkCount, PadMode
from lookalike.faces.quality import assess

if TYPE_CHECKING:
    from lookalike.faces.embed import Encoder

__all__ = [
    "Box",
    "Face",
    "PadMode",
    "StageTimes",
    "detect_boxes",
    "detect_faces",
    "detection_copy",
    "detection_scale",
    "locate_face",
]

Box = tuple[float, float, float, float]

# Margin around a box (fraction of its width, each side) cut out for landmarks and chip: the
# chip's 25% padding, rotated by a rolled head, reaches ~0.6 box widths beyond the box.
_REGION_MARGIN = 0.75
# Below this shorter side (detector input pixels) no face can fit the detectors' window.
_MIN_DETECT_SIDE = 64


@dataclass
class StageTimes:
    """Milliseconds spent in each stage of the face pipeline (summed over calls)."""

    detect_ms: float = 0.0
    landmarks_ms: float = 0.0
    embed_ms: float = 0.0


@dataclass
class Face:
    """One face found in an image; coordinates are pixels of the original image."""

    # (left, top, right, bottom), clipped to the image.
    box: tuple[int, int, int, int]
    # Detector confidence: HOG's SVM margin or MMOD's CNN confidence; 1.0 in crop mode.
    score: float
    # 5 points (eye corners, nose base) or the 68-point iBUG layout, (x, y).
    landmarks: list[tuple[float, float]]
    # In [0, 1]: size x sharpness x pose (see lookalike.faces.quality).
    quality: float
    # "small", "blurry", "profile", "low_quality".
    flags: list[str]
    # Worth recognising: big enough and of sufficient quality.
    usable: bool
    # Estimated yaw (degrees) and sharpness ratio behind the quality.
    yaw: float = 0.0
    sharpness: float = 0.0
    # The 128-d float32 embedding, once computed (lookalike.faces.embed).
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)
    # The aligned RGB chip (uint8, CHIP_SIZE x CHIP_SIZE x 3) the embedding is computed from.
    chip: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def width(self) -> int:
        """The box width in original pixels."""
        return self.box[2] - self.box[0]


def detection_scale(width: int, height: int, *, min_face: int, max_side: int) -> float:
    """The factor the image is resized by before detection.

    Enlarges (at most ``MAX_UPSCALE``) so that a face ``min_face`` pixels wide reaches
    ``DETECTOR_MIN_FACE``, but never past a longer side of ``max_side``; shrinks images
    whose longer side is over ``max_side`` down to it. Returns a positive float.
    """
    if width <= 0 or height <= 0:
        raise BadInput(f"image has no pixels ({width}x{height})")
    if max_side <= 0:
        raise BadInput(f"detection side must be positive, not {max_side}")
    wanted = config.DETECTOR_MIN_FACE / max(1, min_face)
    enlarge = min(config.MAX_UPSCALE, max(1.0, wanted))
    return min(enlarge, max_side / max(width, height))


def detection_copy(
    image: Image.Image, *, min_face: int, max_side: int
) -> tuple[Image.Image, float]:
    """The resized copy of ``image`` a detector runs on, and its scale (copy / image pixels);
    see :func:`detection_scale`. ``image`` itself when no resizing is needed."""
    scale = detection_scale(image.width, image.height, min_face=min_face, max_side=max_side)
    return _resized(image, scale), scale


def _resized(image: Image.Image, scale: float) -> Image.Image:
    if abs(scale - 1.0) < 1e-3:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    # reducing_gap: very large photos are box-reduced first, ~5x faster than a plain filter.
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)


def detect_boxes(
    image: Image.Image,
    *,
    detector: Detector = config.DEFAULT_DETECTOR,
    min_face: int = config.MIN_FACE_SIZE,
    max_side: int | None = None,
    threshold: float | None = None,
    encoder: Encoder | None = None,
) -> list[tuple[Box, float]]:
    """Face boxes in an RGB image: ``[((left, top, right, bottom), score), ...]``.

    Coordinates are floats in the original image's pixels (not clipped: a face cut by the
    border has a box reaching beyond it); the best-scoring faces come first.
    ``max_side``: the longest side the detector looks at (default: the settings' default
    for ``detector``, :func:`~lookalike.faces.config.detect_side`); ``threshold``:
    ``HOG_THRESHOLD`` / ``CNN_THRESHOLD``. The CNN runs in ONNX Runtime over a pyramid from
    ``min_face`` up (:mod:`lookalike.faces.mmod`); ``encoder`` says where its converted model
    is cached and on how many threads it runs (default: the settings' defaults).
    """
    if detector not in ("hog", "cnn"):
        raise BadInput(f"unknown face detector {detector!r} (hog or cnn)")
    if max_side is None:
        max_side = config.detect_side(detector, config.DETECT_MAX_SIDE, config.CNN_MAX_SIDE)
    if detector == "cnn":
        if encoder is None:
            from lookalike.faces.embed import Encoder

            encoder = Encoder()
        return mmod.detect(
            image,
            min_face=min_face,
            max_side=max_side,
            threshold=config.CNN_THRESHOLD if threshold is None else threshold,
            session=encoder.detector_session(),
        )
    return _hog_boxes(
        image,
        min_face=min_face,
        max_side=max_side,
        threshold=config.HOG_THRESHOLD if threshold is None else threshold,
    )


def _hog_boxes(
    image: Image.Image, *, min_face: int, max_side: int, threshold: float
) -> list[tuple[Box, float]]:
    """dlib's HOG detector on the copy :func:`detection_copy` makes, boxes in ``image``'s
    pixels, best first."""
    small, scale = detection_copy(image, min_face=min_face, max_side=max_side)
    if min(small.size) < _MIN_DETECT_SIDE:
        return []
    with models.HOG_DETECTOR.use() as hog:
        # run(image, upsample 0 (resizing is done above), score cut-off).
        rects, scores, _ = hog.run(np.asarray(small), 0, threshold)
    out = [
        (
            (r.left() / scale, r.top() / scale, (r.right() + 1) / scale, (r.bottom() + 1) / scale),
            float(s),
        )
        for r, s in zip(rects, scores, strict=True)
    ]
    out.sort(key=lambda item: -item[1])
    return out


def _region(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """The part of the image cut out around ``box`` for landmarks and chip (clipped)."""
    left, top, right, bottom = box
    margin = _REGION_MARGIN * max(right - left, bottom - top)
    return (
        max(0, math.floor(left - margin)),
        max(0, math.floor(top - margin)),
        min(width, math.ceil(right + margin)),
        min(height, math.ceil(bottom + margin)),
    )


def locate_face(
    image: Image.Image,
    box: Box,
    score: float,
    *,
    landmarks: LandmarkCount = config.DEFAULT_LANDMARKS,
    min_face: int = config.MIN_FACE_SIZE,
    pad: PadMode = "zero",
) -> Face:
    """Landmarks, aligned chip and quality of the face in ``box`` of an RGB image.

    Works on a crop of the image around the box, reduced so that the face is at most
    ``LANDMARK_MAX_FACE`` pixels wide. ``pad="edge"`` repeats the border pixels beyond the
    image (for tight face crops, so that the chip's padding is not black); ``"zero"`` leaves
    them black, as the encoder saw in training. Returns a Face without embedding.
    """
    dlib = models.dlib_module()
    left, top, right, bottom = box
    face_width = right - left
    region = _region(box, image.width, image.height)
    crop = image.crop(region)
    reduce = min(1.0, config.LANDMARK_MAX_FACE / max(face_width, 1.0))
    if reduce < 1.0:
        crop = crop.resize(
            (max(1, round(crop.width * reduce)), max(1, round(crop.height * reduce))),
            Image.Resampling.BILINEAR,
            reducing_gap=3.0,
        )
    pixels = np.asarray(crop)
    # The crop's origin, in crop pixels: non-zero when edge padding is added around it.
    shift = 0
    if pad == "edge":
        shift = round(_REGION_MARGIN * max(face_width, bottom - top) * reduce)
        pixels = np.pad(pixels, ((shift, shift), (shift, shift), (0, 0)), mode="edge")
    ox, oy = region[0], region[1]

    def to_crop(x: float, y: float) -> tuple[float, float]:
        return (x - ox) * reduce + shift, (y - oy) * reduce + shift

    def to_image(x: float, y: float) -> tuple[float, float]:
        return (x - shift) / reduce + ox, (y - shift) / reduce + oy

    x0, y0 = to_crop(left, top)
    x1, y1 = to_crop(right, bottom)
    rect = dlib.rectangle(round(x0), round(y0), round(x1) - 1, round(y1) - 1)
    with models.SHAPE_5.use() as predictor:
        shape5 = predictor(pixels, rect)
    points5 = [to_image(p.x, p.y) for p in shape5.parts()]
    points = points5
    if landmarks == 68:
        with models.SHAPE_68.use() as predictor:
            shape68 = predictor(pixels, rect)
        points = [to_image(p.x, p.y) for p in shape68.parts()]
    elif landmarks != 5:
        raise BadInput(f"landmarks must be 5 or 68, not {landmarks}")
    chip = np.asarray(
        dlib.get_face_chip(pixels, shape5, size=config.CHIP_SIZE, padding=config.CHIP_PADDING)
    )
    quality = assess(face_width, chip, points5, min_face=min_face)
    clipped = (
        max(0, round(left)),
        max(0, round(top)),
        min(image.width, round(right)),
        min(image.height, round(bottom)),
    )
    return Face(
        box=clipped,
        score=score,
        landmarks=points,
        quality=quality.score,
        flags=list(quality.flags),
        usable=quality.usable,
        yaw=quality.yaw,
        sharpness=quality.sharpness,
        chip=chip,
    )


def detect_faces(
    image: Image.Image,
    *,
    detector: Detector = config.DEFAULT_DETECTOR,
    landmarks: LandmarkCount = config.DEFAULT_LANDMARKS,
    min_face: int = config.MIN_FACE_SIZE,
    max_side: int | None = None,
    threshold: float | None = None,
    timings: StageTimes | None = None,
    encoder: Encoder | None = None,
) -> list[Face]:
    """The faces in ``image`` (any mode; converted to RGB), best detector score first.

    Each Face has its box, score, landmarks (``landmarks`` = 5 or 68 points), chip and
    quality; faces under ``min_face`` pixels or of low quality are kept with ``usable``
    False; at most ``MAX_FACES``, the best. No face gives an empty list. ``timings``, if
    given, gets the detect and landmark times added. See :func:`detect_boxes` for
    ``max_side``, ``threshold`` and ``encoder``.
    """
    if landmarks not in (5, 68):
        raise BadInput(f"landmarks must be 5 or 68, not {landmarks}")
    rgb = to_rgb(image)
    t0 = time.perf_counter()
    boxes = detect_boxes(
        rgb,
        detector=detector,
        min_face=min_face,
        max_side=max_side,
        threshold=threshold,
        encoder=encoder,
    )
    t1 = time.perf_counter()
    faces = [
        locate_face(rgb, box, score, landmarks=landmarks, min_face=min_face)
        for box, score in boxes[: config.MAX_FACES]
    ]
    if timings is not None:
        timings.detect_ms += (t1 - t0) * 1000.0
        timings.landmarks_ms += (time.perf_counter() - t1) * 1000.0
    return faces
