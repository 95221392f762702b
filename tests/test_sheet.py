"""Tests for lookalike.sheet: contact sheet layout, captions, atomic writing, thumbnails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFont
from skimage import data as skdata

from lookalike.sheet import MAX_COLUMNS, _truncate, contact_sheet, grid_sheet, load_thumbnail


def results(n: int) -> list[tuple[Image.Image, str]]:
    shapes = [(120, 80), (80, 120), (50, 50), (300, 30)]
    colours = ["red", "green", "blue", "orange", "purple"]
    return [
        (Image.new("RGB", shapes[i % 4], colours[i % 5]), f"#{i + 1} 0.{900 - i} img{i}.jpg")
        for i in range(n)
    ]


def sheet_size(tmp_path: Path, n: int, thumb: int = 64) -> tuple[int, int]:
    out = tmp_path / f"sheet-{n}-{thumb}.png"
    contact_sheet(Image.new("RGB", (90, 60), "gray"), "query.jpg", results(n), out, thumb=thumb)
    with Image.open(out) as im:
        assert im.format == "PNG"
        im.load()
        return im.size


def test_writes_a_png_grid(tmp_path: Path) -> None:
    one = sheet_size(tmp_path, 1)
    five = sheet_size(tmp_path, 5)
    six = sheet_size(tmp_path, 6)
    eleven = sheet_size(tmp_path, 11)
    # Width grows with the columns (up to 5), then stays.
    cell_w = (five[0] - one[0]) // (MAX_COLUMNS - 1)
    assert cell_w > 64
    assert six[0] == eleven[0] == five[0]
    assert sheet_size(tmp_path, 3)[0] == one[0] + 2 * cell_w
    # Height: a row for the query, then one per 5 results.
    cell_h = six[1] - five[1]
    assert cell_h > 64
    assert one[1] == five[1]
    assert eleven[1] == five[1] + 2 * cell_h
    assert five[1] > 2 * cell_h  # query row + one result row
    # Bigger thumbnails, bigger sheet.
    big = sheet_size(tmp_path, 5, thumb=192)
    assert big[0] > 5 * 192 and big[1] > 2 * 192


def test_no_results(tmp_path: Path) -> None:
    width, height = sheet_size(tmp_path, 0)
    assert width >= 64 and height >= 64


def test_query_is_highlighted_and_tiles_letterboxed(tmp_path: Path) -> None:
    out = tmp_path / "sheet.png"
    query = Image.new("RGB", (100, 100), (0, 0, 0))
    wide = Image.new("RGB", (200, 50), (0, 0, 255))
    contact_sheet(query, "q.png", [(wide, "#1 0.5 wide.png")], out, thumb=100)
    with Image.open(out) as im:
        pixels = np.asarray(im.convert("RGB")).astype(int)
    # The query tile is black, and framed in a strong colour that is neither black nor grey.
    ys, xs = np.nonzero((pixels == 0).all(axis=2))
    top, left = ys.min(), xs.min()
    border = pixels[top - 2, left + 50]
    assert border.max() - border.min() > 100
    # The wide result keeps its 4:1 shape: a blue band with letterbox above and below.
    blue = (pixels[..., 2] > 200) & (pixels[..., 0] < 50) & (pixels[..., 1] < 50)
    bys, bxs = np.nonzero(blue)
    assert bxs.max() - bxs.min() + 1 == 100
    assert bys.max() - bys.min() + 1 == 25


def test_atomic_overwrite_leaves_no_temp_files(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "er" / "sheet.png"
    contact_sheet(Image.new("RGB", (10, 10)), "q", results(2), out, thumb=32)
    first = out.read_bytes()
    contact_sheet(Image.new("RGB", (10, 10)), "q", results(7), out, thumb=32)
    assert out.read_bytes() != first
    assert [p.name for p in out.parent.iterdir()] == ["sheet.png"]


def test_failed_write_keeps_the_old_sheet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "sheet.png"
    contact_sheet(Image.new("RGB", (10, 10)), "q", results(1), out, thumb=32)
    before = out.read_bytes()

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        contact_sheet(Image.new("RGB", (10, 10)), "q", results(3), out, thumb=32)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["sheet.png"]


def test_long_captions_are_cut_in_the_middle() -> None:
    font = ImageFont.load_default(size=13)
    text = "#1 0.934 " + "very_long_name_" * 10 + "end.jpg"
    cut = _truncate(text, font, 150)
    assert font.getlength(cut) <= 150
    assert cut.startswith("#1 0.9") and cut.endswith(".jpg") and "..." in cut
    assert _truncate("short.jpg", font, 150) == "short.jpg"
    assert _truncate(text, font, 1) == ""


def test_other_modes_and_tiny_images(tmp_path: Path) -> None:
    out = tmp_path / "sheet.png"
    tiles = [
        (Image.new("RGBA", (30, 20), (255, 0, 0, 128)), "rgba"),
        (Image.new("L", (1, 1), 128), "one pixel"),
        (Image.new("P", (40, 40)), "palette"),
    ]
    contact_sheet(Image.new("1", (16, 16)), "bits", tiles, out, thumb=48)
    with Image.open(out) as im:
        assert im.mode == "RGB"


def test_load_thumbnail(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    Image.fromarray(skdata.chelsea()).save(path, quality=90)  # 451x300
    thumb = load_thumbnail(path, 128)
    assert thumb is not None
    assert thumb.mode == "RGB"
    assert thumb.size == (128, 85)
    assert load_thumbnail(str(path)) is not None
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    assert load_thumbnail(bad) is None
    assert load_thumbnail(tmp_path / "missing.jpg") is None


def test_grid_sheet_rows_and_empty(tmp_path: Path) -> None:
    tiles = [(Image.new("RGB", (150, 150), (i * 30, 0, 0)), f"face {i}") for i in range(8)]
    out = tmp_path / "grid.png"
    grid_sheet(tiles, out, thumb=100, columns=6)
    with Image.open(out) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert 6 * 100 < width < 7 * 100 + 80  # six per row
    assert 2 * 100 < height < 3 * 100  # two rows
    grid_sheet([], tmp_path / "empty.png", thumb=100)
    with Image.open(tmp_path / "empty.png") as image:
        assert image.width < 200
