"""Tests for lookalike.decode: formats by content, orientation, conversions, limits, errors."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import subprocess
import sys
import time
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from lookalike.decode import (
    Decoded,
    decode,
    decode_file,
    decode_gate,
    png,
    read_file,
    rgb,
    sha256_hex,
)
from lookalike.describe import cnn
from lookalike.describe.color import ColorHistogram
from lookalike.describe.phash import PerceptualHash
from lookalike.errors import Busy, ImageError, ImageTooLarge
from lookalike.faces import analyze
from lookalike.settings import Settings

LIMIT = 100_000_000


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def dec(data: bytes, min_side: int | None = None, max_pixels: int = LIMIT) -> Decoded:
    return decode(data, "test", min_side=min_side, max_pixels=max_pixels)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def handmade_png(width: int, height: int, bit_depth: int, color_type: int, raw: bytes) -> bytes:
    """A PNG written byte by byte: lets tests declare any header, whatever the pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.fromarray(skdata.astronaut())


# -- formats -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "params", "wrong_name"),
    [
        ("JPEG", {"quality": 90}, "photo.png"),
        ("PNG", {}, "photo.jpg"),
        ("GIF", {}, "photo.bmp"),
        ("WEBP", {"quality": 90}, "photo.gif"),
        ("BMP", {}, "photo.tiff"),
        ("TIFF", {}, "photo.webp"),
        ("TIFF", {"compression": "tiff_lzw"}, "photo"),
    ],
)
def test_format_is_recognised_by_content(
    tmp_path: Path, photo: Image.Image, fmt: str, params: dict[str, object], wrong_name: str
) -> None:
    data = encode(photo, fmt, **params)
    path = tmp_path / wrong_name
    path.write_bytes(data)
    raw, decoded = decode_file(path, min_side=None, max_pixels=LIMIT)
    assert raw == data
    assert decoded.format == fmt
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == (512, 512)
    assert (decoded.width, decoded.height) == (512, 512)
    # Lossy or palette formats change pixels a little, never the picture.
    diff = np.abs(np.asarray(decoded.image, np.int16) - np.asarray(photo, np.int16))
    assert diff.mean() < 12


