"""The face pipeline on one decoded image: detect (or take the crop) -> landmarks -> embed.

Decoding is the caller's (``lookalike.decode``); :func:`analyze` reports the time of the
stages it runs in a :class:`~lookalike.faces.detect.StageTimes`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from PIL import Image

from lookalike.faces import config
from lookalike.faces.config import Detector, LandmarkCount
from lookalike.faces.detect import Face, StageTimes, detect_faces
from lookalike.faces.embed import Encoder, crop_face, embed_faces

__all__ = ["analyze", "main_face"]


def analyze(
    image: Image.Image,
    *,
    detector: Detector = config.DEFAULT_DETECTOR,
    landmarks: LandmarkCount = config.DEFAULT_LANDMARKS,
    embeddings: bool = True,
    encoder: Encoder | None = None,
    crop: bool = False,
    jitter: int = 0,
    flip: bool = False,
    min_face: int = config.MIN_FACE_SIZE,
    max_side: int | None = None,
    timings: StageTimes | None = None,
) -> list[Face]:
    """The faces of ``image`` with landmarks, quality and (if ``embeddings``) embeddings.

    ``crop``: the image is already a face crop; no detector runs and the result is exactly
    one Face covering the frame. Otherwise the faces ``detector`` finds, best score first
    (an empty list when there is none). Unusable faces (small, low quality) are embedded
    too: the caller decides what to keep. ``encoder``: the converted models' cache folder
    and threads (default: the settings' defaults). ``jitter`` and ``flip``: see
    :func:`~lookalike.faces.embed.embed_chips` (on LFW neither changed accuracy beyond
    noise, for 10x and 2x the embedding time). ``max_side``: see
    :func:`~lookalike.faces.detect.detect_boxes`. ``timings``, if given, gets the milliseconds of
    the detect, landmarks and embed stages added to it.
    """
    times = timings if timings is not None else StageTimes()
    if crop:
        t0 = time.perf_counter()
        faces = [crop_face(image, landmarks=landmarks, min_face=min_face)]
        times.landmarks_ms += (time.perf_counter() - t0) * 1000.0
    else:
        faces = detect_faces(
            image,
            detector=detector,
            landmarks=landmarks,
            min_face=min_face,
            max_side=max_side,
            timings=times,
            encoder=encoder,
        )
    if embeddings and faces:
        t0 = time.perf_counter()
        embed_faces(faces, encoder=encoder, jitter=jitter, flip=flip)
        times.embed_ms += (time.perf_counter() - t0) * 1000.0
    return faces


def main_face(faces: Sequence[Face]) -> Face | None:
    """The face a photo is about: the largest usable one, else the largest; None if none."""
    pool = [f for f in faces if f.usable] or list(faces)
    return max(pool, key=lambda f: f.width, default=None)
