"""Contact sheets: PNGs of captioned thumbnails (a query and its results, or a plain grid)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from lookalike.decode import decode_file, to_rgb
from lookalike.errors import ImageError
from lookalike.files import atomic_write

__all__ = ["contact_sheet", "grid_sheet", "load_font", "load_thumbnail", "save_png_atomically"]

# Results per row: wide enough to compare, narrow enough to view without scrolling.
MAX_COLUMNS = 5
_GAP = 10  # between tiles and around the sheet
_BORDER = 4  # highlight around the query tile
_BACKGROUND = (250, 250, 250)
_LETTERBOX = (228, 228, 228)
_HIGHLIGHT = (230, 120, 0)
_TEXT = (30, 30, 30)
_ELLIPSIS = "..."

Font = ImageFont.ImageFont | ImageFont.FreeTypeFont


def load_thumbnail(
    path: str | os.PathLike[str], side: int = 192, *, max_pixels: int = 100_000_000
) -> Image.Image | None:
    """``path`` decoded and shrunk to fit ``side`` x ``side``, or None if not an image."""
    try:
        # min_side lets big JPEGs decode at 1/2..1/8 scale: thumbnails need few pixels.
        _, decoded = decode_file(Path(path), min_side=side, max_pixels=max_pixels)
    except ImageError:
        return None
    return _fit(decoded.image, side)


def contact_sheet(
    query: Image.Image,
    query_label: str,
    results: Sequence[tuple[Image.Image, str]],
    out: Path,
    *,
    thumb: int = 192,
) -> None:
    """Write a PNG contact sheet to ``out`` (atomically; parent folders are created).

    Row 1 holds the query alone, outlined, with ``query_label``; the results follow in
    rows of up to 5, in order, each with its caption (e.g. "#1 0.934 name.jpg") cut to fit.
    Thumbnails keep their aspect ratio, letterboxed in ``thumb`` x ``thumb`` squares.
    """
    if thumb < 16:
        raise ValueError(f"thumb must be at least 16 pixels, not {thumb}")
    font = load_font(max(10, thumb // 14))
    line_h = line_height(font)
    caption_h = line_h + 6
    cell_w = thumb + _GAP
    cell_h = thumb + caption_h + _GAP

    columns = max(1, min(MAX_COLUMNS, len(results)))
    rows = 1 + (len(results) + columns - 1) // columns
    # The query's highlight border sits in the gap; a single column still needs room for it.
    width = max(columns * cell_w + _GAP, thumb + 2 * _GAP)
    height = rows * cell_h + _GAP
    sheet = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)

    x, y = _GAP, _GAP
    draw.rectangle(
        (x - _BORDER, y - _BORDER, x + thumb + _BORDER - 1, y + thumb + caption_h + _BORDER - 1),
        fill=_HIGHLIGHT,
    )
    _tile(sheet, draw, query, f"query: {query_label}", (x, y), thumb, caption_h, font)

    for i, (image, caption) in enumerate(results):
        row, col = divmod(i, columns)
        origin = (_GAP + col * cell_w, _GAP + (row + 1) * cell_h)
        _tile(sheet, draw, image, caption, origin, thumb, caption_h, font)

    save_png_atomically(sheet, out)


def grid_sheet(
    tiles: Sequence[tuple[Image.Image, str]],
    out: Path,
    *,
    thumb: int = 160,
    columns: int = 6,
) -> None:
    """Write a PNG of captioned thumbnails in rows of up to ``columns`` to ``out``.

    The same tiles as :func:`contact_sheet` without a query (e.g. the faces of a person or
    a cluster), written atomically. An empty ``tiles`` gives one empty tile.
    """
    if thumb < 16:
        raise ValueError(f"thumb must be at least 16 pixels, not {thumb}")
    font = load_font(max(10, thumb // 14))
    caption_h = line_height(font) + 6
    cell_w = thumb + _GAP
    cell_h = thumb + caption_h + _GAP
    cols = max(1, min(columns, len(tiles)))
    rows = max(1, (len(tiles) + cols - 1) // cols)
    sheet = Image.new("RGB", (cols * cell_w + _GAP, rows * cell_h + _GAP), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for i, (image, caption) in enumerate(tiles):
        row, col = divmod(i, cols)
        origin = (_GAP + col * cell_w, _GAP + row * cell_h)
        _tile(sheet, draw, image, caption, origin, thumb, caption_h, font)
    save_png_atomically(sheet, out)


def _tile(
    sheet: Image.Image,
    draw: ImageDraw.ImageDraw,
    image: Image.Image,
    caption: str,
    origin: tuple[int, int],
    thumb: int,
    caption_h: int,
    font: Font,
) -> None:
    """Draw one letterboxed thumbnail at ``origin`` with its caption underneath."""
    x, y = origin
    draw.rectangle((x, y, x + thumb - 1, y + thumb - 1), fill=_LETTERBOX)
    small = _fit(image, thumb)
    sheet.paste(small, (x + (thumb - small.width) // 2, y + (thumb - small.height) // 2))
    draw.rectangle((x, y + thumb, x + thumb - 1, y + thumb + caption_h - 1), fill=(255, 255, 255))
    text = _truncate(caption, font, thumb - 6)
    draw.text((x + 3, y + thumb + 3), text, fill=_TEXT, font=font)


def _fit(image: Image.Image, side: int) -> Image.Image:
    """``image`` in RGB, scaled (aspect kept) so its longer side is ``side``."""
    image = to_rgb(image)
    w, h = image.size
    scale = side / max(w, h)
    if scale == 1.0:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def load_font(size: int) -> Font:
    """Pillow's bundled default font at ``size`` px (a bitmap font without FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (OSError, TypeError):
        # Old Pillow or no FreeType: the fixed-size bitmap font still renders text.
        return ImageFont.load_default()


def line_height(font: Font) -> int:
    """Pixels one line of text needs (ascender to descender)."""
    _, top, _, bottom = font.getbbox("Ag#1.j")
    return int(bottom) + max(0, -int(top))


def _truncate(text: str, font: Font, max_width: int) -> str:
    """``text``, shortened in the middle with an ellipsis until it fits ``max_width`` px.

    The middle goes first: captions start with rank and score and end with the file's
    extension, both worth keeping.
    """
    if font.getlength(text) <= max_width:
        return text

    def cut(keep: int) -> str:
        head = (keep + 1) // 2
        return text[:head] + _ELLIPSIS + text[len(text) - (keep - head) :]

    # Binary search on how many characters are kept: captions can be long file names.
    lo, hi = 0, len(text) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if font.getlength(cut(mid)) <= max_width:
            lo = mid
        else:
            hi = mid - 1
    return cut(lo) if lo else ""


def save_png_atomically(image: Image.Image, out: Path) -> None:
    """Write ``image`` as PNG to ``out`` via a temporary file in the same folder.

    A reader never sees a half-written sheet, and an earlier sheet at ``out`` survives a
    failed write.
    """
    # mkstemp makes the file private (0600); a sheet is meant to be shared and viewed.
    atomic_write(Path(out), lambda f: image.save(f, format="PNG"), durable=True, mode=0o644)