def test_gif_first_frame_is_decoded() -> None:
    frames = [Image.new("RGB", (20, 10), c) for c in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    decoded = dec(data)
    assert decoded.image.getpixel((5, 5)) == (255, 0, 0)


def test_sha256_hex() -> None:
    assert sha256_hex(b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert len(sha256_hex(b"")) == 64


# -- EXIF orientation --------------------------------------------------------------------


def _marked(fmt: str, orientation: int) -> bytes:
    """A 60x40 (stored) white image with a red 10x10 corner at the stored top-left."""
    image = Image.new("RGB", (60, 40), (255, 255, 255))
    image.paste((255, 0, 0), (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = orientation
    params: dict[str, object] = {"exif": exif.tobytes()}
    if fmt == "JPEG":
        params["quality"] = 95
    return encode(image, fmt, **params)


# Where the stored top-left corner is shown, per EXIF orientation (EXIF 2.3, tag 0x0112).
_CORNER = {
    1: "top-left",
    2: "top-right",
    3: "bottom-right",
    4: "bottom-left",
    5: "top-left",
    6: "top-right",
    7: "bottom-right",
    8: "bottom-left",
}


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_exif_orientation_is_applied(fmt: str, orientation: int) -> None:
    decoded = dec(_marked(fmt, orientation))
    swapped = orientation >= 5
    expected = (40, 60) if swapped else (60, 40)
    assert decoded.image.size == expected
    assert (decoded.width, decoded.height) == expected
    w, h = expected
    points = {
        "top-left": (5, 5),
        "top-right": (w - 6, 5),
        "bottom-right": (w - 6, h - 6),
        "bottom-left": (5, h - 6),
    }
    for name, (x, y) in points.items():
        r, g, b = px(decoded, x, y)
        is_red = r > 200 and g < 60 and b < 60
        assert is_red == (name == _CORNER[orientation]), (name, (r, g, b))


def test_corrupt_exif_does_not_lose_the_image(photo: Image.Image) -> None:
    data = encode(photo, "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decoded = dec(data)
    assert decoded.image.size == (512, 512)


# -- colour modes ----------------------------------------------------------------------------


def px(decoded: Decoded, x: int, y: int) -> tuple[int, int, int]:
    value = decoded.image.getpixel((x, y))
    assert isinstance(value, tuple)
    return (int(value[0]), int(value[1]), int(value[2]))


def test_grayscale() -> None:
    image = Image.new("L", (4, 4), 77)
    for fmt in ("PNG", "TIFF", "BMP"):
        assert px(dec(encode(image, fmt)), 1, 1) == (77, 77, 77)


def test_one_bit() -> None:
    image = Image.new("1", (8, 8), 0)
    image.putpixel((1, 1), 1)
    for fmt in ("PNG", "TIFF", "BMP"):
        decoded = dec(encode(image, fmt))
        assert px(decoded, 0, 0) == (0, 0, 0)
        assert px(decoded, 1, 1) == (255, 255, 255)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency_goes_over_white(fmt: str) -> None:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    image.putpixel((1, 1), 1)
    decoded = dec(encode(image, fmt, transparency=0))
    assert px(decoded, 0, 0) == (255, 255, 255)  # transparent red -> white, not red/black
    assert px(decoded, 1, 1) == (0, 0, 255)


def test_png_palette_with_partial_alpha() -> None:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    image.putpixel((1, 1), 1)
    # tRNS: entry 0 half transparent, entry 1 opaque.
    decoded = dec(encode(image, "PNG", transparency=bytes([128, 255])))
    assert px(decoded, 0, 0) == pytest.approx((127, 127, 127), abs=1)
    assert px(decoded, 1, 1) == (0, 0, 255)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_rgba_composited_over_white(fmt: str) -> None:
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    image.putpixel((1, 1), (0, 0, 255, 128))
    image.putpixel((2, 2), (0, 255, 0, 255))
    params: dict[str, object] = {"lossless": True} if fmt == "WEBP" else {}
    decoded = dec(encode(image, fmt, **params))
    assert px(decoded, 0, 0) == (255, 255, 255)
    assert px(decoded, 1, 1) == pytest.approx((127, 127, 255), abs=1)
    assert px(decoded, 2, 2) == (0, 255, 0)


def test_gray_alpha() -> None:
    image = Image.new("LA", (4, 4), (0, 0))
    image.putpixel((1, 1), (0, 255))
    decoded = dec(encode(image, "PNG"))
    assert px(decoded, 0, 0) == (255, 255, 255)
    assert px(decoded, 1, 1) == (0, 0, 0)


def test_rgb_with_transparent_colour_key() -> None:
    image = Image.new("RGB", (4, 4), (10, 20, 30))
    image.putpixel((1, 1), (200, 0, 0))
    decoded = dec(encode(image, "PNG", transparency=(10, 20, 30)))
    assert px(decoded, 0, 0) == (255, 255, 255)
    assert px(decoded, 1, 1) == (200, 0, 0)


def test_cmyk_jpeg_with_adobe_inversion_decodes_red() -> None:
    data = encode(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), "JPEG", quality=95)
    # Pillow writes Photoshop-style inverted CMYK, flagged by the APP14 "Adobe" segment.
    assert b"\xff\xeeAdobe" in data[:200] or b"Adobe" in data[:400]
    r, g, b = px(dec(data), 32, 32)
    assert r > 240 and g < 15 and b < 15


def test_cmyk_tiff() -> None:
    data = encode(Image.new("CMYK", (8, 8), (255, 0, 255, 0)), "TIFF")
    assert px(dec(data), 4, 4) == (0, 255, 0)


def test_16bit_grayscale_png_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257 * 100, 32768, 65535]], dtype=np.uint16)
    data = encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")  # really a 16-bit PNG
    decoded = dec(data)
    assert [px(decoded, x, 0)[0] for x in range(4)] == [0, 100, 128, 255]


def test_16bit_grayscale_tiff() -> None:
    values = np.array([[0, 257 * 7, 65535]], dtype=np.uint16)
    decoded = dec(encode(Image.fromarray(values), "TIFF"))
    assert [px(decoded, x, 0) for x in range(3)] == [(0, 0, 0), (7, 7, 7), (255, 255, 255)]


def test_16bit_rgb_png() -> None:
    # Two 16-bit RGB pixels per row: (65535, 32896, 0) -> (255, 128, 0).
    rows = b"".join(b"\x00" + struct.pack(">HHH", 65535, 32896, 0) * 2 for _ in range(2))
    decoded = dec(handmade_png(2, 2, 16, 2, rows))
    assert px(decoded, 1, 1) == (255, 128, 0)


def test_32bit_int_and_float_tiff() -> None:
    ints = np.array([[0, 1028, 65535]], dtype=np.int32)
    decoded = dec(encode(Image.fromarray(ints), "TIFF"))
    assert [px(decoded, x, 0)[0] for x in range(3)] == [0, 4, 255]
    floats = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    decoded = dec(encode(Image.fromarray(floats), "TIFF"))
    assert [px(decoded, x, 0)[0] for x in range(3)] == [0, 128, 255]


# -- draft mode ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_jpeg(photo: Image.Image) -> bytes:
    return encode(photo.resize((4000, 3000)), "JPEG", quality=85)


@pytest.mark.parametrize(
    ("min_side", "expected"),
    [
        (None, (4000, 3000)),
        (128, (500, 375)),
        (224, (500, 375)),
        (375, (500, 375)),
        (376, (1000, 750)),
        (1000, (2000, 1500)),
        (1600, (4000, 3000)),
    ],
)
def test_draft_reduces_large_jpeg_but_keeps_min_side(
    big_jpeg: bytes, min_side: int | None, expected: tuple[int, int]
) -> None:
    decoded = dec(big_jpeg, min_side=min_side)
    assert decoded.image.size == expected
    assert (decoded.width, decoded.height) == (4000, 3000)
    if min_side is not None:
        assert min(decoded.image.size) >= min_side


def test_draft_with_rotation(photo: Image.Image) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(photo.resize((4000, 3000)), "JPEG", quality=85, exif=exif.tobytes())
    decoded = dec(data, min_side=224)
    assert decoded.image.size == (375, 500)
    assert (decoded.width, decoded.height) == (3000, 4000)


@pytest.mark.parametrize(
    ("min_side", "expected"),
    [(None, (512, 512)), (32, (64, 64)), (100, (256, 256)), (200, (512, 512))],
)
def test_other_formats_are_box_reduced_to_twice_min_side(
    photo: Image.Image, min_side: int | None, expected: tuple[int, int]
) -> None:
    for fmt in ("PNG", "BMP", "TIFF", "WEBP", "GIF"):
        decoded = dec(encode(photo, fmt), min_side=min_side)
        assert decoded.image.size == expected, fmt
        assert (decoded.width, decoded.height) == (512, 512)


# -- errors ----------------------------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError) as info:
        read_file(path)
    assert info.value.reason == "empty file"
    assert info.value.source == str(path)
    with pytest.raises(ImageError, match="empty file"):
        dec(b"")


def test_truncated_jpeg(tmp_path: Path, photo: Image.Image) -> None:
    data = encode(photo, "JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as info:
        decode_file(path, min_side=None, max_pixels=LIMIT)
    assert info.value.reason.startswith("truncated")
    assert not isinstance(info.value, ImageTooLarge)


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "WEBP", "BMP", "TIFF"])
def test_truncated_other_formats(photo: Image.Image, fmt: str) -> None:
    data = encode(photo, fmt)
    with pytest.raises(ImageError) as info:
        dec(data[: len(data) // 2])
    assert info.value.reason.startswith("truncated"), info.value.reason


def test_truncated_header() -> None:
    with pytest.raises(ImageError, match="truncated"):
        dec(b"\xff\xd8\xff\xe0\x00\x10JFIF")


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("hello, this is not a picture\n")
    with pytest.raises(ImageError) as info:
        decode_file(path, min_side=None, max_pixels=LIMIT)
    assert info.value.reason == "not an image (text)"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "unsupported format PDF"),
        (
            b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
            "unsupported format SVG",
        ),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "unsupported format HEIF"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1", "unsupported format AVIF"),
        (b"\x00\x01\x02\x03\xfe\xfd\xfc\xfb", "not an image (unrecognised signature"),
    ],
)
def test_other_content_is_refused(data: bytes, reason: str) -> None:
    with pytest.raises(ImageError) as info:
        dec(data)
    assert info.value.reason.startswith(reason)


