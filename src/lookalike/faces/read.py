"""Faces of an image file, bytes or PIL image, under the user's settings.

The one place where decoding meets the face pipeline: JPEGs are decoded reduced (draft mode)
to at least ``face_decode_side``, faces are found on that, and boxes and landmarks are
scaled back to the original image's pixels; ``usable`` follows ``face_min_size`` and
``face_min_quality``; the face model is the settings' (``model_cache_dir``,
``inference_threads``). The CLI, the engine (indexing), the people service and eval all read
faces through here (mostly by way of :mod:`lookalike.faces.api`), so a face is "usable" the
same way everywhere.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from lookalike.decode import Decoded, decode, decode_gate, read_file, to_rgb
from lookalike.faces.config import Detector, LandmarkCount, detect_side
from lookalike.faces.detect import Face, StageTimes, detection_copy
from lookalike.faces.embed import Encoder
from lookalike.faces.mmod import plan_levels
from lookalike.faces.pipeline import analyze
from lookalike.settings import Settings

__all__ = [
    "NamedBytes",
    "Source",
    "decode_for_faces",
    "detector_input",
    "find_faces",
    "source_bytes",
    "source_label",
]


@dataclass(frozen=True)
class NamedBytes:
    """An image's bytes with the name messages and results give it (an upload's filename)."""

    data: bytes
    name: str


Source = str | Path | bytes | NamedBytes | Image.Image


def source_label(source: Source) -> str:
    """How ``source`` is named in messages and results."""
    if isinstance(source, str | Path):
        return os.fspath(source)
    if isinstance(source, NamedBytes):
        return source.name
    return "<bytes>" if isinstance(source, bytes) else "<image>"


def source_bytes(source: str | Path | bytes | NamedBytes) -> NamedBytes:
    """The bytes of ``source`` (a file is read), named as :func:`source_label` names it."""
    if isinstance(source, NamedBytes):
        return source
    if isinstance(source, bytes):
        return NamedBytes(source, "<bytes>")
    return NamedBytes(read_file(Path(source)), os.fspath(source))


def decode_for_faces(source: Source, settings: Settings, *, full: bool = False) -> Decoded:
    """``source`` decoded upright in RGB; reduced to ``face_decode_side`` unless ``full``."""
    if isinstance(source, Image.Image):
        rgb = to_rgb(source)
        return Decoded(rgb, rgb.width, rgb.height, "")
    named = source_bytes(source)
    return decode(
        named.data,
        named.name,
        min_side=None if full else settings.face_decode_side,
        max_pixels=settings.max_image_pixels,
        gate=decode_gate(settings),
    )


def find_faces(
    decoded: Decoded,
    settings: Settings,
    *,
    detector: Detector | None = None,
    landmarks: LandmarkCount = 5,
    crop: bool = False,
    embeddings: bool = True,
    timings: StageTimes | None = None,
) -> list[Face]:
    """The faces of a decoded image in the original image's pixels (best score first)."""
    chosen: Detector = detector or settings.face_detector
    min_face, max_side = _detect_limits(decoded, settings, chosen)
    faces = analyze(
        decoded.image,
        detector=chosen,
        landmarks=landmarks,
        embeddings=embeddings,
        encoder=Encoder.from_settings(settings),
        crop=crop,
        min_face=min_face,
        max_side=max_side,
        timings=timings,
    )
    scale = _decoded_scale(decoded)
    return [_rescale(f, scale, settings.face_min_quality) for f in faces]


def detector_input(decoded: Decoded, settings: Settings) -> Image.Image:
    """The resized copy of ``decoded`` that :func:`find_faces` runs the detector on under
    ``settings`` (benchmarks give another detector these very pixels): HOG's copy, or the
    top level of the CNN's pyramid."""
    chosen = settings.face_detector
    min_face, max_side = _detect_limits(decoded, settings, chosen)
    image = decoded.image
    if chosen == "hog":
        return detection_copy(image, min_face=min_face, max_side=max_side)[0]
    levels = plan_levels(image.width, image.height, min_face=min_face, max_side=max_side)
    if not levels:
        return image
    return image.resize((levels[0].width, levels[0].height), Image.Resampling.BILINEAR)


def _decoded_scale(decoded: Decoded) -> float:
    """Original pixels per decoded pixel (above 1 after a reduced decode)."""
    return decoded.width / decoded.image.width if decoded.image.width else 1.0


def _detect_limits(decoded: Decoded, settings: Settings, detector: Detector) -> tuple[int, int]:
    """(min_face, max_side) for ``detector`` on ``decoded``, in the decoded image's pixels."""
    min_face = max(1, round(settings.face_min_size / _decoded_scale(decoded)))
    return min_face, detect_side(
        detector, settings.face_detect_max_side, settings.face_cnn_max_side
    )


def _rescale(face: Face, scale: float, min_quality: float) -> Face:
    """``face`` with coordinates multiplied by ``scale`` and the usable verdict re-taken."""
    flags = [f for f in face.flags if f != "low_quality"]
    if face.quality < min_quality:
        flags.append("low_quality")
    usable = "small" not in flags and "low_quality" not in flags
    if abs(scale - 1.0) < 1e-6:
        return dataclasses.replace(face, flags=flags, usable=usable)
    left, top, right, bottom = face.box
    return dataclasses.replace(
        face,
        box=(round(left * scale), round(top * scale), round(right * scale), round(bottom * scale)),
        landmarks=[(x * scale, y * scale) for x, y in face.landmarks],
        flags=flags,
        usable=usable,
    )
