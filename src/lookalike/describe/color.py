"""The ``color`` descriptor: a global HSV colour histogram (layout-blind, very fast).

Two images score high when they use the same colours in the same proportions, wherever
those colours are. Vectors are Hellinger-mapped (square roots of the normalised histogram),
so the inner product of two rows is the Bhattacharyya coefficient of their histograms.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from lookalike.decode import to_rgb
from lookalike.describe.base import Kind, register
from lookalike.settings import Settings

__all__ = ["ColorHistogram"]

_HUE_BINS = 16
_SAT_BINS = 4
_VAL_BINS = 4
_GREY_BINS = 8
_CHROMA_DIM = _HUE_BINS * _SAT_BINS * _VAL_BINS

# Below these (0..255 scale) hue is noise: a pixel is counted as grey, by its value only.
# Without this split, near-white and near-black pixels land in random hue bins and two
# photos of the same grey wall would share little.
_MIN_SAT = 32
_MIN_VAL = 32


class ColorHistogram:
    """HSV joint histogram: 16 hue x 4 saturation x 4 value chromatic bins + 8 grey bins."""

    name: str = "color"
    # v2: images other than JPEG are decoded box-reduced (decode.to_rgb), not whole.
    version: str = f"hsv-{_HUE_BINS}x{_SAT_BINS}x{_VAL_BINS}+g{_GREY_BINS}/v2"
    dim: int = _CHROMA_DIM + _GREY_BINS
    kind: Kind = "float"
    input_side: int = 128

    def __init__(self, settings: Settings | None = None) -> None:
        # Nothing to load: constructing is free.
        del settings

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """float32 (n, dim): one L2-normalised (Hellinger) histogram row per image."""
        out = np.empty((len(images), self.dim), np.float32)
        for i, image in enumerate(images):
            out[i] = self._histogram(image)
        return out

    def embed_query(self, image: Image.Image) -> np.ndarray:
        """float32 (1, dim): colours do not depend on orientation, so one row suffices."""
        return self.embed([image])

    def _histogram(self, image: Image.Image) -> np.ndarray:
        """The Hellinger-mapped histogram of one image, float32 (dim,)."""
        small = _shrink(image, self.input_side)
        hsv = np.asarray(small.convert("HSV"))
        h = hsv[..., 0].astype(np.intp)
        s = hsv[..., 1].astype(np.intp)
        v = hsv[..., 2].astype(np.intp)

        # Pillow's hue is 0..255 for 0..360 degrees. Shifting by half a bin centres a bin
        # on pure red, so reds just below and above 0 degrees fall in the same bin.
        hue_bin = ((h + 256 // _HUE_BINS // 2) & 255) * _HUE_BINS >> 8
        sat_bin = (s - _MIN_SAT).clip(0) * _SAT_BINS // (256 - _MIN_SAT)
        val_bin = (v - _MIN_VAL).clip(0) * _VAL_BINS // (256 - _MIN_VAL)
        chroma = (hue_bin * _SAT_BINS + sat_bin) * _VAL_BINS + val_bin
        grey = _CHROMA_DIM + v * _GREY_BINS // 256
        coloured = (s >= _MIN_SAT) & (v >= _MIN_VAL)
        index = np.where(coloured, chroma, grey)

        counts = np.bincount(index.ravel(), minlength=self.dim).astype(np.float32)
        # sqrt of an L1-normalised histogram already has unit L2 norm; renormalising only
        # absorbs float rounding.
        root = np.sqrt(counts / max(float(counts.sum()), 1.0))
        norm = float(np.linalg.norm(root))
        row: np.ndarray = root / norm if norm > 0 else root
        return row


def _shrink(image: Image.Image, side: int) -> Image.Image:
    """``image`` in RGB, scaled down (aspect kept) so its longer side is at most ``side``."""
    image = to_rgb(image)
    w, h = image.size
    scale = side / max(w, h)
    if scale >= 1.0:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # BOX averages whole source areas (what a histogram wants); reducing_gap first shrinks
    # by an integer factor in C, which keeps big inputs cheap.
    return image.resize(size, Image.Resampling.BOX, reducing_gap=2.0)


@register("color")
def _create(settings: Settings) -> ColorHistogram:
    """The registry's factory for ``color``."""
    return ColorHistogram(settings)
