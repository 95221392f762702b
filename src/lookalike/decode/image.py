"""Read and decode image files safely: format by content, pixel limit before decoding.

Pillow's own safety nets are global (``Image.MAX_IMAGE_PIXELS``, ``LOAD_TRUNCATED_IMAGES``)
and shared with anything else in the process, so this module leaves them alone and checks
the header itself. Everything here is safe to call from several threads at once: each call
works on its own buffer and image objects; the only state shared is the gate's slots
(``lookalike.decode.gate``), which is made for it.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from PIL import (
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    ImageFile,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

from lookalike.decode import png, rgb
from lookalike.decode.gate import DecodeGate, release_freed_memory
from lookalike.decode.rgb import reduce_factor, rgb_reduced
from lookalike.errors import ImageError, ImageTooLarge

__all__ = ["Decoded", "decode", "decode_file", "read_file", "sha256_hex"]

# The image classes are constructed directly (not through ``Image.open``): that skips
# Pillow's global plugin registry (lazily initialised, not thread-safe on first use) and
# its global decompression-bomb check, which would warn or raise with another limit than
# ours before we could check the size.
_OPENERS: dict[str, type[ImageFile.ImageFile]] = {
    "JPEG": JpegImagePlugin.JpegImageFile,
    "PNG": PngImagePlugin.PngImageFile,
    "GIF": GifImagePlugin.GifImageFile,
    "WEBP": WebPImagePlugin.WebPImageFile,
    "BMP": BmpImagePlugin.BmpImageFile,
    "TIFF": TiffImagePlugin.TiffImageFile,
}

# Pillow's bytes per pixel by mode (everything else, RGB included, takes 4).
_PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
# EXIF orientation -> the transpose that makes the image upright (EXIF 2.3, tag 0x0112).
_ORIENTATION_FIX: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION = 0x0112
# The orientations that swap width and height.
_TURNS = {
    Image.Transpose.TRANSPOSE,
    Image.Transpose.ROTATE_270,
    Image.Transpose.TRANSVERSE,
    Image.Transpose.ROTATE_90,
}

# Formats people commonly feed by mistake, named in the error so the message is useful.
_OTHER_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "PDF"),
    (b"8BPS", "PSD"),
    (b"qoif", "QOI"),
    (b"DDS ", "DDS"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\x00\x00\x02\x00", "CUR"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"icns", "ICNS"),
    (b"#?RADIANCE", "Radiance HDR"),
    (b"\x76\x2f\x31\x01", "OpenEXR"),
)
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}


@dataclass(frozen=True)
class Decoded:
    """A decoded image, upright and in RGB."""

    # Mode RGB, EXIF orientation applied; reduced when the caller asked for fewer pixels.
    image: Image.Image
    # Full size after orientation, whatever reduction ``image`` had.
    width: int
    height: int
    # "JPEG", "PNG", "WEBP", "GIF", "BMP" or "TIFF", from the content.
    format: str


def read_file(path: Path) -> bytes:
    """The whole content of ``path``; ImageError if unreadable, not a regular file or empty."""
    source = str(path)
    try:
        # stat before open: opening a FIFO or a device could block or never end.
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageError(source, "no such file") from None
    except PermissionError:
        raise ImageError(source, "permission denied") from None
    except OSError as exc:
        raise ImageError(source, f"cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(source, "not a regular file (a directory)")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(source, "not a regular file")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except PermissionError:
        raise ImageError(source, "permission denied") from None
    except IsADirectoryError:
        raise ImageError(source, "not a regular file (a directory)") from None
    except OSError as exc:
        raise ImageError(source, f"cannot read ({exc.strerror or exc})") from None
    if not data:
        raise ImageError(source, "empty file")
    return data


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` as 64 lowercase hex digits."""
    return hashlib.sha256(data).hexdigest()


