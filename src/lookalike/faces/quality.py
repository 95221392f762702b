"""How good a face is for recognition: size, sharpness and pose, from the chip and 5 landmarks.

Each part is a score in [0, 1] and the quality is their product, so one bad part (a tiny,
blurred or turned-away face) is enough to make a face unusable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lookalike.faces import config

__all__ = ["Quality", "assess", "estimate_yaw", "sharpness", "sharpness_score"]

# Depth of the nose base in front of the eye corners, in units of half the distance between
# the eye centres (anthropometric averages: ~20 mm against ~31 mm). Turns the nose's sideways
# shift into an angle; the yaw is an estimate, good to ~10 degrees, enough to spot profiles.
_NOSE_DEPTH = 0.65
# Luma weights (ITU-R BT.601).
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class Quality:
    """The quality of one face and what it was made of."""

    # Product of the size, sharpness and pose scores, in [0, 1].
    score: float
    # Laplacian / intensity variance ratio of the chip's face area (see :func:`sharpness`).
    sharpness: float
    # Estimated head yaw in degrees (0: frontal; the sign says which way).
    yaw: float
    # Reasons for caution: "small", "blurry", "profile", "low_quality".
    flags: tuple[str, ...]
    # Whether the face is worth recognising: not small and quality >= MIN_QUALITY.
    usable: bool


def sharpness(chip: np.ndarray, padding: float = config.CHIP_PADDING) -> float:
    """How much fine detail the face area of an aligned chip holds; returns a ratio >= 0.

    The variance of the (4-neighbour) Laplacian over the variance of the intensities, on
    the central part of the chip that the face fills (the chip's padding left out, so that
    background and black out-of-image borders do not count). Dividing by the intensity
    variance makes it independent of contrast and exposure; blur lowers it.
    """
    gray = chip.astype(np.float32)
    if gray.ndim == 3:
        gray = gray @ _LUMA
    size = gray.shape[0]
    margin = round(size * padding / (1.0 + 2.0 * padding))
    face = gray[margin : size - margin, margin : size - margin]
    if face.shape[0] < 3 or face.shape[1] < 3:
        return 0.0
    lap = (
        face[1:-1, :-2] + face[1:-1, 2:] + face[:-2, 1:-1] + face[2:, 1:-1] - 4.0 * face[1:-1, 1:-1]
    )
    # +1: a flat (featureless) chip must score 0, not divide by zero.
    return float(lap.var() / (face.var() + 1.0))


def sharpness_score(ratio: float) -> float:
    """A :func:`sharpness` ratio mapped to [0, 1]: 0 at ``SHARP_LOW``, 1 at ``SHARP_HIGH``.

    Log scale: each halving of the ratio (a little more blur) costs the same.
    """
    if ratio <= config.SHARP_LOW:
        return 0.0
    span = math.log(config.SHARP_HIGH / config.SHARP_LOW)
    return min(1.0, math.log(ratio / config.SHARP_LOW) / span)


def estimate_yaw(points5: Sequence[tuple[float, float]]) -> float:
    """Estimated yaw in degrees from dlib's 5 landmarks; 0 for a frontal face.

    The 5 points are the two corners of each eye (0-1 and 2-3) and the base of the nose (4).
    Turning the head shifts the nose along the eye line away from the eyes' midpoint, by
    about ``depth * tan(yaw)`` half eye-distances; the shift is measured along the eye line,
    so head roll does not matter.
    """
    if len(points5) < 5:
        return 0.0
    p = np.asarray(points5[:5], dtype=np.float64)
    eye_a = (p[0] + p[1]) / 2.0
    eye_b = (p[2] + p[3]) / 2.0
    axis = eye_a - eye_b
    span = float(np.hypot(axis[0], axis[1]))
    if span < 1e-6:
        return 0.0
    # Position of the nose along the eye line: -1 at eye_b, 0 in the middle, +1 at eye_a.
    along = 2.0 * float(np.dot(p[4] - eye_b, axis)) / (span * span) - 1.0
    return math.degrees(math.atan2(along, _NOSE_DEPTH))


def assess(
    face_width: float,
    chip: np.ndarray,
    points5: Sequence[tuple[float, float]],
    *,
    min_face: int = config.MIN_FACE_SIZE,
    min_quality: float = config.MIN_QUALITY,
) -> Quality:
    """The quality of a face ``face_width`` pixels wide (in the original image).

    Size scores ``width / GOOD_FACE_SIZE`` (capped at 1), sharpness
    :func:`sharpness_score`, pose ``cos(yaw)^2`` (1 frontal, 0.5 at 45 degrees). Returns
    their product with the flags and the usable verdict.
    """
    sharp = sharpness(chip)
    yaw = estimate_yaw(points5)
    size_score = min(1.0, max(0.0, face_width / config.GOOD_FACE_SIZE))
    sharp_score = sharpness_score(sharp)
    pose_score = math.cos(math.radians(yaw)) ** 2
    score = size_score * sharp_score * pose_score
    flags: list[str] = []
    if face_width < min_face:
        flags.append("small")
    if sharp_score < config.BLURRY_BELOW:
        flags.append("blurry")
    if abs(yaw) > config.PROFILE_YAW:
        flags.append("profile")
    if score < min_quality:
        flags.append("low_quality")
    usable = "small" not in flags and "low_quality" not in flags
    return Quality(score=score, sharpness=sharp, yaw=yaw, flags=tuple(flags), usable=usable)
