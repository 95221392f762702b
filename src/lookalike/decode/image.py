"""Read and decode image files safely: format by content, pixel limit before decoding.

Pillow's own safety nets are global (``Image.MAX_IMAGE_PIXELS``, ``LOAD_TRUNCATED_IMAGES``)
and shared with anything else in the process, so this module leaves them alone and checks
the header itself. Everything here is safe to call from several threads at once: no global
state is touched, each call works on its own buffer and image objects.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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

    # Mode RGB, EXIF orientation applied; JPEGs may be reduced (draft mode).
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


def decode(data: bytes, source: str, *, min_side: int | None, max_pixels: int) -> Decoded:
    """Decode ``data`` into an upright RGB image; ImageError / ImageTooLarge if it cannot.

    ``min_side``: the shorter side the caller needs; JPEGs much larger than that are decoded
    at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, far cheaper than a full decode) with the
    shorter side kept >= ``min_side``. ``max_pixels``: images with more pixels (read from the
    header, before any pixel is decoded) raise ImageTooLarge.
    """
    if not data:
        raise ImageError(source, "empty file")
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageError(source, _not_accepted_reason(data))

    try:
        im = _OPENERS[fmt](io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Only GIFs whose frames grow the canvas reach Pillow's own check inside open.
        raise ImageTooLarge(source, f"over the pixel limit ({exc})") from None
    except Exception as exc:
        if fmt == "WEBP" and _riff_truncated(data):
            # libwebp only says "could not create decoder object" for a cut file.
            raise ImageError(source, "truncated WEBP data (shorter than its RIFF size)") from None
        raise ImageError(source, f"truncated or invalid {fmt} header ({_short(exc)})") from None

    # Not closed afterwards: closing would also free the pixels of an RGB image, which is
    # returned as is (no copy); the stream is an in-memory buffer with nothing to release.
    return _decode_opened(im, fmt, source, min_side=min_side, max_pixels=max_pixels)


def _riff_truncated(data: bytes) -> bool:
    """Whether a RIFF file is shorter than the size its header declares."""
    declared = int.from_bytes(data[4:8], "little")
    return len(data) < 8 + declared


def decode_file(path: Path, *, min_side: int | None, max_pixels: int) -> tuple[bytes, Decoded]:
    """The bytes of ``path`` (for hashing) and their decoded image."""
    data = read_file(path)
    return data, decode(data, str(path), min_side=min_side, max_pixels=max_pixels)


def _decode_opened(
    im: ImageFile.ImageFile, fmt: str, source: str, *, min_side: int | None, max_pixels: int
) -> Decoded:
    """Check the size of the opened ``im``, then decode, convert and orient it."""
    width, height = im.size
    if width * height > max_pixels:
        raise ImageTooLarge(
            source,
            f"{width}x{height} = {width * height / 1e6:.1f} MP is over the limit of "
            f"{max_pixels / 1e6:.1f} MP",
        )

    if fmt == "JPEG" and min_side is not None and min_side > 0:
        # A square request keeps *both* sides >= min_side, so the shorter side stays large
        # enough whichever way EXIF orientation later turns the image. Pillow picks the
        # largest power-of-two scale (<= 8) that honours it, or none.
        try:
            im.draft("RGB", (min_side, min_side))
        except Exception as exc:
            raise ImageError(source, f"invalid JPEG ({_short(exc)})") from None

    try:
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
    except Exception as exc:
        raise ImageError(source, f"cannot decode {fmt} ({_short(exc)})") from None

    orientation = _orientation(im)
    try:
        rgb = to_rgb(im)
        fix = _ORIENTATION_FIX.get(orientation)
        if fix is not None:
            rgb = rgb.transpose(fix)
    except ImageError as exc:
        raise ImageError(source, exc.reason) from None
    except MemoryError:
        raise ImageError(source, "out of memory while converting") from None
    except Exception as exc:
        raise ImageError(source, f"cannot convert {im.mode} to RGB ({_short(exc)})") from None

    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return Decoded(image=rgb, width=width, height=height, format=fmt)


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation of ``im`` (1..8), 1 when absent or unreadable."""
    try:
        value = im.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:
        # Corrupt EXIF must not cost the picture: show it as stored.
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def to_rgb(im: Image.Image) -> Image.Image:
    """``im`` as an 8-bit RGB image; transparency is composited over white.

    Raises ImageError (with an empty source) for modes that have no sensible RGB form.
    """
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I;16S", "I", "F", "I;32", "F;32"):
        # A 2-D uint8 array becomes mode "L" (fromarray's mode argument is deprecated).
        return Image.fromarray(_gray_to_uint8(np.asarray(im))).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        "transparency" in im.info and mode in ("P", "L", "RGB", "1")
    ):
        # Black behind transparent pixels would make logos and icons look alike
        # (and dark); white is what viewers and browsers show.
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in ("1", "L", "P", "RGBX", "CMYK", "YCbCr", "RGB"):
        # CMYK: the JPEG plugin already undoes Adobe's inverted CMYK (APP14 marker).
        return im.convert("RGB")
    if mode == "LAB":
        return _lab_to_rgb(im)
    try:
        return im.convert("RGB")
    except ValueError:
        raise ImageError("", f"unsupported colour mode {mode}") from None