def sniff_format(data: bytes) -> str | None:
    """The accepted format of ``data`` from its magic bytes ("JPEG", "PNG", ...), or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:2] == b"BM":
        return "BMP"
    # Classic TIFF (42) and BigTIFF (43), both byte orders.
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    return None


def _not_accepted_reason(data: bytes) -> str:
    """Why ``data`` (not an accepted format) is refused: a named format or what it looks like."""
    for magic, name in _OTHER_SIGNATURES:
        if data.startswith(magic):
            return f"unsupported format {name}"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in _AVIF_BRANDS:
            return "unsupported format AVIF"
        if brand in _HEIF_BRANDS:
            return "unsupported format HEIF"
        return "not an image (ISO media file, e.g. video)"
    if data[:4] == b"RIFF":
        if len(data) < 12:
            return "truncated file (RIFF header only)"
        return f"not an image (RIFF {data[8:12].decode('latin-1')!r} file)"
    head = data[:1024]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # A multi-byte character cut at the 1024-byte boundary is still text.
        text = head[:-4].decode("utf-8", errors="replace")
        if "\ufffd" in text:
            text = ""
    if text:
        lowered = text.lstrip("\ufeff \t\r\n").lower()
        if lowered.startswith("<svg") or (lowered.startswith("<?xml") and "<svg" in lowered):
            return "unsupported format SVG"
        if all(c.isprintable() or c in "\t\r\n" for c in text):
            return "not an image (text)"
    return f"not an image (unrecognised signature {data[:8].hex(' ')})"


def decode(
    data: bytes,
    source: str,
    *,
    min_side: int | None,
    max_pixels: int,
    gate: DecodeGate | None = None,
) -> Decoded:
    """Decode ``data`` into an upright RGB image; ImageError / ImageTooLarge if it cannot.

    ``min_side``: the shorter side the caller needs. JPEGs much larger than that are decoded
    at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, far cheaper than a full decode) with the
    shorter side kept >= ``min_side``; other formats are box-reduced by an integer factor
    while converting, keeping it >= 2 x ``min_side`` (large PNGs band by band while
    decoding: see ``lookalike.decode.png``). ``max_pixels``: images with more pixels (read
    from the header, before any pixel is decoded) raise ImageTooLarge. ``gate``: decodes
    whose estimated memory is large run only in one of its slots (Busy if none frees in
    time); None: no admission control.
    """
    if not data:
        raise ImageError(source, "empty file")
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageError(source, _not_accepted_reason(data))
    im = _open(data, fmt, source)
    _check_pixels(im, source, max_pixels)
    width, height = im.size  # draft mode changes im.size to the reduced one
    if fmt == "JPEG" and min_side is not None and min_side > 0:
        _draft(im, min_side, source)
    # JPEGs are reduced by draft mode only: their DCT scaling already left few pixels.
    factor = 1 if fmt == "JPEG" else reduce_factor(im.width, im.height, min_side)
    bands = png.layout(data) if fmt == "PNG" and _buffer_bytes(im) > 4 * rgb.BAND_BYTES else None
    cost = _cost(im, fmt, factor, banded=bands is not None)
    with gate.admit(cost) if gate is not None else nullcontext():
        pixels, orientation = _pixels(im, fmt, source, factor, bands)
    if bands is not None:
        # Tens of megabytes of bands went through this thread's malloc arena.
        release_freed_memory()
    fix = _ORIENTATION_FIX.get(orientation)
    if fix is not None:
        pixels = pixels.transpose(fix)
        if fix in _TURNS:
            width, height = height, width
    return Decoded(image=pixels, width=width, height=height, format=fmt)


def _open(data: bytes, fmt: str, source: str) -> ImageFile.ImageFile:
    """``data`` opened by the plugin of ``fmt`` (its header read, no pixel decoded)."""
    try:
        return _OPENERS[fmt](io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Only GIFs whose frames grow the canvas reach Pillow's own check inside open.
        raise ImageTooLarge(source, f"over the pixel limit ({exc})") from None
    except Exception as exc:
        if fmt == "WEBP" and _riff_truncated(data):
            # libwebp only says "could not create decoder object" for a cut file.
            raise ImageError(source, "truncated WEBP data (shorter than its RIFF size)") from None
        raise ImageError(source, f"truncated or invalid {fmt} header ({_short(exc)})") from None


def _draft(im: ImageFile.ImageFile, min_side: int, source: str) -> None:
    """Set the opened JPEG ``im`` to decode at the smallest DCT scale keeping ``min_side``."""
    # A square request keeps *both* sides >= min_side, so the shorter side stays large
    # enough whichever way EXIF orientation later turns the image. Pillow picks the
    # largest power-of-two scale (<= 8) that honours it, or none.
    try:
        im.draft("RGB", (min_side, min_side))
    except Exception as exc:
        raise ImageError(source, f"invalid JPEG ({_short(exc)})") from None


def _riff_truncated(data: bytes) -> bool:
    """Whether a RIFF file is shorter than the size its header declares."""
    declared = int.from_bytes(data[4:8], "little")
    return len(data) < 8 + declared


def decode_file(
    path: Path, *, min_side: int | None, max_pixels: int, gate: DecodeGate | None = None
) -> tuple[bytes, Decoded]:
    """The bytes of ``path`` (for hashing) and their decoded image (see :func:`decode`)."""
    data = read_file(path)
    return data, decode(data, str(path), min_side=min_side, max_pixels=max_pixels, gate=gate)


def _check_pixels(im: Image.Image, source: str, max_pixels: int) -> None:
    """ImageTooLarge if the header of the opened ``im`` declares over ``max_pixels``."""
    width, height = im.size
    if width * height > max_pixels:
        raise ImageTooLarge(
            source,
            f"{width}x{height} = {width * height / 1e6:.1f} MP is over the limit of "
            f"{max_pixels / 1e6:.1f} MP",
        )


def _buffer_bytes(im: Image.Image) -> int:
    """The bytes of Pillow's buffer for the opened ``im`` once loaded (its mode, its size)."""
    return im.width * im.height * _PIXEL_BYTES.get(im.mode, 4)


