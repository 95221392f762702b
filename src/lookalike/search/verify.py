"""Geometric verification of near-duplicate candidates: an edited copy of one photo, or
another shot of the same scene?

Two images that look alike to the cnn descriptor are either copies of one photo (resized,
recompressed, cropped, recoloured, blurred, captioned, turned by 90 degrees or mirrored) or
different shots of one scene (a burst seconds apart: the camera moved a little, people
moved). Copies map onto each other by a similarity transform (scale, rotation, shift) with
tiny residuals, and once aligned their pixels agree everywhere they overlap but under a
caption; shots of one scene have parallax and moved content. So a pair is checked by:

1. local features (ORB, or SIFT, on a grey copy whose longer side is ``verify_side``),
   matched with Lowe's ratio test;
2. a similarity transform fitted by RANSAC (OpenCV ``estimateAffinePartial2D``), again with
   one image mirrored when the plain one fails;
3. a photometric check: the second image warped onto the first by that transform, both
   smoothed, and the overlap compared tile by tile (zero-mean normalised correlation, blind
   to brightness and contrast): a copy agrees on nearly every textured tile.

Features are computed once per image per run (:class:`FeatureCache`, safe to share between
threads); an image whose file is gone, unreadable or no longer holds the bytes the catalog
knows cannot be verified.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum
from functools import partial
from pathlib import Path

import cv2
import faiss
import numpy as np

from lookalike.decode import DecodeGate, decode, decode_gate, read_file
from lookalike.errors import ImageError
from lookalike.index.faiss_index import single_threaded
from lookalike.settings import Settings
from lookalike.store.base import ImageRow

__all__ = [
    "FeatureCache",
    "Features",
    "Kind",
    "Verdict",
    "VerifyConfig",
    "feature_cache",
    "image_features",
    "match_points",
    "verify_pair",
]

# A caption band: rows from the top or bottom edge with at least BAND_SHARE of their pixels
# within BAND_TONE grey levels of the edge row's tone (gaps of BAND_GAP of the height, lines
# of text, bridged), over BAND_MIN_ROWS to BAND_MAX_ROWS of the height.
BAND_TONE = 10
BAND_SHARE = 0.4
BAND_GAP = 0.02
BAND_MIN_ROWS = 0.03
BAND_MAX_ROWS = 0.3
# A tile is textured when its pixels' standard deviation is at least this (grey levels).
TEXTURE = 2.0


# A copy resized to another aspect ratio is stretched by at most this factor (one side
# against the other); the affine fit is tried after the similarity, on pairs it did not
# find to be copies.
MAX_STRETCH = 2.0


class Kind(Enum):
    """What a verified pair is."""

    COPY = "copy"  # edited copies of one photo
    SCENE = "scene"  # not copies of each other: other shots of one scene, or just alike
    UNREADABLE = "unreadable"  # one of the two files could not be read


@dataclass(frozen=True)
class VerifyConfig:
    """Bounds and thresholds of the verification (defaults measured in bench/neardup.py)."""

    # Local features: "orb" or "sift".
    detector: str = "orb"
    # Longer side of the grey copy features are found on (pixels).
    side: int = 640
    # At most this many local features per image (the strongest).
    features: int = 1000
    # Lowe's ratio test: best match distance < ratio x second best.
    ratio: float = 0.8
    # RANSAC reprojection threshold, as a share of the longer side.
    ransac_share: float = 0.006
    # Fewer inliers than this: no transform between the two.
    min_inliers: int = 12
    # Share of the overlap's textured tiles that must agree for a copy.
    min_agreement: float = 0.95
    # A tile agrees when its zero-mean normalised correlation is at least this.
    tile_correlation: float = 0.9
    # Fewer compared tiles than this: too little overlap to call it a copy.
    min_tiles: int = 6
    # Gaussian smoothing (pixels of the grey copy) before tiles are compared: blur and JPEG
    # artefacts of one copy stop mattering, a moved camera still does.
    smoothing: float = 3.0


@dataclass(frozen=True)
class Features:
    """An image's local features and the small grey copy they were found on."""

    # float32 (n, 2): keypoint positions (x, y) in ``grey``.
    points: np.ndarray
    # uint8 (n, 128): SIFT descriptors.
    descriptors: np.ndarray
    # uint8 (h, w): the grey copy, longer side ``VerifyConfig.side`` at most.
    grey: np.ndarray
    # Rows of a caption band along the top and the bottom edge of ``grey`` (0: none).
    bands: tuple[int, int] = (0, 0)

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays (bytes)."""
        return self.points.nbytes + self.descriptors.nbytes + self.grey.nbytes


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    # RANSAC inliers of the best transform found (0 if none).
    inliers: int
    # Share of textured overlap tiles that agree once aligned (0 if no transform).
    agreement: float
    mirrored: bool = False
    # Feature matches (ratio test) the transform was fitted to.
    matches: int = 0


# OpenCV's detectors keep state between calls: one per thread.
_DETECTORS = threading.local()


def _detector(name: str, features: int) -> cv2.Feature2D:
    """This thread's detector of a kind and feature budget, made on first use."""
    made: dict[tuple[str, int], cv2.Feature2D] = _DETECTORS.__dict__.setdefault("made", {})
    key = (name, features)
    if key not in made:
        made[key] = (
            cv2.SIFT.create(nfeatures=features) if name == "sift" else cv2.ORB.create(features)
        )
    return made[key]


