"""Defaults of the face pipeline, in one place (candidates for ``Settings``).

The measured ones say where from: ``bench/faces_lfw.py`` (verification on LFW crops) and
``bench/faces_speed.py`` (press photos). The quality cut-offs (GOOD_FACE_SIZE, MIN_QUALITY,
BLURRY_BELOW, PROFILE_YAW) are judgement calls checked on those photos, not tuned.
"""

from __future__ import annotations

from typing import Final, Literal

Detector = Literal["hog", "cnn"]
LandmarkCount = Literal[5, 68]
# How the chip is filled beyond the image: black ("zero"), or the border pixels repeated.
PadMode = Literal["zero", "edge"]

DEFAULT_DETECTOR: Final[Detector] = "hog"
DEFAULT_LANDMARKS: Final[LandmarkCount] = 5

# Euclidean distance between two 128-d embeddings below which they are the same person.
# dlib's published value, confirmed on the LFW pairs (bench/faces_lfw.py): the thresholds
# that maximise accuracy are 0.60 (detector) to 0.61 (crop mode), 0.58-0.64 per CV fold;
# accuracy at 0.6 is 98.2% (detector) / 98.0% (crop), the best any threshold reaches 98.3%.
DEFAULT_THRESHOLD: Final[float] = 0.6

# Faces whose box is narrower than this (pixels of the original image) are kept, flagged
# "small" and not usable: the 150 px chip of a smaller face is mostly interpolation.
MIN_FACE_SIZE: Final[int] = 40

# Detection runs on a resized copy: its longer side is at most this many pixels (HOG).
# The cost of HOG grows with the pixel count (bench/faces_speed.py, shared 2-core machine:
# median 31 ms at 800, 49 at 1024, 76 at 1280, 169 at 2048); at 1280, faces of ~200 px and
# up are found in a 4000 px photo. All 62 press photos' faces are found at 1024 and above.
DETECT_MAX_SIDE: Final[int] = 1280
# The same for the CNN (MMOD) detector: dlib-bin runs it without BLAS, ~1.7 s per photo at
# 640 px (15x HOG's time at 1280 px). Same detection rate on the press photos.
CNN_MAX_SIDE: Final[int] = 640
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

# Quality: faces at least this wide score 1 for size; MIN_QUALITY is the usable cut-off.
GOOD_FACE_SIZE: Final[int] = 80
MIN_QUALITY: Final[float] = 0.25
# Sharpness (Laplacian / intensity variance of the chip's face area) is scored on a log scale
# from 0 at SHARP_LOW (a Gaussian blur of radius ~2 on a 90 px face) to 1 at SHARP_HIGH
# (a crisp press photo scores 0.06-0.7; the LFW crops, soft JPEGs, 0.014-0.10, median 0.03).
SHARP_LOW: Final[float] = 0.005
SHARP_HIGH: Final[float] = 0.08
# Faces whose sharpness score is below this are flagged "blurry" (~5% of the LFW crops).
BLURRY_BELOW: Final[float] = 0.35
# Estimated yaw (degrees) above which a face is flagged "profile".
PROFILE_YAW: Final[float] = 45.0
