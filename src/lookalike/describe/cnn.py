"""The default ``cnn`` descriptor: EfficientNet-Lite0 features, GeM-pooled, L2-normalised.

Images keep their aspect ratio: the shorter side is resized to :data:`DEFAULT_SIDE` and the
longer one to the nearest multiple of 32 (the network's stride), so that feature maps have
no partial cells and images of similar shape share one input size and run in one batch.
The head activations (1280 channels) are pooled with regional generalised-mean (GeM)
pooling: GeM over R-MAC-style square regions plus the whole map.
The choice of side and pooling is measured in ``bench/holidays.py``.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from lookalike.decode import to_rgb
from lookalike.describe.base import Kind, register
from lookalike.errors import BadArgument, BadInput
from lookalike.models import effnet, quantize
from lookalike.models.onnx_io import open_session
from lookalike.settings import Settings

if TYPE_CHECKING:
    import onnxruntime

# Defaults measured with bench/holidays.py (Holidays mAP, queries rotated 0/90/180/270; CPU
# time per image on one core): regional GeM (p=3, 3 levels) beats plain GeM by ~0.02 at
# every side; with it, 224 -> 0.836 (9.6 ms), 256 -> 0.843 (13.0 ms), 288 -> 0.847
# (16.6 ms), 320 -> 0.847 (20.8 ms), 384 -> 0.844 (30.9 ms). 256 is the cheapest side whose
# bootstrap 95% interval stays clear of 0.80 (lower end 0.809); larger sides cost more for
# differences within noise.
# Shorter image side fed to the network.
DEFAULT_SIDE = 256
# GeM exponent: 1 is average pooling, large values approach max pooling (p 2-4 score alike).
DEFAULT_GEM_P = 3.0
# Region levels of the regional GeM (0: global GeM only).
DEFAULT_LEVELS = 3
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
    image = to_rgb(image)
    width, height = input_size(image.width, image.height, side)
    out = np.empty((3, height, width), dtype=np.float32)
    _normalise_into(out, _resized(image, (width, height)))
    return out


def _resized(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``image`` (RGB) at ``size``; Pillow's bilinear filter widens with the scale factor,
    so downscaling is antialiased; reducing_gap first box-reduces very large photos, which
    is much faster."""
    if image.size == size:
        return image
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)


def _normalise_into(out: np.ndarray, image: Image.Image) -> None:
    """Write ``image`` (RGB) into ``out``, float32 (3, H, W), as ``x * scale - shift`` per
    channel: straight from the uint8 pixels, with no float (H, W, 3) temporaries."""
    pixels = np.asarray(image).transpose(2, 0, 1)
    np.multiply(pixels, _NORM_SCALE[:, None, None], out=out)
    out -= _NORM_SHIFT[:, None, None]


def gem_pool(features: np.ndarray, p: float) -> np.ndarray:
    """GeM-pool feature maps (N, C, h, w) into (N, C) float32: (mean over h, w of x^p)^(1/p).

    The features are non-negative (ReLU6 outputs); p = 1 is average pooling.
    """
    x = features.reshape(features.shape[0], features.shape[1], -1).astype(np.float32)
    return np.asarray(_power(_power(x, p).mean(axis=2), 1.0 / p), dtype=np.float32)


def region_gems(
    features: np.ndarray, p: float, cells: Sequence[tuple[int, int, int, int]]
) -> np.ndarray:
    """GeM of each ``(y0, y1, x0, x1)`` region of feature maps (N, C, h, w): un-normalised
    float32 (N, regions, C). x^p is computed once, channels last, so that each region's
    mean adds contiguous rows (~10x faster than reducing the strided last axes)."""
    powered = _power(np.ascontiguousarray(features.transpose(0, 2, 3, 1), dtype=np.float32), p)
    means = np.stack(
        [powered[:, y0:y1, x0:x1].mean(axis=(1, 2)) for y0, y1, x0, x1 in cells], axis=1
    )
    return np.asarray(_power(means, 1.0 / p), dtype=np.float32)


def _axis_starts(length: int, size: int) -> list[int]:
    # Enough regions along this axis that neighbours overlap by at least ~40% (as R-MAC
    # does), spread evenly from one edge to the other.
    if size >= length:
        return [0]
    count = 1 + math.ceil((length - size) / (0.6 * size))
    return [round(i * (length - size) / (count - 1)) for i in range(count)]