def grey_copy(
    data: bytes, source: str, side: int, *, max_pixels: int, gate: DecodeGate | None
) -> np.ndarray:
    """``data`` decoded upright, grey, its longer side ``side``: uint8 (h, w).

    Decoded reduced (never at full size for large images) through lookalike.decode.
    """
    decoded = decode(data, source, min_side=side // 2, max_pixels=max_pixels, gate=gate)
    grey = np.asarray(decoded.image.convert("L"))
    h, w = grey.shape
    # Every image at one size: a copy at half size (or a thumbnail) then shows the same
    # features at the same scale as its original.
    scale = side / max(h, w)
    if abs(scale - 1) > 0.01:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        mode = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        grey = cv2.resize(grey, size, interpolation=mode)
    return np.ascontiguousarray(grey)


def image_features(grey: np.ndarray, config: VerifyConfig) -> Features:
    """SIFT features of ``grey`` (at most ``config.features``, the strongest)."""
    keypoints, descriptors = _detector(config.detector, config.features).detectAndCompute(
        grey, None
    )
    bands = (_edge_band(grey), _edge_band(grey[::-1]))
    if descriptors is None or not keypoints:
        return Features(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), grey, bands)
    points = np.array([k.pt for k in keypoints], dtype=np.float32)
    return Features(points, np.clip(np.rint(descriptors), 0, 255).astype(np.uint8), grey, bands)


def mirrored(f: Features, config: VerifyConfig) -> Features:
    """The features of ``f``'s grey copy flipped left-right."""
    return image_features(np.ascontiguousarray(f.grey[:, ::-1]), config)


