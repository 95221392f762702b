"""Regional descriptors: a fixed set of cnn region vectors per image, for search by a region.

The regions are pooled from the cnn's feature map of the same network pass as the global
descriptor (indexing runs the network once for both): for each grid size g of ``grids``,
g x g boxes spread evenly over the map, each covering 2 / (g + 1) of either side (R-MAC's
~40-50% overlap), so that an object covering ~10% of the photo lies mostly inside a box of
the 3 x 3 grid. Every region is GeM-pooled, L2-normalised and stored as ``dim`` uint8 bytes
(the vector scaled so its largest value is 255: GeM of ReLU outputs is never negative, and
cosine ignores the scale): ``count * 1280`` bytes per image in the catalog.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from PIL import Image

from lookalike.describe.cnn import STRIDE, CnnDescriptor, input_size, l2_normalise, region_gems
from lookalike.errors import BadArgument

# Grid sizes measured in bench/regions.py (recall@1 of crops of 10-50% of a photo's area).
DEFAULT_GRIDS: tuple[int, ...] = (3,)
# The catalog name of the region vectors (the index file is named after it too).
NAME = "cnn-regions"

# (left, top, right, bottom) in some image's pixels.
Box = tuple[int, int, int, int]
# (y0, y1, x0, x1): half-open bounds of a feature-map region.
Cells = tuple[int, int, int, int]


def _starts(length: int, grid: int) -> tuple[int, list[int]]:
    """The side of a grid's boxes along an axis of ``length`` cells, and their starts."""
    size = max(1, round(2 * length / (grid + 1))) if grid > 1 else length
    if grid == 1:
        return size, [0]
    return size, [round(i * (length - size) / (grid - 1)) for i in range(grid)]


def region_cells(height: int, width: int, grids: Sequence[int]) -> list[Cells]:
    """The regions of an ``height`` x ``width`` feature map: ``sum(g * g)`` of them, grid by
    grid, row by row; returns ``(y0, y1, x0, x1)`` half-open bounds."""
    out: list[Cells] = []
    for g in grids:
        h_size, ys = _starts(height, g)
        w_size, xs = _starts(width, g)
        out += [(y, y + h_size, x, x + w_size) for y in ys for x in xs]
    return out


class RegionDescriptor:
    """``count`` cnn region vectors per image, stored as one uint8 blob (count * dim bytes).

    It rides on a :class:`CnnDescriptor` (its ``host``): ``embed_with_host`` gives the
    cnn's global rows and the region blobs from one network pass.
    """

    name: str = NAME
    host: str = "cnn"
    kind: Literal["float"] = "float"

    def __init__(self, cnn: CnnDescriptor, grids: Sequence[int] = DEFAULT_GRIDS) -> None:
        if not grids or any(not 1 <= g <= 6 for g in grids):
            raise BadArgument(f"region grids must be sizes from 1 to 6, not {list(grids)}")
        self.cnn = cnn
        self.grids = tuple(grids)
        self.dim = cnn.dim
        self.count = sum(g * g for g in self.grids)

    @property
    def version(self) -> str:
        """The cnn's version and the region layout: ``<cnn>/g3-gem3/u8/v1``."""
        layout = "+".join(str(g) for g in self.grids)
        return f"{self.cnn.version}/g{layout}-gem{self.cnn.gem_p:g}/u8/v1"

    @property
    def blob_bytes(self) -> int:
        """Catalog bytes per image."""
        return self.count * self.dim

    def pool(self, features: np.ndarray) -> np.ndarray:
        """Feature maps (n, C, h, w) -> uint8 blobs (n, count * C), see the module's doc."""
        n, c, h, w = features.shape
        rows = region_gems(features, self.cnn.gem_p, region_cells(h, w, self.grids))
        # Each row scaled so its largest value is 255 (its norm does not matter: cosine).
        top = np.maximum(rows.max(axis=2, keepdims=True), 1e-12)
        codes = np.rint(np.clip(rows / top, 0.0, 1.0) * 255.0).astype(np.uint8)
        blobs: np.ndarray = codes.reshape(n, self.count * c)
        return blobs

    def embed_with_host(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """One network pass: (the cnn's rows float32 (n, dim), region blobs uint8)."""
        rows = np.zeros((len(images), self.dim), dtype=np.float32)
        blobs = np.zeros((len(images), self.blob_bytes), dtype=np.uint8)
        for chunk, features in self.cnn.batches(images):
            rows[chunk] = self.cnn.pool(features)
            blobs[chunk] = self.pool(features)
        return rows, blobs

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """The region blobs alone, uint8 (n, count * dim)."""
        return self.embed_with_host(images)[1]

    def rows(self, blobs: np.ndarray) -> np.ndarray:
        """Blobs uint8 (n, count * dim) -> their region rows float32 (n * count, dim),
        L2-normalised, image by image."""
        codes = np.asarray(blobs, dtype=np.uint8).reshape(-1, self.dim)
        return l2_normalise(codes.astype(np.float32))

    def boxes(self, width: int, height: int) -> list[Box]:
        """The regions of an image of ``width`` x ``height`` (upright) as boxes in its pixels,
        in the order of its rows."""
        in_w, in_h = input_size(width, height, self.cnn.side)
        map_h, map_w = in_h // STRIDE, in_w // STRIDE
        return [
            (
                round(x0 * width / map_w),
                round(y0 * height / map_h),
                round(x1 * width / map_w),
                round(y1 * height / map_h),
            )
            for y0, y1, x0, x1 in region_cells(map_h, map_w, self.grids)
        ]