def region_grid(height: int, width: int, levels: int) -> list[tuple[int, int, int, int]]:
    """R-MAC-style square regions of an ``height`` x ``width`` feature map.

    Level 1 holds the largest squares (side = the shorter side), level l squares of side
    2 * shorter / (l + 1); each level tiles the map with ~40% overlap. Returns the regions as
    ``(y0, y1, x0, x1)`` half-open bounds, level 1 first; no levels gives no regions.
    """
    short = min(height, width)
    regions: list[tuple[int, int, int, int]] = []
    for level in range(1, levels + 1):
        size = short if level == 1 else max(1, round(2 * short / (level + 1)))
        for y in _axis_starts(height, size):
            for x in _axis_starts(width, size):
                regions.append((y, y + size, x, x + size))
    return regions


def regional_gem(features: np.ndarray, p: float, levels: int) -> np.ndarray:
    """Regional GeM of feature maps (N, C, h, w): un-normalised float32 (N, C) descriptors.

    Each region of :func:`region_grid` is GeM-pooled and L2-normalised, the regions are
    summed and normalised, and the normalised global GeM vector is added with equal weight.
    Regions let an object that fills only part of the photo count as much as the whole
    scene; the global term keeps the scene itself. ``levels == 0`` is plain GeM.
    """
    n, c, h, w = features.shape
    if levels <= 0:
        return gem_pool(features, p)
    # Every region's mean of x^p at once, as one matrix product with the regions' averaging
    # weights (all terms positive, so float32 sums stay accurate).
    powered = _power(features.astype(np.float32, copy=False), p).reshape(n * c, h * w)
    means = (powered @ _region_weights(h, w, levels)).reshape(n, c, -1)
    gems = _power(means.transpose(0, 2, 1), 1.0 / p)  # (n, regions + 1, c)
    gems /= np.maximum(np.linalg.norm(gems, axis=2, keepdims=True), 1e-12)
    combined: np.ndarray = l2_normalise(gems[:, :-1].sum(axis=1)) + gems[:, -1]
    return combined


@functools.lru_cache(maxsize=64)
def _region_weights(height: int, width: int, levels: int) -> np.ndarray:
    """float32 (height * width, regions + 1): column r averages region r of
    :func:`region_grid` over a flattened map; the last column averages the whole map."""
    boxes = [*region_grid(height, width, levels), (0, height, 0, width)]
    weights = np.zeros((len(boxes), height, width), dtype=np.float32)
    for r, (y0, y1, x0, x1) in enumerate(boxes):
        weights[r, y0:y1, x0:x1] = 1.0 / ((y1 - y0) * (x1 - x0))
    out = weights.reshape(len(boxes), height * width).T
    out.flags.writeable = False  # shared by every call through the cache
    return out


def _power(x: np.ndarray, p: float) -> np.ndarray:
    # np.power with a float exponent is slow; the common exponents have cheap exact forms.
    if p == 1.0:
        return x
    if p == 2.0:
        return np.asarray(x * x)
    if p == 3.0:
        return np.asarray(x * x * x)
    if p == 1.0 / 3.0:
        return np.asarray(np.cbrt(x))
    if p == 0.5:
        return np.asarray(np.sqrt(x))
    return np.asarray(np.power(x, p))


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero), float32."""
    v = vectors.astype(np.float32, copy=False)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.asarray(v / np.maximum(norms, 1e-12), dtype=np.float32)


class _LazySession:
    """The network, found (converted, quantized, checked) and opened on first use: listing
    descriptors loads nothing."""

    def __init__(self, cache_dir: Path, threads: int, precision: str) -> None:
        self._cache_dir = cache_dir
        self._threads = threads
        self._precision = precision
        self._model: tuple[Path, str] | None = None  # the file and its precision
        self._session: onnxruntime.InferenceSession | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the session exists yet."""
        return self._session is not None

    def network(self) -> str:
        """The network's name in descriptor versions: with ``-int8...`` only when the INT8
        model runs (it falls back to float when it fails its check)."""
        if self._precision == "fp32":
            return "effnet-lite0"  # known without making any model
        with self._lock:
            precision = self._find()[1]
        return "effnet-lite0" if precision == "fp32" else f"effnet-lite0-{quantize.SCHEME}"

    def get(self) -> onnxruntime.InferenceSession:
        """The session, converting and loading the model on the first call."""
        with self._lock:  # two threads embedding at once must not both load it
            if self._session is None:
                self._session = open_session(self._find()[0], self._threads)
            return self._session

    def _find(self) -> tuple[Path, str]:
        # Callers hold the lock.
        if self._model is None:
            self._model = effnet.model_for(self._cache_dir, self._precision)
        return self._model


