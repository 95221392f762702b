"""Annotated photos: boxes and labels drawn on a copy, scaled to the photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.annotate import KNOWN, UNKNOWN, Mark, annotate, save_annotated


def changed(a: Image.Image, b: Image.Image) -> np.ndarray:
    """Mask (h, w) of the pixels that differ."""
    return np.any(np.asarray(a.convert("RGB")) != np.asarray(b.convert("RGB")), axis=2)


def test_draws_on_a_copy_and_keeps_the_size() -> None:
    photo = Image.new("RGB", (300, 200), (90, 90, 90))
    before = photo.copy()
    drawn = annotate(photo, [Mark((100, 80, 160, 140), "Eileen 0.21", KNOWN)])
    assert drawn.size == photo.size and drawn.mode == "RGB"
    assert photo.tobytes() == before.tobytes()  # the photo itself is untouched
    diff = changed(photo, drawn)
    assert diff[80, 100:161].all() and diff[140, 100:161].all()  # the box's edges
    assert diff[60:80, 100:140].any()  # the label sits above the box
    assert not diff[150:, :].any() and not diff[:, 200:].any()


def test_label_at_the_top_edge_goes_inside_and_greyscale_is_converted() -> None:
    photo = Image.new("L", (200, 120), 128)
    drawn = annotate(photo, [Mark((150, 0, 199, 60), "unknown (Eileen 0.71)", UNKNOWN)])
    assert drawn.mode == "RGB" and drawn.size == (200, 120)
    diff = changed(photo, drawn)
    assert diff[5:20, :].any()  # inside the box, moved left to stay in the photo
    assert not diff[70:, :].any()


def test_lines_and_text_grow_with_the_photo(tmp_path: Path) -> None:
    def ink(side: int) -> float:
        photo = Image.new("RGB", (side, side), (0, 0, 0))
        box = (side // 4, side // 4, side // 2, side // 2)
        return float(changed(photo, annotate(photo, [Mark(box, "Eileen")])).mean())

    # The drawn share of the picture stays about the same from 500 to 4000 pixels.
    small, large = ink(500), ink(4000)
    assert 0.5 < large / small < 2.0
    out = tmp_path / "sub" / "drawn.png"
    save_annotated(Image.new("RGB", (64, 48)), [Mark((1, 1, 30, 30), "")], out)
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (64, 48)
    assert [p.name for p in out.parent.iterdir()] == ["drawn.png"]  # no temporary left
