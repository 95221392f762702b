"""Search by a region of a photo: the indexed images that hold what is in a box.

Each image's region blob (``describe.regions``) becomes ``count`` rows of a float index
kept by its own :class:`~lookalike.index.manager.IndexManager` (as the face embeddings
are), under ids ``image_id * count + r``; a query's rows are searched there and the hits
merged to the best region per image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.backends import whiten_policy
from lookalike.describe.regions import Box, RegionDescriptor
from lookalike.errors import BadInput
from lookalike.index.manager import IndexManager
from lookalike.index.whitened import WhitenPolicy
from lookalike.settings import Settings
from lookalike.store.base import Catalog

# The box may stick out of the image by this fraction of its side (a box drawn to the
# edge by hand, or rounded outwards) before it is refused; it is clamped to the image.
BOX_SLACK = 0.02


def parse_box(text: str) -> Box:
    """``"l,t,r,b"`` (integers, pixels of the upright original) as a box; BadInput when
    malformed (four integers, left < right, top < bottom)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise BadInput(f"box must be four integers l,t,r,b, not {text!r}") from None
    if len(values) != 4:
        raise BadInput(f"box must be four integers l,t,r,b, not {text!r}")
    return check_box((values[0], values[1], values[2], values[3]))


def check_box(box: Sequence[int]) -> Box:
    """``box`` as a tuple when its sides are in order (left < right, top < bottom);
    BadInput otherwise (an empty or inverted box)."""
    if len(box) != 4:
        raise BadInput(f"box must have four values l,t,r,b, not {len(box)}")
    left, top, right, bottom = (int(v) for v in box)
    if left >= right or top >= bottom:
        raise BadInput(
            f"box {left},{top},{right},{bottom} has no area: left must be below right "
            "and top below bottom"
        )
    return left, top, right, bottom


def clamp_box(box: Box, width: int, height: int) -> Box:
    """``box`` clamped to a ``width`` x ``height`` image; BadInput when it lies outside the
    image by more than :data:`BOX_SLACK` of a side, or nothing of it is left."""
    left, top, right, bottom = check_box(box)
    dx, dy = BOX_SLACK * width, BOX_SLACK * height
    if left < -dx or top < -dy or right > width + dx or bottom > height + dy:
        raise BadInput(f"box {left},{top},{right},{bottom} is outside the {width}x{height} image")
    clamped = (max(0, left), max(0, top), min(width, right), min(height, bottom))
    if clamped[0] >= clamped[2] or clamped[1] >= clamped[3]:
        raise BadInput(f"box {left},{top},{right},{bottom} has no area inside the image")
    return clamped


def crop_box(image: Image.Image, box: Box, width: int, height: int) -> Image.Image:
    """The part of ``image`` (the upright original of ``width`` x ``height``, possibly
    decoded reduced) inside ``box``, given in the original's pixels."""
    sx, sy = image.width / width, image.height / height
    left, top, right, bottom = box
    scaled = (
        int(left * sx),
        int(top * sy),
        max(int(left * sx) + 1, round(right * sx)),
        max(int(top * sy) + 1, round(bottom * sy)),
    )
    return image.crop(scaled)


class RegionRows:
    """A :class:`~lookalike.index.base.VectorSource` over the catalog's region blobs: each
    image's blob is ``count`` float32 rows, ids ``image_id * count + r``."""

    def __init__(self, catalog: Catalog, regions: RegionDescriptor) -> None:
        self.catalog = catalog
        self.regions = regions

    def _expand(self, ids: np.ndarray, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image ids and blobs -> row ids int64 (n * count,) and float32 rows as raw bytes."""
        count = self.regions.count
        row_ids = (ids[:, None] * count + np.arange(count)).ravel()
        if len(ids) == 0:
            return row_ids, np.zeros((0, self.regions.dim * 4), dtype=np.uint8)
        rows = self.regions.rows(raw)
        return row_ids, rows.view(np.uint8).reshape(len(rows), -1)

    def generation(self, name: str) -> int:
        return self.catalog.generation(name)

    def vectors(self, name: str, version: str) -> tuple[np.ndarray, np.ndarray]:
        return self._expand(*self.catalog.vectors(name, version))

    def vector_ids(self, name: str, version: str) -> np.ndarray:
        ids = self.catalog.vector_ids(name, version)
        return (ids[:, None] * self.regions.count + np.arange(self.regions.count)).ravel()

    def vector_batches(
        self, name: str, version: str, size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        images = max(1, size // self.regions.count)
        for ids, raw in self.catalog.vector_batches(name, version, images):
            yield self._expand(ids, raw)

    def vectors_for(
        self, name: str, version: str, ids: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        wanted = np.asarray(ids, dtype=np.int64)
        images = np.unique(wanted // self.regions.count).tolist()
        row_ids, raw = self._expand(*self.catalog.vectors_for(name, version, images))
        keep = np.isin(row_ids, wanted)
        return row_ids[keep], raw[keep]


@dataclass(frozen=True)
class RegionMatch:
    """An image's best region for a query: its score and its number among the regions."""

    image_id: int
    score: float
    region: int


def region_whitening(settings: Settings, regions: RegionDescriptor) -> WhitenPolicy:
    """The region rows are whitened as their descriptor's are: fitted on region rows, from
    as many images as the cnn's (``whiten_min_images`` x 9 rows; a fit is seconds of an
    index run, not worth it for a small folder), but not augmented: an image's nine
    overlapping regions are each other's nearest rows."""
    policy = whiten_policy(settings)
    whitened = regions.host in policy.descriptors
    names = frozenset({regions.name}) if whitened else frozenset()
    rows = policy.min_images * regions.count
    return dataclasses.replace(policy, descriptors=names, dba_k=0, min_images=rows)


class RegionSearch:
    """The region index of one data folder, and searches in it."""

    def __init__(
        self, settings: Settings, catalog: Catalog, index_dir: Path, regions: RegionDescriptor
    ) -> None:
        self.regions = regions
        self.index = IndexManager(
            RegionRows(catalog, regions),
            index_dir,
            ann_threshold=settings.ann_threshold,
            nprobe=settings.ann_nprobe,
            poll_s=settings.catalog_poll_s if settings.catalog_url else 0.0,
            whiten=region_whitening(settings, regions),
            compact_threshold=settings.compact_threshold,
        )

    def search(self, rows: np.ndarray, k: int) -> list[RegionMatch]:
        """The ``k`` images whose best region is nearest to any of ``rows`` (query
        variants, float32 (m, dim)), best first."""
        index = self.index.get(self.regions)
        # Several regions of one image may lead: ask for enough rows to fill k images.
        scores, ids = index.search(np.asarray(rows, dtype=np.float32), k * self.regions.count)
        best: dict[int, RegionMatch] = {}
        for score, row_id in zip(scores.ravel().tolist(), ids.ravel().tolist(), strict=True):
            if row_id < 0:
                continue
            image_id, region = divmod(row_id, self.regions.count)
            if image_id not in best or score > best[image_id].score:
                best[image_id] = RegionMatch(image_id, score, region)
        ranked = sorted(best.values(), key=lambda m: (-m.score, m.image_id))
        return ranked[:k]