def test_ico_is_unsupported() -> None:
    data = encode(Image.new("RGB", (16, 16), "red"), "ICO")
    with pytest.raises(ImageError, match="unsupported format ICO"):
        dec(data)


def test_png_bomb_refused_fast(tmp_path: Path) -> None:
    # 20000x20000 1-bit PNG header with almost no data: only the header may be read.
    data = handmade_png(20000, 20000, 1, 0, b"\x00" * 16)
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    start = time.perf_counter()
    with pytest.raises(ImageTooLarge) as info:
        decode_file(path, min_side=None, max_pixels=LIMIT)
    assert time.perf_counter() - start < 1.0
    assert info.value.reason == "20000x20000 = 400.0 MP is over the limit of 100.0 MP"
    assert info.value.status == 413


def test_gif_frame_growing_the_canvas_is_refused() -> None:
    header = b"GIF89a" + struct.pack("<HHBBB", 10, 10, 0, 0, 0)
    frame = b"," + struct.pack("<HHHHB", 0, 0, 20000, 20000, 0x80) + b"\0\0\0\xff\xff\xff"
    data = header + frame + b"\x02\x02\x44\x01\x00;"
    with pytest.raises(ImageTooLarge):
        dec(data)


def test_pixel_limit_is_ours_not_pillows(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(Image.new("RGB", (100, 100), "red"), "PNG")
    # Pillow's global limit is not what decides: a tiny one changes nothing...
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dec(data, max_pixels=10_000).image.size == (100, 100)
    # ...and ours is exact.
    with pytest.raises(ImageTooLarge, match="over the limit"):
        dec(data, max_pixels=9_999)


def test_unreadable_file(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their permissions")
    path = tmp_path / "secret.png"
    path.write_bytes(encode(Image.new("RGB", (4, 4)), "PNG"))
    path.chmod(0)
    try:
        with pytest.raises(ImageError) as info:
            read_file(path)
        assert info.value.reason == "permission denied"
    finally:
        path.chmod(0o644)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as info:
        decode_file(tmp_path, min_side=None, max_pixels=LIMIT)
    assert info.value.reason.startswith("not a regular file")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        read_file(tmp_path / "nope.jpg")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "pipe.jpg"
    os.mkfifo(path)
    with pytest.raises(ImageError, match="not a regular file"):
        read_file(path)


# -- threads ---------------------------------------------------------------------------------


def test_decoding_is_thread_safe(photo: Image.Image) -> None:
    blobs = [
        encode(photo, "JPEG", quality=90),
        encode(photo.rotate(90), "PNG"),
        encode(photo.convert("P"), "GIF"),
        encode(photo.resize((300, 200)), "WEBP"),
        encode(photo.convert("L"), "TIFF"),
        encode(photo.crop((0, 0, 200, 300)), "BMP"),
    ] * 4
    expected = [np.asarray(dec(b, min_side=100).image) for b in blobs]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            got = list(pool.map(lambda b: np.asarray(dec(b, min_side=100).image), blobs))
            assert all(np.array_equal(g, e) for g, e in zip(got, expected, strict=True))


# -- large images: reduced decoding, PNG bands, one RGB conversion ------------------------------

_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def random_png(width: int, height: int, depth: int, colour: int, seed: int) -> bytes:
    """A PNG of random scanlines, each with a random filter type (0-4), so that every PNG
    filter meets every other across band boundaries; the IDAT data split in 3 chunks."""
    rng = np.random.default_rng(seed)
    stride = width * _CHANNELS[colour] * depth // 8
    raw = b"".join(
        bytes([int(rng.integers(0, 5))]) + rng.integers(0, 256, stride, np.uint8).tobytes()
        for _ in range(height)
    )
    extra = b""
    if colour == 3:
        extra += png_chunk(b"PLTE", rng.integers(0, 256, 768, np.uint8).tobytes())
        extra += png_chunk(b"tRNS", rng.integers(0, 256, 200, np.uint8).tobytes())
    elif colour in (0, 2) and depth == 8:
        # A colour key that random rows do hit now and then.
        extra += png_chunk(b"tRNS", bytes(2 * _CHANNELS[colour]))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    stream = zlib.compress(raw)
    thirds = [stream[: len(stream) // 3], stream[len(stream) // 3 : -5], stream[-5:]]
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + extra
        + b"".join(png_chunk(b"IDAT", part) for part in thirds)
        + png_chunk(b"IEND", b"")
    )


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image)


@pytest.mark.parametrize(
    ("depth", "colour"),
    [(8, 0), (16, 0), (8, 2), (16, 2), (8, 3), (8, 4), (16, 4), (8, 6), (16, 6)],
)
@pytest.mark.parametrize("factor", [1, 3])
def test_png_bands_give_the_pixels_of_a_whole_decode(
    monkeypatch: pytest.MonkeyPatch, depth: int, colour: int, factor: int
) -> None:
    data = random_png(37, 29, depth, colour, seed=depth * 10 + colour)
    with Image.open(io.BytesIO(data)) as whole:
        whole.load()
        expected = pixels(rgb.to_rgb(whole).reduce(factor))
    # 3 rows per band: ten bands, the last one short, every filter at a band's top.
    monkeypatch.setattr(rgb, "BAND_BYTES", 4 * 37 * 3)
    layout = png.layout(data)
    assert layout is not None
    assert np.array_equal(pixels(png.decode_bands(layout, factor)), expected)


def test_decode_uses_png_bands_above_a_size_with_the_same_result(
    monkeypatch: pytest.MonkeyPatch, photo: Image.Image
) -> None:
    image = photo.convert("RGBA").resize((300, 200))
    image.putalpha(Image.linear_gradient("L").resize((300, 200)))
    plain = encode(image, "PNG")
    # An eXIf chunk after the pixels: Pillow finds it only once it has decoded them all.
    exif = Image.Exif()
    exif[0x0112] = 6
    end = plain.rindex(b"IEND") - 4
    data = plain[:end] + png_chunk(b"eXIf", exif.tobytes()[6:]) + plain[end:]
    expected = dec(data, min_side=40)
    assert expected.image.size == (100, 150) and (expected.width, expected.height) == (200, 300)
    monkeypatch.setattr(rgb, "BAND_BYTES", 4 * 300 * 4)
    seen: list[png.PngLayout] = []
    monkeypatch.setattr(png, "decode_bands", spy(png.decode_bands, seen))
    got = dec(data, min_side=40)
    assert seen, "the PNG was not decoded in bands"
    assert (got.width, got.height) == (200, 300)
    assert np.array_equal(pixels(got.image), pixels(expected.image))


def spy(fn: Any, calls: list[Any]) -> Any:
    """``fn``, noting its first argument in ``calls`` (the real function still runs)."""

    def wrapper(*args: Any) -> Any:
        calls.append(args[0])
        return fn(*args)

    return wrapper


def test_png_bands_report_truncated_and_corrupt_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rgb, "BAND_BYTES", 4 * 37 * 3)
    data = random_png(37, 29, 8, 6, seed=1)
    with pytest.raises(ImageError, match=r"truncated PNG data \(.*row \d+ of 29"):
        dec(data[: len(data) // 2])
    start = data.index(b"IDAT") + 20
    broken = data[:start] + bytes(b ^ 0x55 for b in data[start : start + 40]) + data[start + 40 :]
    with pytest.raises(ImageError, match="corrupt PNG data"):
        dec(broken)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "I;16", "CMYK", "L"])
def test_band_conversion_equals_converting_whole(
    monkeypatch: pytest.MonkeyPatch, photo: Image.Image, mode: str
) -> None:
    image = photo.resize((90, 61))
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image.convert("L")).astype(np.uint16) * 200)
    elif mode in ("RGBA", "LA"):
        image = image.convert(mode)
        image.putalpha(Image.linear_gradient("L").resize((90, 61)))
    else:
        image = image.convert(mode)
    if mode == "P":
        image.info["transparency"] = 3
    whole = [pixels(rgb.to_rgb(image, min_side=m)) for m in (None, 10)]
    monkeypatch.setattr(rgb, "BAND_BYTES", 4 * 90 * 2)
    banded = [pixels(rgb.to_rgb(image, min_side=m)) for m in (None, 10)]
    assert whole[1].shape == (21, 30, 3)  # reduced by 61 // 20 = 3, sides rounded up
    for w, b in zip(whole, banded, strict=True):
        assert np.array_equal(w, b)


