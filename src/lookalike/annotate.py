"""Photos annotated with their faces: boxes and labels (name, distance) drawn on a copy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from lookalike.decode import to_rgb
from lookalike.sheet import load_font, save_png_atomically

__all__ = ["KNOWN", "MUTED", "UNKNOWN", "Mark", "annotate", "save_annotated"]

KNOWN = (40, 200, 60)  # a recognised person, a usable face
UNKNOWN = (255, 140, 0)  # a face nobody has named
MUTED = (150, 150, 150)  # a face too small or too poor to recognise
_TEXT = (255, 255, 255)


@dataclass(frozen=True)
class Mark:
    """One face to draw: its box in the photo's pixels, a label and a colour."""

    box: tuple[int, int, int, int]
    label: str
    color: tuple[int, int, int] = KNOWN


def annotate(image: Image.Image, marks: Sequence[Mark]) -> Image.Image:
    """A copy of ``image`` (RGB) with every mark's box and label drawn on it.

    Line width and font grow with the photo, so labels read the same on a thumbnail-sized
    scan and on a 30-megapixel photo viewed whole. Labels sit above their box, or inside it
    when the box touches the top edge.
    """
    out = to_rgb(image)
    out = out.copy() if out is image else out  # drawn on: never the caller's image
    longer = max(out.size)
    width = max(2, round(longer / 400))
    font = load_font(max(12, round(longer * 0.018)))
    pad = max(2, width)
    draw = ImageDraw.Draw(out)
    for mark in marks:
        left, top, right, bottom = mark.box
        draw.rectangle((left, top, right, bottom), outline=mark.color, width=width)
        if not mark.label:
            continue
        x0, y0, x1, y1 = draw.textbbox((0, 0), mark.label, font=font)
        text_w, text_h = int(x1 - x0), int(y1 - y0)
        box_h = text_h + 2 * pad
        y = top - box_h if top - box_h >= 0 else top + width
        x = min(max(0, left), max(0, out.width - text_w - 2 * pad))
        draw.rectangle((x, y, x + text_w + 2 * pad, y + box_h), fill=mark.color)
        draw.text((x + pad - int(x0), y + pad - int(y0)), mark.label, fill=_TEXT, font=font)
    return out


def save_annotated(image: Image.Image, marks: Sequence[Mark], out: Path) -> None:
    """Draw ``marks`` on a copy of ``image`` and write it as PNG to ``out`` (atomically)."""
    save_png_atomically(annotate(image, marks), out)
