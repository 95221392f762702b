"""Faces: detection, landmarks, quality, 128-d embeddings (dlib's HOG/MMOD and ResNet models).

``api`` has the functions to use under the user's settings: ``api.detect``, ``api.embed`` and
``api.verify`` take an image file, bytes or PIL image and a ``Settings``, no data folder.
``analyze(image)`` runs the whole pipeline on a decoded image; the stages are in
``detect`` (boxes, landmarks, chips, quality), ``embed`` (embeddings, crop mode, distances)
and ``models`` (lazy, locked model loading). Model constants live in ``config``.
"""

from lookalike.faces.config import DEFAULT_THRESHOLD, MIN_FACE_SIZE
from lookalike.faces.detect import Face, StageTimes, detect_faces
from lookalike.faces.embed import (
    Encoder,
    crop_face,
    embed_chips,
    embed_crop,
    embed_crops,
    embed_faces,
    face_distance,
    pairwise_distances,
)
from lookalike.faces.pipeline import analyze, main_face

__all__ = [
    "DEFAULT_THRESHOLD",
    "MIN_FACE_SIZE",
    "Encoder",
    "Face",
    "StageTimes",
    "analyze",
    "crop_face",
    "detect_faces",
    "embed_chips",
    "embed_crop",
    "embed_crops",
    "embed_faces",
    "face_distance",
    "main_face",
    "pairwise_distances",
]