def flat_rgba_png(width: int, height: int) -> bytes:
    """A mostly flat RGBA PNG (a few kilobytes per megapixel), compressed row by row so
    that the test itself never holds its pixels."""
    row = b"\x00" + bytes([30, 120, 200, 255]) * width
    marked = b"\x00" + bytes([200, 50, 50, 128]) * width
    z = zlib.compressobj(9)
    stream = b"".join(z.compress(marked if y % 500 == 0 else row) for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", stream + z.flush())
        + png_chunk(b"IEND", b"")
    )


# Run in a fresh interpreter: its peak RSS (VmHWM) is then this decode's alone.
_MEMORY_PROBE = """
import re, sys
from pathlib import Path
from lookalike.decode import decode

def status(key):
    text = Path("/proc/self/status").read_text()
    return int(re.search(key + r":\\s+(\\d+) kB", text).group(1)) * 1024

data = Path(sys.argv[1]).read_bytes()
try:
    Path("/proc/self/clear_refs").write_text("5")  # peak := now
except OSError:
    pass
before = status("VmRSS")
decoded = decode(data, "big.png", min_side=int(sys.argv[2]), max_pixels=10**9)
print(status("VmHWM") - before, *decoded.image.size)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_a_large_flat_rgba_png_is_decoded_reduced_in_little_memory(tmp_path: Path) -> None:
    # 6000 x 6000 RGBA: 144 MB in Pillow's buffer (and ~580 MB at the peak of converting
    # it whole), ~0.1 MB of file. Asked for a 256-pixel shorter side.
    path = tmp_path / "big.png"
    path.write_bytes(flat_rgba_png(6000, 6000))
    assert path.stat().st_size < 1_000_000
    probe = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, str(path), "256"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    grown, width, height = (int(v) for v in probe.stdout.split())
    assert (width, height) == (546, 546)  # reduced by 6000 // 512 = 11
    assert grown < 48 * 2**20, f"peak RSS grew by {grown / 2**20:.0f} MiB"


# -- one RGB conversion for faces and descriptors -------------------------------------------


def odd_modes(photo: Image.Image) -> dict[str, Image.Image]:
    """The photo as 16-bit grey and as RGBA with alpha fading from left to right."""
    grey16 = Image.fromarray(np.asarray(photo.convert("L")).astype(np.uint16) * 256)
    rgba = photo.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").rotate(90).resize(photo.size))
    return {"I;16": grey16, "RGBA": rgba}


@pytest.mark.parametrize("mode", ["I;16", "RGBA"])
def test_descriptors_see_the_decoders_rgb(photo: Image.Image, mode: str) -> None:
    image = odd_modes(photo)[mode]
    rgb_image = rgb.to_rgb(image)
    assert np.array_equal(cnn.preprocess(image, 256), cnn.preprocess(rgb_image, 256))
    for desc in (ColorHistogram(), PerceptualHash()):
        assert np.array_equal(desc.embed([image]), desc.embed([rgb_image])), desc.name


@pytest.mark.parametrize("mode", ["I;16", "RGBA"])
def test_faces_see_the_decoders_rgb(photo: Image.Image, mode: str) -> None:
    image = odd_modes(photo)[mode]
    (face,) = analyze(image)
    (same,) = analyze(rgb.to_rgb(image))
    assert face.box == same.box
    assert face.embedding is not None and same.embedding is not None
    assert np.array_equal(face.embedding, same.embedding)


# -- the gate: few large decodes at once -----------------------------------------------------


def gate_settings(tmp_path: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {"decode_slots": 1, "decode_large_bytes": 300_000}
    return Settings(data_dir=tmp_path, **(base | overrides))


def test_large_decodes_fail_busy_when_no_slot_frees(tmp_path: Path, photo: Image.Image) -> None:
    gate = decode_gate(gate_settings(tmp_path, decode_wait_s=0.05))
    large = encode(photo, "PNG")  # 512 x 512: 1 MB of pixels, over 300 kB
    small = encode(photo.resize((32, 32)), "PNG")
    with gate.slot():
        with pytest.raises(Busy) as info:
            decode(large, "q", min_side=None, max_pixels=LIMIT, gate=gate)
        assert info.value.status == 503 and info.value.code == "busy"
        assert info.value.retry_after >= 1
        # Small decodes need no slot, and reduced JPEGs are costed at their reduced size.
        assert decode(small, "q", min_side=None, max_pixels=LIMIT, gate=gate).width == 32
        jpeg = encode(photo.resize((1000, 1000)), "JPEG")
        assert decode(jpeg, "q", min_side=64, max_pixels=LIMIT, gate=gate).image.size == (125, 125)
    assert decode(large, "q", min_side=None, max_pixels=LIMIT, gate=gate).width == 512


def test_indexing_waits_for_a_slot_instead(tmp_path: Path, photo: Image.Image) -> None:
    gate = decode_gate(gate_settings(tmp_path, decode_wait_s=0.0))
    large = encode(photo, "PNG")
    with ThreadPoolExecutor(1) as pool:
        with gate.slot():
            queued = pool.submit(
                decode, large, "q", min_side=None, max_pixels=LIMIT, gate=gate.queueing()
            )
            time.sleep(0.3)
            assert not queued.done()
        assert queued.result(timeout=30).width == 512


def test_the_gate_is_shared_by_every_caller_of_the_process(tmp_path: Path) -> None:
    one = decode_gate(gate_settings(tmp_path / "a", decode_wait_s=0.0))
    other = decode_gate(gate_settings(tmp_path / "b", decode_wait_s=0.0))
    with one.slot(), pytest.raises(Busy), other.slot():
        pass
