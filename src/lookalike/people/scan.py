"""Faces as they are stored: the face-model version, records with chip thumbnails, scans.

Indexing finds an image's faces in its decoder threads (:func:`find_unembedded`), then
embeds the faces of many images in one batch (:func:`embed_scans`), and stores each image's
:class:`~lookalike.store.base.FaceScan` in the transaction that records the image.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from lookalike.decode import Decoded
from lookalike.errors import BadInput, NotFound
from lookalike.faces import Encoder, Face, embed_faces
from lookalike.faces.config import Detector
from lookalike.faces.read import find_faces
from lookalike.settings import Settings
from lookalike.store.base import FaceRecord, FaceScan

__all__ = [
    "FaceSpec",
    "chip_image",
    "embed_scans",
    "face_record",
    "face_version",
    "find_unembedded",
]

THUMB_QUALITY = 85


def face_version(detector: Detector) -> str:
    """The version of stored faces: embeddings of one version are never mixed with another."""
    return f"dlib-resnet128/{detector}/chip150/v1"


@dataclass(frozen=True)
class FaceSpec:
    """The face embeddings, as an index spec for IndexManager."""

    version: str
    name: str = "face"
    dim: int = 128
    kind: Literal["float", "binary"] = "float"


def find_unembedded(decoded: Decoded, settings: Settings) -> list[Face]:
    """The faces of a decoded image with their chips, not yet embedded (thread-safe:
    indexing runs this in its decoder threads)."""
    return find_faces(decoded, settings, embeddings=False)


def embed_scans(found: Sequence[Sequence[Face]], version: str, encoder: Encoder) -> list[FaceScan]:
    """Embed the faces of several images in one batch; returns what is stored with each."""
    pending = [f for faces in found for f in faces if f.embedding is None]
    if pending:
        embed_faces(pending, encoder=encoder)
    return [FaceScan(version, [face_record(f) for f in faces]) for faces in found]


def face_record(face: Face) -> FaceRecord:
    """What is stored of an embedded face (its chip as a JPEG thumbnail)."""
    if face.embedding is None or face.chip is None:
        raise BadInput("face has no embedding to store")
    return FaceRecord(
        box=face.box,
        score=face.score,
        quality=face.quality,
        usable=face.usable,
        flags=list(face.flags),
        landmarks=list(face.landmarks),
        embedding=face.embedding,
        thumb=_jpeg(face.chip),
    )


def chip_image(data: bytes | None, missing: str) -> Image.Image:
    """A stored chip thumbnail as an RGB image; NotFound(``missing``) if there is none."""
    if data is None:
        raise NotFound(missing)
    return Image.open(io.BytesIO(data)).convert("RGB")


def _jpeg(chip: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(chip).save(buf, "JPEG", quality=THUMB_QUALITY)
    return buf.getvalue()