def match_points(a: Features, b: Features, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Points of ``a`` and ``b`` matched by Lowe's ratio test: two float32 (m, 2)."""
    if len(a.points) < 2 or len(b.points) < 2:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    if a.descriptors.shape[1] == 32:  # ORB: binary, searched by faiss (~4x cv2's matcher)
        with single_threaded():  # pairs are verified on several threads already
            distances, nearest = faiss.knn_hamming(a.descriptors, b.descriptors, 2)
        # The ratio test keeps a best match strictly nearer than the second: unique, so
        # the same whichever way a search breaks ties.
        ia = np.flatnonzero(distances[:, 0] < ratio * distances[:, 1])
        return a.points[ia], b.points[nearest[ia, 0]]
    da, db = a.descriptors.astype(np.float32), b.descriptors.astype(np.float32)
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(da, db, 2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < ratio * m[1].distance]
    ia = np.array([m.queryIdx for m in good], dtype=np.intp)
    ib = np.array([m.trainIdx for m in good], dtype=np.intp)
    return a.points[ia], b.points[ib]


def _transform(
    a: Features,
    matched: tuple[np.ndarray, np.ndarray],
    config: VerifyConfig,
    *,
    stretched: bool = False,
) -> tuple[np.ndarray | None, int, int]:
    """The similarity taking the other image's grey copy onto ``a``'s (2x3), fitted to the
    ``matched`` points (``a``'s, the other's), its inlier count and the count of matches.
    ``stretched``: an affine map instead, for a copy resized to another aspect ratio (None
    if it stretches more than MAX_STRETCH)."""
    pa, pb = matched
    if len(pa) < config.min_inliers:
        return None, 0, len(pa)
    threshold = config.ransac_share * max(a.grey.shape)
    fit = cv2.estimateAffine2D if stretched else cv2.estimateAffinePartial2D
    matrix, inliers = fit(
        pb,
        pa,
        method=cv2.RANSAC,
        ransacReprojThreshold=threshold,
        maxIters=2000,
        confidence=0.995,
    )
    if matrix is None or inliers is None:
        return None, 0, len(pa)
    if stretched:
        scales = np.linalg.svd(matrix[:, :2], compute_uv=False)
        if scales[1] <= 0 or scales[0] / scales[1] > MAX_STRETCH:
            return None, 0, len(pa)
    return matrix, int(inliers.sum()), len(pa)


def _edge_band(grey: np.ndarray) -> int:
    """Rows of a bar running down from the top edge of ``grey`` (0 if none): rows where at
    least BAND_SHARE of the pixels have the top row's tone, short gaps (text) bridged."""
    h = grey.shape[0]
    tone = int(np.median(grey[0]))
    share = (np.abs(grey.astype(np.int16) - tone) <= BAND_TONE).mean(axis=1)
    gap = max(1, round(BAND_GAP * h))
    ahead = np.lib.stride_tricks.sliding_window_view(np.pad(share, (0, gap - 1)), gap)
    ends = np.flatnonzero(ahead.max(axis=1) < BAND_SHARE)
    rows = int(ends[0]) if len(ends) else h
    return rows if BAND_MIN_ROWS * h <= rows <= BAND_MAX_ROWS * h else 0


def band_mask(f: Features) -> np.ndarray:
    """uint8 (h, w): 255 on the bars along the top and bottom edges of ``f.grey`` (a
    caption, a letterbox), 0 elsewhere."""
    h = f.grey.shape[0]
    top, bottom = f.bands
    mask = np.zeros(f.grey.shape, np.uint8)
    mask[:top] = 255
    mask[h - bottom :] = 255
    return mask


def tile_correlations(
    a: Features, b: Features, matrix: np.ndarray, sigma: float = 2.0
) -> np.ndarray:
    """float32 (t,): zero-mean normalised correlation of ``a``'s textured tiles with ``b``
    warped by ``matrix`` onto ``a`` (their grey copies), both smoothed (Gaussian ``sigma``,
    pixels); tiles not wholly covered by ``b``, or in a caption band of either image, are
    left out."""
    h, w = a.grey.shape
    warped = cv2.warpAffine(b.grey, matrix, (w, h), flags=cv2.INTER_AREA, borderValue=0)
    inside = cv2.warpAffine(np.full(b.grey.shape, 255, np.uint8), matrix, (w, h), borderValue=0)
    away = band_mask(a)
    if any(b.bands):  # an empty mask warps to an empty one
        away |= cv2.warpAffine(band_mask(b), matrix, (w, h), borderValue=0)
    fa = cv2.GaussianBlur(a.grey.astype(np.float32), (0, 0), sigma)
    fb = cv2.GaussianBlur(warped.astype(np.float32), (0, 0), sigma)
    tile = max(8, max(h, w) // 12)
    th, tw = h // tile, w // tile

    def tiles(x: np.ndarray) -> np.ndarray:
        return (
            x[: th * tile, : tw * tile]
            .reshape(th, tile, tw, tile)
            .swapaxes(1, 2)
            .reshape(th * tw, tile * tile)
        )

    ta, tb = tiles(fa), tiles(fb)
    keep = (tiles(inside).min(axis=1) == 255) & (tiles(away).max(axis=1) == 0)
    ta = ta - ta.mean(axis=1, keepdims=True)
    tb = tb - tb.mean(axis=1, keepdims=True)
    na, nb = np.sqrt((ta * ta).sum(axis=1)), np.sqrt((tb * tb).sum(axis=1))
    keep &= na >= TEXTURE * tile  # flat in the first image: says nothing
    dot = (ta * tb).sum(axis=1)
    out: np.ndarray = (dot[keep] / np.maximum(na[keep] * nb[keep], 1e-6)).astype(np.float32)
    return out


def agreement(a: Features, b: Features, matrix: np.ndarray, config: VerifyConfig) -> float:
    """Share of compared tiles that agree once aligned (:func:`tile_correlations`), in the
    frame of whichever image the other covers more of; 0 with too few tiles to say."""
    inverse = cv2.invertAffineTransform(matrix)
    corr = max(
        (
            tile_correlations(a, b, matrix, config.smoothing),
            tile_correlations(b, a, inverse, config.smoothing),
        ),
        key=len,
    )
    if len(corr) < config.min_tiles:
        return 0.0
    return float((corr >= config.tile_correlation).mean())


def verify_pair(
    a: Features, b: Features, b_mirrored: Callable[[], Features], config: VerifyConfig
) -> Verdict:
    """Whether ``a`` and ``b`` are copies of one photo (``b_mirrored``: b's mirrored
    features, asked for only when the plain pair is not a copy)."""
    best = Verdict(Kind.SCENE, 0, 0.0)
    matched: dict[bool, tuple[np.ndarray, np.ndarray]] = {}  # by flip: both fits use them
    for flip, stretched in ((False, False), (True, False), (False, True), (True, True)):
        other = b_mirrored() if flip else b
        if flip not in matched:
            matched[flip] = match_points(a, other, config.ratio)
        matrix, inliers, matches = _transform(a, matched[flip], config, stretched=stretched)
        if matrix is None or inliers < config.min_inliers:
            continue
        share = agreement(a, other, matrix, config)
        verdict = Verdict(Kind.SCENE, inliers, share, flip, matches)
        if share >= config.min_agreement:
            return replace(verdict, kind=Kind.COPY)
        if (share, inliers) > (best.agreement, best.inliers):
            best = verdict
    return best


# Images whose features one run holds at most (~350 kB each at the default side of 640 px:
# the grey copy and 1,000 ORB features, so ~360 MB): beyond it the least recently used are
# dropped, and computed again if a later pair needs them.
HELD_IMAGES = 1024


class FeatureCache:
    """Features of catalog images, each computed once per run while held.

    ``release(image_id)`` drops an image's entry once the caller is done with it; at most
    ``capacity`` images are held (the least recently used are dropped first), so memory
    stays bounded however the pairs to verify are spread over the catalog. An image none of
    whose paths can be read (gone, unreadable, not decodable, or bytes other than the
    catalog's) is remembered as unreadable.
    """

    def __init__(
        self,
        config: VerifyConfig,
        *,
        max_pixels: int,
        gate: DecodeGate | None = None,
        workers: int = 1,
        capacity: int = HELD_IMAGES,
    ) -> None:
        self.config = config
        self.workers = max(1, workers)  # threads verifying pairs with these features
        self.capacity = max(1, capacity)
        self.max_pixels = max_pixels
        self.gate = gate
        self._plain: dict[int, Features | None] = {}
        self._flipped: dict[int, Features | None] = {}
        self._lock = threading.Lock()  # guards the dicts, the count and the pending locks
        self._pending: dict[tuple[bool, int], threading.Lock] = {}
        self.computed = 0

    def get(self, row: ImageRow) -> Features | None:
        """The features of ``row`` (None when none of its files can be read)."""
        return self._once(self._plain, False, row.id, partial(self._features, row))

    def flipped(self, row: ImageRow, plain: Features) -> Features:
        """The features of ``row`` mirrored left-right."""
        found = self._once(self._flipped, True, row.id, partial(mirrored, plain, self.config))
        assert found is not None  # mirrored() always gives features
        return found

    def _once(
        self,
        store: dict[int, Features | None],
        flip: bool,
        image_id: int,
        compute: Callable[[], Features | None],
    ) -> Features | None:
        """``store[image_id]``, computed by one thread while others asking wait for it."""
        with self._lock:
            if image_id in store:
                return self._touch(store, image_id)
            pending = self._pending.setdefault((flip, image_id), threading.Lock())
        with pending:
            with self._lock:
                if image_id in store:
                    return self._touch(store, image_id)
            found = compute()
            with self._lock:
                store[image_id] = found
                self._pending.pop((flip, image_id), None)
                self.computed += not flip
                while len(store) > self.capacity:  # the least recently used first
                    del store[next(iter(store))]
            return found

    @staticmethod
    def _touch(store: dict[int, Features | None], image_id: int) -> Features | None:
        """``store[image_id]``, moved to the end: the most recently used. Callers hold the
        lock."""
        found = store[image_id] = store.pop(image_id)
        return found

    def _features(self, row: ImageRow) -> Features | None:
        grey = self._grey(row)
        return None if grey is None else image_features(grey, self.config)

    @property
    def held(self) -> int:
        """Images whose features are held now."""
        return len(self._plain)

    def release(self, image_id: int) -> None:
        with self._lock:
            self._plain.pop(image_id, None)
            self._flipped.pop(image_id, None)

    def _grey(self, row: ImageRow) -> np.ndarray | None:
        for path in row.paths:
            try:
                data = read_file(Path(path))
                if hashlib.sha256(data).hexdigest() != row.sha256:
                    continue  # changed since it was indexed: not this image any more
                return grey_copy(
                    data, path, self.config.side, max_pixels=self.max_pixels, gate=self.gate
                )
            except ImageError:
                continue
        return None


def feature_cache(settings: Settings) -> FeatureCache:
    """A fresh cache (one run's) with the settings' bounds and decode limits."""
    config = VerifyConfig(
        side=settings.duplicate_verify_side, features=settings.duplicate_verify_features
    )
    return FeatureCache(
        config,
        max_pixels=settings.max_image_pixels,
        gate=decode_gate(settings).queueing(),
        workers=settings.decode_threads,
    )
