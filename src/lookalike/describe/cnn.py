"""The default ``cnn`` descriptor: EfficientNet-Lite0 features, GeM-pooled, L2-normalised.

Images keep their aspect ratio: the shorter side is resized to :data:`DEFAULT_SIDE` and the
longer one to the nearest multiple of 32 (the network's stride), so that feature maps have
no partial cells and images of similar shape share one input size and run in one batch.
The head activations (1280 channels) are pooled with generalised mean (GeM) pooling.
The choice of side and pooling is measured in ``bench/holidays.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from lookalike.describe.base import Kind, register
from lookalike.errors import BadInput
from lookalike.models import effnet
from lookalike.settings import Settings

if TYPE_CHECKING:
    import onnxruntime

# Shorter image side fed to the network; see bench/holidays.py for the measurements.
DEFAULT_SIDE = 384
# GeM exponent: 1 is average pooling, large values approach max pooling.
DEFAULT_GEM_P = 3.0
# The network's total stride: input sides are multiples of it.
STRIDE = 32
# Very long panoramas are shrunk so the longer side stays within this many shorter sides;
# beyond it the work grows without adding much to a global descriptor.
MAX_ASPECT = 2.5

# (x / 255 - mean) / std as one multiply-add per pixel, per RGB channel.
_NORM_SCALE = (1.0 / (255.0 * np.array(effnet.STD))).astype(np.float32)
_NORM_SHIFT = (np.array(effnet.MEAN) / np.array(effnet.STD)).astype(np.float32)


def input_size(width: int, height: int, side: int) -> tuple[int, int]:
    """The (width, height) an image of this size is resized to for the network.

    The shorter side becomes ``side``; the longer side keeps the aspect ratio, rounded to a
    multiple of :data:`STRIDE` and capped at ``MAX_ASPECT * side`` (then the shorter side
    shrinks instead). Returns sides that are positive multiples of :data:`STRIDE`.
    """
    if width <= 0 or height <= 0:
        raise BadInput(f"image has no pixels ({width}x{height})")
    short, long_ = (width, height) if width <= height else (height, width)
    scale = side / short
    max_long = MAX_ASPECT * side
    if long_ * scale > max_long:
        scale = max_long / long_
    new_short = max(STRIDE, round(short * scale / STRIDE) * STRIDE)
    new_long = max(STRIDE, round(long_ * scale / STRIDE) * STRIDE)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def preprocess(image: Image.Image, side: int) -> np.ndarray:
    """The network input for one image: float32 (3, H, W), normalised as the weights expect."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    size = input_size(image.width, image.height, side)
    if image.size != size:
        # Pillow's bilinear filter widens with the scale factor, so downscaling is
        # antialiased; reducing_gap first box-reduces very large photos, which is much faster.
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels * _NORM_SCALE - _NORM_SHIFT
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def gem_pool(features: np.ndarray, p: float) -> np.ndarray:
    """GeM-pool feature maps (N, C, h, w) into (N, C) float32: (mean over h, w of x^p)^(1/p).

    The features are non-negative (ReLU6 outputs); p = 1 is average pooling.
    """
    x = features.reshape(features.shape[0], features.shape[1], -1).astype(np.float32)
    if p == 1.0:
        return x.mean(axis=2)
    pooled = np.power(x, p).mean(axis=2)
    return np.power(pooled, 1.0 / p).astype(np.float32)


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero), float32."""
    v = vectors.astype(np.float32, copy=False)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return (v / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


@register("cnn")
class CnnDescriptor:
    """EfficientNet-Lite0 + GeM: a 1280-d float descriptor for visual similarity search."""

    name: str = "cnn"
    kind: Kind = "float"
    dim: int = effnet.FEATURE_DIM

    def __init__(
        self, settings: Settings, side: int = DEFAULT_SIDE, gem_p: float = DEFAULT_GEM_P
    ) -> None:
        if side < STRIDE or side % STRIDE:
            raise BadInput(f"cnn input side must be a positive multiple of {STRIDE}, not {side}")
        if gem_p < 1.0:
            raise BadInput(f"GeM exponent must be at least 1, not {gem_p}")
        self.settings = settings
        self.side = side
        self.gem_p = gem_p
        self.input_side = side
        self.version = f"effnet-lite0/gem{gem_p:g}/s{side}/v1"
        self._session: onnxruntime.InferenceSession | None = None
        self._lock = threading.Lock()

    def _get_session(self) -> onnxruntime.InferenceSession:
        # Created on first use, so listing or configuring descriptors never loads the model.
        with self._lock:
            if self._session is None:
                self._session = effnet.create_session(
                    self.settings.model_cache_dir, self.settings.inference_threads
                )
            return self._session

    def feature_maps(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """The head activations for each image: float32 (1280, h, w), in input order.

        Images that resize to the same input size share a batch (at most
        ``settings.batch_size`` images), so nothing is padded and no pooling needs masks.
        """
        session = self._get_session()
        inputs = [preprocess(image, self.side) for image in images]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, x in enumerate(inputs):
            by_shape.setdefault(x.shape, []).append(i)
        out: list[np.ndarray | None] = [None] * len(inputs)
        batch = max(1, self.settings.batch_size)
        for indices in by_shape.values():
            for start in range(0, len(indices), batch):
                chunk = indices[start : start + batch]
                stacked = np.stack([inputs[i] for i in chunk])
                (features,) = session.run(["features"], {"image": stacked})
                for i, fmap in zip(chunk, features, strict=True):
                    out[i] = fmap
        return [f for f in out if f is not None]

    def pool(self, fmap: np.ndarray) -> np.ndarray:
        """One feature map (1280, h, w) -> its un-normalised descriptor (1280,)."""
        return gem_pool(fmap[None], self.gem_p)[0]

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """One L2-normalised float32 row (1280,) per image: shape (len(images), 1280)."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        maps = self.feature_maps(images)
        return l2_normalise(np.stack([self.pool(f) for f in maps]))

    def embed_query(self, image: Image.Image) -> np.ndarray:
        """Four rows for a query: the image rotated by 0, 90, 180 and 270 degrees.

        Photos are often stored sideways (a missing or ignored EXIF orientation); the search
        keeps each database image's best score over the rows, so a rotated copy still matches.
        Returns float32 (4, 1280), rows L2-normalised, the unrotated image first.
        """
        if image.mode != "RGB":
            image = image.convert("RGB")
        variants = [
            image,
            image.transpose(Image.Transpose.ROTATE_90),
            image.transpose(Image.Transpose.ROTATE_180),
            image.transpose(Image.Transpose.ROTATE_270),
        ]
        return self.embed(variants)