@register("cnn")
class CnnDescriptor:
    """EfficientNet-Lite0 + regional GeM: a 1280-d float descriptor for visual similarity."""

    name: str = "cnn"
    kind: Kind = "float"
    dim: int = effnet.FEATURE_DIM

    def __init__(
        self,
        settings: Settings,
        side: int = DEFAULT_SIDE,
        gem_p: float = DEFAULT_GEM_P,
        levels: int = DEFAULT_LEVELS,
    ) -> None:
        if side < STRIDE or side % STRIDE:
            raise BadArgument(f"cnn input side must be a positive multiple of {STRIDE}, not {side}")
        if gem_p < 1.0:
            raise BadArgument(f"GeM exponent must be at least 1, not {gem_p}")
        if not 0 <= levels <= 5:
            raise BadArgument(f"region levels must be between 0 and 5, not {levels}")
        self.settings = settings
        self.side = side
        self.gem_p = gem_p
        self.levels = levels
        self.input_side = side
        self._pooling = f"rgem{gem_p:g}l{levels}" if levels else f"gem{gem_p:g}"
        self._model = _LazySession(
            settings.model_cache_dir, settings.inference_threads, settings.cnn_precision
        )

    @property
    def version(self) -> str:
        """Network, pooling and input side: ``effnet-lite0[-int8u8]/rgem3l3/s256/v2``.

        With ``cnn_precision="int8"`` reading it finds the INT8 model (quantizing and checking
        it once, a few seconds, on first use), because a model that fails its check is
        replaced by the float one, whose vectors must not be mixed with INT8 ones.
        """
        # v2: images other than JPEG are decoded box-reduced (decode.to_rgb), not whole.
        return f"{self._model.network()}/{self._pooling}/s{self.side}/v2"

    def with_pooling(self, gem_p: float, levels: int) -> CnnDescriptor:
        """A descriptor with another pooling sharing this one's (lazy) network session."""
        other = CnnDescriptor(self.settings, side=self.side, gem_p=gem_p, levels=levels)
        other._model = self._model
        return other

    def _batches(self, images: Sequence[Image.Image]) -> Iterator[tuple[list[int], np.ndarray]]:
        """Run the network: yields (image indices, their head activations (n, 1280, h, w)).

        Images that resize to the same input size share a batch (at most
        ``settings.batch_size`` images), so nothing is padded and no pooling needs masks.
        Inputs are prepared batch by batch, so memory stays bounded for long lists.
        """
        if not images:
            return
        session = self._model.get()
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(input_size(image.width, image.height, self.side), []).append(i)
        batch = max(1, self.settings.batch_size)
        for (width, height), indices in by_size.items():
            for start in range(0, len(indices), batch):
                chunk = indices[start : start + batch]
                stacked = np.empty((len(chunk), 3, height, width), dtype=np.float32)
                for row, i in zip(stacked, chunk, strict=True):
                    _normalise_into(row, _resized(to_rgb(images[i]), (width, height)))
                (features,) = session.run(["features"], {"image": stacked})
                yield chunk, features

    def batches(self, images: Sequence[Image.Image]) -> Iterator[tuple[list[int], np.ndarray]]:
        """The network's pass over ``images``, batch by batch, for outputs pooled from the
        same activations (``describe.regions``): yields (image indices, (n, 1280, h, w))."""
        return self._batches(images)

    def feature_maps(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """The head activations of each image, float32 (1280, h, w), in input order."""
        out: list[np.ndarray] = [np.empty(0)] * len(images)
        for chunk, features in self._batches(images):
            for i, fmap in zip(chunk, features, strict=True):
                out[i] = fmap
        return out

    def pool(self, features: np.ndarray) -> np.ndarray:
        """Feature maps (n, 1280, h, w) -> their L2-normalised float32 descriptors (n, 1280)."""
        return l2_normalise(regional_gem(features, self.gem_p, self.levels))

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """One L2-normalised float32 row (1280,) per image: shape (len(images), 1280)."""
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        for chunk, features in self._batches(images):
            out[chunk] = self.pool(features)
        return out

    def embed_query(self, image: Image.Image) -> np.ndarray:
        """Four rows for a query: the image rotated by 0, 90, 180 and 270 degrees.

        Photos are often stored sideways (a missing or ignored EXIF orientation); the search
        keeps each database image's best score over the rows, so a rotated copy still matches.
        Returns float32 (4, 1280), rows L2-normalised, the unrotated image first.
        """
        image = to_rgb(image)
        variants = [
            image,
            image.transpose(Image.Transpose.ROTATE_90),
            image.transpose(Image.Transpose.ROTATE_180),
            image.transpose(Image.Transpose.ROTATE_270),
        ]
        return self.embed(variants)