def _cost(im: Image.Image, fmt: str, factor: int, *, banded: bool) -> int:
    """Estimated peak bytes of decoding the opened ``im`` into RGB reduced by ``factor``."""
    out = -(-im.width // factor) * -(-im.height // factor) * 4
    if banded:
        return out + 8 * rgb.BAND_BYTES  # a band's scanlines, its PNG, pixels and conversions
    # WebP: libwebp's canvas and working buffers, the frame's bytes, then Pillow's copy
    # (~1.5 GB for 100 MP of RGBA: BENCHMARKS.md, memory); 32-bit greys are scaled
    # through numpy copies (int32, then float64) of the whole image.
    copies = 4 if fmt == "WEBP" or im.mode in ("I", "F") else 1
    return copies * _buffer_bytes(im) + out


def _pixels(
    im: ImageFile.ImageFile, fmt: str, source: str, factor: int, bands: png.PngLayout | None
) -> tuple[Image.Image, int]:
    """The pixels of the opened ``im`` in RGB, reduced by ``factor`` but not yet turned
    upright, and the EXIF orientation that will do it.

    When the result is a new image, ``im``'s own buffer is freed before returning.
    """
    try:
        if bands is not None:
            return png.decode_bands(bands, factor), _orientation(im, bands)
        im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(source, f"over the pixel limit ({exc})") from None
    except (OSError, EOFError, SyntaxError, ValueError) as exc:
        msg = _short(exc)
        if isinstance(exc, EOFError) or "truncated" in msg or "broken data stream" in msg:
            raise ImageError(source, f"truncated {fmt} data ({msg})") from None
        raise ImageError(source, f"corrupt {fmt} data ({msg})") from None
    except MemoryError:
        raise ImageError(source, "out of memory while decoding") from None
    except ImageError as exc:
        raise ImageError(source, exc.reason) from None
    except Exception as exc:
        raise ImageError(source, f"cannot decode {fmt} ({_short(exc)})") from None
    orientation = _orientation(im, None)
    try:
        out = rgb_reduced(im, factor)
    except ImageError as exc:
        raise ImageError(source, exc.reason) from None
    except MemoryError:
        raise ImageError(source, "out of memory while converting") from None
    except Exception as exc:
        raise ImageError(source, f"cannot convert {im.mode} to RGB ({_short(exc)})") from None
    if out is not im:
        # Frees the full-size buffer now, inside the gate's slot, not when the caller's
        # references go (closing an RGB image returned as is would free the result).
        im.close()
    return out, orientation


def _orientation(im: Image.Image, bands: png.PngLayout | None) -> int:
    """The EXIF orientation of ``im`` (1..8), 1 when absent or unreadable."""
    if bands is not None and "exif" not in im.info:
        # Pillow would decode the whole PNG to look for an eXIf chunk after the pixels;
        # the band reader has found it (or found none).
        im.info["exif"] = b"Exif\x00\x00" + bands.exif if bands.exif else b""
    try:
        value = im.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:
        # Corrupt EXIF must not cost the picture: show it as stored.
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _short(exc: BaseException, limit: int = 160) -> str:
    """A one-line, bounded description of ``exc`` for error reasons."""
    msg = str(exc).strip().replace("\n", " ") or type(exc).__name__
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."
