"""Constants of the face models, and the names of the settings' defaults for its functions.

What a user may tune lives in :class:`lookalike.settings.Settings` (``face_*`` fields), the
one source of those values: the ``DEFAULT_*``, ``MIN_*`` and ``DETECT_MAX_SIDE`` names below
are read from its declared defaults, so that the building blocks (``detect_faces``,
``analyze``) default to what the settings do. Code working for a user passes the
:class:`~lookalike.settings.Settings` down instead (:mod:`lookalike.faces.api`).

The rest are properties of dlib's models, not settings. The measured ones say where from:
``bench/faces_lfw.py`` (verification on LFW crops) and ``bench/faces_speed.py`` (press
photos). The quality cut-offs (GOOD_FACE_SIZE, BLURRY_BELOW, PROFILE_YAW) are judgement
calls checked on those photos, not tuned.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from lookalike.settings import Settings

Detector = Literal["hog", "cnn"]
LandmarkCount = Literal[5, 68]
# How the chip is filled beyond the image: black ("zero"), or the border pixels repeated.
PadMode = Literal["zero", "edge"]


def _setting_default(field: str) -> Any:
    """The declared default of a ``Settings`` field (not the environment's value)."""
    return Settings.model_fields[field].default


def detect_side(detector: Detector, hog_side: int, cnn_side: int) -> int:
    """The longer side ``detector`` looks at most: ``face_detect_max_side`` for HOG (its
    copy of the photo), ``face_cnn_max_side`` for the CNN (the top of its pyramid)."""
    return hog_side if detector == "hog" else cnn_side


DEFAULT_DETECTOR: Final[Detector] = _setting_default("face_detector")
DEFAULT_LANDMARKS: Final[LandmarkCount] = 5
# Same person at or below this distance between embeddings (``face_threshold``).
DEFAULT_THRESHOLD: Final[float] = _setting_default("face_threshold")
# Mean distance under which an unknown face joins a cluster (``face_cluster_threshold``).
DEFAULT_CLUSTER_THRESHOLD: Final[float] = _setting_default("face_cluster_threshold")
# Narrower faces are kept, flagged "small" and not usable (``face_min_size``).
MIN_FACE_SIZE: Final[int] = _setting_default("face_min_size")
# Usable quality cut-off (``face_min_quality``).
MIN_QUALITY: Final[float] = _setting_default("face_min_quality")
# Longer side of the copy HOG detection runs on (``face_detect_max_side``).
DETECT_MAX_SIDE: Final[int] = _setting_default("face_detect_max_side")
# Longer side of the top of the CNN's pyramid at most (``face_cnn_max_side``).
CNN_MAX_SIDE: Final[int] = _setting_default("face_cnn_max_side")

# Smallest face (box width, pixels of the detector's input) both detectors find reliably:
# smaller images are enlarged so that a MIN_FACE_SIZE face reaches this width.
DETECTOR_MIN_FACE: Final[int] = 80
# Never enlarge an image more than this for detection (cost grows with the square).
MAX_UPSCALE: Final[float] = 2.0

# Detector scores below these are dropped. HOG scores are SVM margins: at dlib's own 0 the
# mission badge of astronaut.png passes (0.12), while every press-photo face scores >= 0.4.
# MMOD's are CNN confidences.
HOG_THRESHOLD: Final[float] = 0.3
CNN_THRESHOLD: Final[float] = 0.3

# At most this many faces are kept per photo, best detector score first: bounds the time a
# crowd takes (landmarks and an embedding per face, ~3 ms each) and what one photo stores.
MAX_FACES: Final[int] = 1000

# Aligned chip fed to the ResNet: the size and padding it was trained with.
CHIP_SIZE: Final[int] = 150
CHIP_PADDING: Final[float] = 0.25

# Landmarks are predicted on a crop around each box taken from the full-resolution image,
# reduced so that the face is at most this wide: more pixels add nothing to the 5-point fit.
LANDMARK_MAX_FACE: Final[int] = 320

# In --crop mode (the image is already a face crop) the landmark predictor gets the frame
# inset by this fraction of each side. Insets of 0.05 and 0.1 and edge padding of what the
# chip needs beyond the frame were measured on LFW: all within 0.2% (3 pairs) of each other,
# noise, so the simplest is kept: the whole frame, black beyond it (as dlib does).
CROP_INSET: Final[float] = 0.0
CROP_PAD: Final[PadMode] = "zero"

# Quality: faces at least this wide score 1 for size.
GOOD_FACE_SIZE: Final[int] = 80
# Sharpness (Laplacian / intensity variance of the chip's face area) is scored on a log scale
# from 0 at SHARP_LOW (a Gaussian blur of radius ~2 on a 90 px face) to 1 at SHARP_HIGH
# (a crisp press photo scores 0.06-0.7; the LFW crops, soft JPEGs, 0.014-0.10, median 0.03).
SHARP_LOW: Final[float] = 0.005
SHARP_HIGH: Final[float] = 0.08
# Faces whose sharpness score is below this are flagged "blurry" (~5% of the LFW crops).
BLURRY_BELOW: Final[float] = 0.35
# Estimated yaw (degrees) above which a face is flagged "profile".
PROFILE_YAW: Final[float] = 45.0
