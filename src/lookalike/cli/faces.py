"""``lookalike faces ...``: detection and 1:1 verification from the command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import click

from lookalike.decode import decode, read_file
from lookalike.errors import BadInput, LookalikeError
from lookalike.faces import DEFAULT_THRESHOLD, Face, analyze, face_distance
from lookalike.faces.config import Detector, LandmarkCount
from lookalike.settings import get_settings


def _faces_of(
    path: Path, *, embeddings: bool, detector: str, landmarks: int, crop: bool
) -> list[Face]:
    decoded = decode(
        read_file(path), str(path), min_side=None, max_pixels=get_settings().max_image_pixels
    )
    return analyze(
        decoded.image,
        detector=cast(Detector, detector),
        landmarks=cast(LandmarkCount, landmarks),
        embeddings=embeddings,
        crop=crop,
    )


def face_json(face: Face, *, embedding: bool) -> dict[str, Any]:
    """The JSON form of one face (``embedding`` adds the 128 floats)."""
    out: dict[str, Any] = {
        "box": list(face.box),
        "score": round(face.score, 4),
        "quality": round(face.quality, 4),
        "usable": face.usable,
        "flags": face.flags,
        "landmarks": [[round(x, 1), round(y, 1)] for x, y in face.landmarks],
    }
    if embedding and face.embedding is not None:
        out["embedding"] = [round(float(v), 6) for v in face.embedding]
    return out


detector_option = click.option(
    "--detector", type=click.Choice(["hog", "cnn"]), default="hog", show_default=True
)
crop_option = click.option("--crop", is_flag=True, help="Images are face crops: no detector.")


@click.group()
def faces() -> None:
    """Find, compare and recognise faces."""


@faces.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image, per line.")
@click.option("--embeddings", is_flag=True, help="Include the 128-d embeddings.")
@click.option("--landmarks", type=click.Choice(["5", "68"]), default="5", show_default=True)
@detector_option
@crop_option
def detect(
    images: Sequence[Path],
    as_json: bool,
    embeddings: bool,
    landmarks: str,
    detector: str,
    crop: bool,
) -> None:
    """Detect the faces in IMAGES: boxes, scores, quality, landmarks."""
    failures = 0
    for path in images:
        try:
            found = _faces_of(
                path, embeddings=embeddings, detector=detector, landmarks=int(landmarks), crop=crop
            )
        except LookalikeError as exc:
            failures += 1
            click.echo(f"lookalike: error: {exc.message}", err=True)
            if as_json:
                click.echo(json.dumps({"path": str(path), "error": exc.message, "faces": []}))
            continue
        if as_json:
            rows = [face_json(f, embedding=embeddings) for f in found]
            click.echo(json.dumps({"path": str(path), "faces": rows}))
        else:
            click.echo(f"{path}: {len(found)} face(s)")
            for f in found:
                note = "" if f.usable else f"  (not usable: {', '.join(f.flags)})"
                click.echo(f"  box {list(f.box)} score {f.score:.2f} quality {f.quality:.2f}{note}")
    if failures == len(images):
        sys.exit(1)


def _main_face(path: Path, *, detector: str, crop: bool) -> Face:
    found = _faces_of(path, embeddings=True, detector=detector, landmarks=5, crop=crop)
    if not found:
        raise BadInput(f"{path}: no face found")
    # The largest usable face is the subject; fall back to the largest of all.
    pool = [f for f in found if f.usable] or found
    return max(pool, key=lambda f: f.width)


@faces.command()
@click.argument("image_a", type=click.Path(path_type=Path))
@click.argument("image_b", type=click.Path(path_type=Path))
@click.option("--threshold", type=float, default=DEFAULT_THRESHOLD, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@detector_option
@crop_option
def verify(
    image_a: Path, image_b: Path, threshold: float, as_json: bool, detector: str, crop: bool
) -> None:
    """Whether the main faces of IMAGE_A and IMAGE_B are the same person."""
    try:
        a = _main_face(image_a, detector=detector, crop=crop)
        b = _main_face(image_b, detector=detector, crop=crop)
    except LookalikeError as exc:
        click.echo(f"lookalike: error: {exc.message}", err=True)
        sys.exit(1)
    assert a.embedding is not None and b.embedding is not None
    distance = float(face_distance(a.embedding, b.embedding))
    result = {"distance": round(distance, 6), "same": distance <= threshold, "threshold": threshold}
    if as_json:
        click.echo(json.dumps(result))
    else:
        verdict = "same person" if result["same"] else "different people"
        click.echo(f"{verdict}: distance {distance:.4f} (threshold {threshold})")