def _lab_to_rgb(im: Image.Image) -> Image.Image:
    """A CIELAB image (TIFF only) in sRGB; Pillow's ``convert`` has no LAB -> RGB path."""
    from PIL import ImageCms

    transform = ImageCms.buildTransform(
        ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"
    )
    out = ImageCms.applyTransform(im, transform)
    if out is None:
        raise ImageError("", "cannot convert LAB to RGB")
    return out


def _gray_to_uint8(a: np.ndarray) -> np.ndarray:
    """8-bit grey levels from 16/32-bit integer or float greys, scaled by their type's range.

    Pillow keeps 16-bit PNG/TIFF greys as "I;16" or widens them to "I" (int32) with
    0..65535 values: both map 0..65535 -> 0..255 (divide by 257, so 65535 is exactly 255).
    Wider integer data and floats have no fixed range in practice: floats in [0, 1] are
    scaled by 255, anything else is stretched from its minimum to its maximum.
    """
    if a.dtype.kind == "u" and a.dtype.itemsize == 2:
        return _div257(a)
    if a.dtype.kind == "i" and a.dtype.itemsize == 2:
        # Signed 16-bit: shift -32768..32767 to 0..65535 first.
        return _div257(a.astype(np.int32) + 32768)
    if a.dtype.kind in "ui":
        if a.size and int(a.min()) >= 0 and int(a.max()) <= 0xFFFF:
            return _div257(a)
        return _stretch(a.astype(np.float64))
    f = a.astype(np.float64)
    finite = np.isfinite(f)
    if not finite.all():
        f = np.where(finite, f, 0.0)
    if f.size and f.min() >= 0.0 and f.max() <= 1.0:
        unit: np.ndarray = np.rint(f * 255.0).astype(np.uint8)
        return unit
    return _stretch(f)


def _div257(a: np.ndarray) -> np.ndarray:
    """0..65535 values rounded to 0..255 (65535 / 257 == 255 exactly: no clipping needed)."""
    out: np.ndarray = np.rint(a.astype(np.float32) / np.float32(257.0)).astype(np.uint8)
    return out


def _stretch(f: np.ndarray) -> np.ndarray:
    """``f`` linearly mapped from [min, max] to 0..255 (all zero when flat)."""
    lo, hi = float(f.min()), float(f.max())
    if hi <= lo:
        return np.zeros(f.shape, np.uint8)
    return np.rint((f - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _short(exc: BaseException, limit: int = 160) -> str:
    """A one-line, bounded description of ``exc`` for error reasons."""
    msg = str(exc).strip().replace("\n", " ") or type(exc).__name__
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."
