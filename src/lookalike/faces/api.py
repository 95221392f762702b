"""The face functions on their own: detect, embed and verify images, no data folder needed.

Each takes an image (a path, bytes, :class:`~lookalike.faces.read.NamedBytes` or a PIL
image) and the :class:`~lookalike.settings.Settings` to work under, decodes it as indexing
does (:mod:`lookalike.faces.read`) and returns faces in the image's own pixels. The people
service (``Lookalike.people``) and the ``lookalike faces detect`` and ``faces verify``
commands are built on these.
"""

from __future__ import annotations

from dataclasses import dataclass

from lookalike.errors import BadInput
from lookalike.faces.config import Detector, LandmarkCount
from lookalike.faces.detect import Face
from lookalike.faces.embed import face_distance
from lookalike.faces.pipeline import main_face
from lookalike.faces.read import Source, decode_for_faces, find_faces, source_label
from lookalike.settings import Settings

__all__ = [
    "Verification",
    "choose_face",
    "compare",
    "detect",
    "embed",
    "main_embedded_face",
    "verify",
]


@dataclass
class Verification:
    """1:1: whether the main faces of two images are one person."""

    distance: float
    same: bool
    threshold: float
    face_a: Face
    face_b: Face


def detect(
    source: Source,
    settings: Settings,
    *,
    detector: Detector | None = None,
    landmarks: LandmarkCount = 5,
    crop: bool = False,
    embeddings: bool = False,
) -> list[Face]:
    """The faces of ``source`` with boxes, landmarks, quality and aligned chips, best
    detector score first; an empty list when there is none.

    ``detector`` defaults to the ``face_detector`` setting; ``crop``: the image is a face
    crop (no detector, exactly one face); ``embeddings`` also embeds every face.
    """
    decoded = decode_for_faces(source, settings)
    return find_faces(
        decoded,
        settings,
        detector=detector,
        landmarks=landmarks,
        crop=crop,
        embeddings=embeddings,
    )


def embed(
    source: Source, settings: Settings, *, detector: Detector | None = None, crop: bool = False
) -> list[Face]:
    """The faces of ``source`` (see :func:`detect`), each with its 128-d embedding."""
    return detect(source, settings, detector=detector, crop=crop, embeddings=True)


def choose_face(faces: list[Face], face: int | None, source: str, *, main: bool = False) -> Face:
    """The face numbered ``face`` (from 0, as :func:`detect` lists them), else the main
    face (``main``: the largest usable), else the only usable one.

    BadInput naming ``source`` when there is no face, the number is out of range, or
    (neither ``face`` nor ``main``) the image does not show exactly one usable face.
    """
    if face is not None:
        if not 0 <= face < len(faces):
            raise BadInput(
                f"{source}: {len(faces)} face(s) found; --face must be 0 to {len(faces) - 1}"
                if faces
                else f"{source}: no face found"
            )
        return faces[face]
    if not faces:
        raise BadInput(f"{source}: no face found")
    if main:
        chosen = main_face(faces)
        assert chosen is not None
        return chosen
    usable = [f for f in faces if f.usable]
    if len(usable) != 1:
        detail = f"{len(faces)} faces found, {len(usable)} usable"
        if len(usable) == 0:
            flags = sorted({flag for f in faces for flag in f.flags})
            detail += f" ({', '.join(flags)})" if flags else ""
        raise BadInput(
            f"{source}: {detail}; an example must show exactly one usable face "
            "(pick one by its number, from 0 as `faces detect` lists them: --face N, or the "
            "`face` field of the API)"
        )
    return usable[0]


def main_embedded_face(
    source: Source,
    settings: Settings,
    *,
    face: int | None = None,
    detector: Detector | None = None,
    crop: bool = False,
) -> Face:
    """The main face of ``source`` (or its face number ``face``), embedded; BadInput if the
    image has none."""
    found = embed(source, settings, detector=detector, crop=crop)
    return choose_face(found, face, source_label(source), main=True)


def verify(
    a: Source,
    b: Source,
    settings: Settings,
    *,
    threshold: float | None = None,
    detector: Detector | None = None,
    crop: bool = False,
) -> Verification:
    """Compare the main faces (largest usable) of two images: their distance and whether
    it is within ``threshold`` (default: the ``face_threshold`` setting). BadInput if
    either image has no face."""
    face_a = main_embedded_face(a, settings, detector=detector, crop=crop)
    face_b = main_embedded_face(b, settings, detector=detector, crop=crop)
    return compare(face_a, face_b, settings, threshold=threshold)


def compare(
    face_a: Face, face_b: Face, settings: Settings, *, threshold: float | None = None
) -> Verification:
    """Two embedded faces' distance, and whether it is within ``threshold`` (default: the
    ``face_threshold`` setting)."""
    limit = settings.face_threshold if threshold is None else threshold
    assert face_a.embedding is not None and face_b.embedding is not None
    distance = float(face_distance(face_a.embedding, face_b.embedding))
    return Verification(distance, distance <= limit, limit, face_a, face_b)
