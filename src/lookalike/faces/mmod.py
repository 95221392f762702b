"""Faces with dlib's MMOD CNN detector in ONNX Runtime, over an image pyramid built for speed.

The network (:mod:`lookalike.models.dlib_mmod`) scores every 80x80 window of its input, one
score per 8 pixels, so a face is found when some pyramid level shows it about 80 pixels
wide. The pyramid is chosen from the smallest face wanted:

- the top level is the image scaled so that a ``min_face``-pixel face becomes a window
  (enlarging small faces, shrinking big photos), but never past ``max_side`` pixels on its
  longer side (the cost, ~3,700 multiply-adds per input pixel, grows with the square);
- each level below is 0.7 of the one above, down to the last level that can still hold a
  window: smaller levels could only find faces larger than the image. dlib steps by 5/6;
  on the crowd set (bench/faces_detect.py) 0.7 finds the same faces of 40 px and more and
  0.96 of those of 20-40 px (5/6: 0.98) in half the time;
- all levels are packed side by side into one canvas (shelves, 10 black pixels apart, an
  11-pixel black border, as dlib pads its tiled pyramid) and scored in one call (in
  horizontal bands when the canvas is over 4 MP, for bounded memory: :func:`score_canvas`);
- each score above the threshold is mapped back to its level and to the image's pixels, and
  overlapping boxes are suppressed, best first, across levels by dlib's own overlap rule;
- a kept box is resized to where, between its level and the levels above and below, the
  face scores best (the window has one size per level).

Levels are resized with PIL's bilinear filter (a box filter first when shrinking a lot),
each from the level above.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

import numpy as np
from PIL import Image

from lookalike.errors import BadInput
from lookalike.faces import models

__all__ = ["Level", "detect", "plan_levels", "score_canvas", "suppress"]

Box = tuple[float, float, float, float]

# Each level is this fraction of the one above (dlib's pyramid_down<6> is 5/6; see above).
RATE: Final = 0.7
# Black pixels between packed levels and around the canvas (dlib's pyramid padding).
GAP: Final = 10
BORDER: Final = 11
# Canvases of more pixels are scored in bands of about this many (score_canvas): bounds
# the memory of the network's layers (~120 bytes per pixel) to ~0.5 GB.
BAND_PIXELS: Final = 4_000_000
# Levels whose shorter side is below this fraction of the window are skipped: a face there
# would be larger than the whole image.
_MIN_LEVEL: Final = 1.0


@dataclass(frozen=True)
class Level:
    """One pyramid level: its scale (level / image pixels), size and place in the canvas."""

    scale: float
    width: int
    height: int
    x: int
    y: int


@dataclass(frozen=True)
class _Net:
    """What detection needs to know of the network, read once from the model file."""

    window: tuple[int, int]
    stride: int
    offset: int
    reach: int
    nms_iou: float
    nms_covered: float


@cache
def _net() -> _Net:
    from lookalike.models import dlib_mmod

    net = dlib_mmod.load_net(dlib_mmod.weights_path())
    return _Net(net.window, net.stride, net.offset, net.reach, net.nms_iou, net.nms_covered)


def plan_levels(
    width: int, height: int, *, min_face: int, max_side: int, window: int = 80
) -> list[Level]:
    """The pyramid for a ``width`` x ``height`` image, packed in shelves (module docstring).

    Returns the levels, largest first, each with its offset in the canvas; empty when even
    the top level cannot hold a window. BadInput for a non-positive size.
    """
    if width <= 0 or height <= 0:
        raise BadInput(f"image has no pixels ({width}x{height})")
    if max_side <= 0 or min_face <= 0:
        raise BadInput(f"detection side and face size must be positive ({max_side}, {min_face})")
    scale = min(window / min_face, max_side / max(width, height))
    sizes: list[tuple[float, int, int]] = []
    while True:
        w, h = math.floor(width * scale), math.floor(height * scale)
        if min(w, h) < window * _MIN_LEVEL:
            break
        sizes.append((scale, w, h))
        scale *= RATE
    if not sizes:
        return []
    # Shelves as wide as the two largest levels side by side: ~80% of the canvas is image.
    shelf_width = sizes[0][1] + (GAP + sizes[1][1] if len(sizes) > 1 else 0)
    levels: list[Level] = []
    x = y = BORDER
    shelf_height = 0
    for s, w, h in sizes:
        if x > BORDER and x + w > BORDER + shelf_width:
            x, y = BORDER, y + shelf_height + GAP
            shelf_height = 0
        levels.append(Level(s, w, h, x, y))
        x += w + GAP
        shelf_height = max(shelf_height, h)
    return levels


def _canvas(image: Image.Image, levels: list[Level]) -> np.ndarray:
    """The levels of ``image`` drawn into one black canvas, (1, H, W, 3) uint8.

    The top level is resized from the image, each level below from the one above it (as
    dlib builds its pyramid): a 100 MP photo is read once, not once per level.
    """
    width = max(level.x + level.width for level in levels) + BORDER
    height = max(level.y + level.height for level in levels) + BORDER
    canvas = np.zeros((1, height, width, 3), dtype=np.uint8)
    source = image
    for level in levels:
        source = source.resize(
            (level.width, level.height), Image.Resampling.BILINEAR, reducing_gap=2.0
        )
        canvas[0, level.y : level.y + level.height, level.x : level.x + level.width] = np.asarray(
            source
        )
    return canvas


def _boxes(
    scores: np.ndarray, levels: list[Level], net: _Net, threshold: float
) -> list[tuple[Box, float, int]]:
    """Every window scoring above ``threshold``, in the image's pixels, with the index of
    the level it was found on."""
    rows, cols = np.nonzero(scores > threshold)
    found: list[tuple[Box, float, int]] = []
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        x = c * net.stride + net.offset
        y = r * net.stride + net.offset
        index = _nearest_level(levels, x, y)
        if index is None:
            continue
        level = levels[index]
        centre = ((x - level.x) / level.scale, (y - level.y) / level.scale)
        found.append((_window(centre, level.scale, net), float(scores[r, c]), index))
    return found


def _window(centre: tuple[float, float], scale: float, net: _Net) -> Box:
    """The detector window centred on ``centre`` of a level of ``scale``, in image pixels."""
    half_w, half_h = (net.window[0] - 1) / 2.0 / scale, (net.window[1] - 1) / 2.0 / scale
    cx, cy = centre
    return (cx - half_w, cy - half_h, cx + half_w + 1 / scale, cy + half_h + 1 / scale)


def _level_score(
    scores: np.ndarray, level: Level, centre: tuple[float, float], net: _Net
) -> float | None:
    """The best score of the 3x3 cells around where ``centre`` (image pixels) falls on
    ``level``; None if that is off the level."""
    x = centre[0] * level.scale + level.x
    y = centre[1] * level.scale + level.y
    if not (level.x <= x < level.x + level.width and level.y <= y < level.y + level.height):
        return None
    c = round((x - net.offset) / net.stride)
    r = round((y - net.offset) / net.stride)
    cells = scores[max(0, r - 1) : r + 2, max(0, c - 1) : c + 2]
    return float(cells.max()) if cells.size else None


def _refined(
    box: Box, score: float, index: int, scores: np.ndarray, levels: list[Level], net: _Net
) -> Box:
    """``box`` resized to the scale between pyramid levels where the face scores best.

    The window has one size per level, so a face between two levels gets a box up to
    ~18% off its size. The scores at the same place one level up and one down and the
    detection's own fit a parabola over the levels; its peak (within half a level) gives
    the box's size. Used as found when a neighbour level is missing or scores higher.
    """
    if not 0 < index < len(levels) - 1:
        return box
    pixel = 1 / levels[index].scale  # the window's last pixel, in image pixels
    centre = ((box[0] + box[2] - pixel) / 2, (box[1] + box[3] - pixel) / 2)
    up = _level_score(scores, levels[index - 1], centre, net)
    down = _level_score(scores, levels[index + 1], centre, net)
    if up is None or down is None:
        return box
    curvature = up - 2 * score + down
    if curvature >= 0:
        return box
    shift = min(0.5, max(-0.5, (up - down) / (2 * curvature)))
    return _window(centre, levels[index].scale * RATE**shift, net)


def _nearest_level(levels: list[Level], x: float, y: float) -> int | None:
    """The index of the level whose pixels hold (x, y) of the canvas; None in the gaps and
    the border."""
    for i, level in enumerate(levels):
        if level.x <= x < level.x + level.width and level.y <= y < level.y + level.height:
            return i
    return None


def _overlapping(box: Box, kept: np.ndarray, iou: float, covered: float) -> bool:
    """Whether ``box`` overlaps any of ``kept`` (rows of left, top, right, bottom) by dlib's
    test_box_overlap: the intersection over the box bounding both, or over either box
    alone, is above its threshold."""
    if len(kept) == 0:
        return False
    left, top, right, bottom = box
    iw = np.minimum(right, kept[:, 2]) - np.maximum(left, kept[:, 0])
    ih = np.minimum(bottom, kept[:, 3]) - np.maximum(top, kept[:, 1])
    inner = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    outer = (np.maximum(right, kept[:, 2]) - np.minimum(left, kept[:, 0])) * (
        np.maximum(bottom, kept[:, 3]) - np.minimum(top, kept[:, 1])
    )
    area = (right - left) * (bottom - top)
    areas = (kept[:, 2] - kept[:, 0]) * (kept[:, 3] - kept[:, 1])
    hit = (inner / outer > iou) | (inner / area > covered) | (inner / areas > covered)
    return bool(np.any(hit & (inner > 0)))


def suppress(found: list[tuple[Box, float]], iou: float, covered: float) -> list[tuple[Box, float]]:
    """Non-maximum suppression: best score first, a box is kept unless it overlaps one kept
    (a crowd's thousands of windows are checked against the kept boxes as one array)."""
    return [found[i] for i in _kept(found, iou, covered)]


def _kept(found: Sequence[tuple[Any, ...]], iou: float, covered: float) -> list[int]:
    """The indices :func:`suppress` keeps of ``found`` (box, score, ...), best first."""
    order = sorted(range(len(found)), key=lambda i: -found[i][1])
    kept: list[int] = []
    boxes = np.zeros((len(found), 4))
    for i in order:
        if not _overlapping(found[i][0], boxes[: len(kept)], iou, covered):
            boxes[len(kept)] = found[i][0]
            kept.append(i)
    return kept


def detect(
    image: Image.Image,
    *,
    min_face: int,
    max_side: int,
    threshold: float,
    session: models.LazyModel[Any],
) -> list[tuple[Box, float]]:
    """Face boxes in an RGB image, ``[((left, top, right, bottom), score), ...]`` in the
    image's pixels, best first (not clipped: a face cut by the border reaches beyond it).

    ``session``: the converted detector's ONNX Runtime session
    (:meth:`lookalike.faces.embed.Encoder.detector_session`).
    """
    net = _net()
    levels = plan_levels(
        image.width, image.height, min_face=min_face, max_side=max_side, window=min(net.window)
    )
    if not levels:
        return []
    canvas = _canvas(image, levels)
    with session.use() as runner:
        scores = score_canvas(canvas, runner, net)
    found = _boxes(scores, levels, net, threshold)
    return [
        (_refined(*found[i], scores, levels, net), found[i][1])
        for i in _kept(found, net.nms_iou, net.nms_covered)
    ]


def _score_cells(pixels: int, stride: int) -> int:
    """Score cells along a side of ``pixels``: each stride-2 5x5 convolution (unpadded) keeps
    (n - 5) // 2 + 1."""
    for _ in range(stride.bit_length() - 1):
        pixels = (pixels - 5) // 2 + 1
    return max(0, pixels)


def score_canvas(
    canvas: np.ndarray, runner: Any, net: _Net | None = None, band_pixels: int = BAND_PIXELS
) -> np.ndarray:
    """The score map (rows, cols) of a (1, H, W, 3) canvas, run by ``runner`` (an ONNX
    Runtime session) in horizontal bands of about ``band_pixels`` pixels.

    Each band is run with the canvas rows above and below it that its scores depend on (the
    network's reach around a window's centre, rounded up to the stride), so the map equals
    one run over the whole canvas while the layers (~120 bytes per canvas pixel) hold one
    band at a time.
    """
    net = net or _net()
    height, width = canvas.shape[1:3]
    stride = net.stride
    margin = -(-(net.reach + net.offset) // stride) * stride
    band = max(stride, (band_pixels // max(width, 1)) // stride * stride)
    if height <= band + 2 * margin:
        (scores,) = runner.run(["scores"], {"image": canvas})
        return np.asarray(scores[0, 0])
    rows = _score_cells(height, stride)
    out = np.full((rows, _score_cells(width, stride)), -np.inf, dtype=np.float32)
    for top in range(0, height, band):
        start = max(0, top - margin)
        (part,) = runner.run(["scores"], {"image": canvas[:, start : top + band + margin]})
        # Score row r of the part is centred on canvas row start + r * stride + offset.
        first = (top - start) // stride
        count = min(band // stride, part.shape[2] - first, rows - top // stride)
        if count > 0:
            out[top // stride : top // stride + count, : part.shape[3]] = part[
                0, 0, first : first + count
            ]
    return out
