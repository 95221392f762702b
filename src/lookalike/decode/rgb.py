"""The one conversion of any PIL image to 8-bit RGB, band by band, optionally box-reduced.

Everything that turns an arbitrary image into RGB (the decoder, the descriptors, the face
pipeline, contact sheets, annotations) goes through :func:`to_rgb`, so they all see the
same pixels: transparency composited over white, 16-bit greys divided by 257.

Large images are converted a band of rows at a time: a 100-megapixel RGBA image costs its
own buffer and a few megabytes, not the four full-size copies that converting, compositing
and converting back would make. When the caller needs fewer pixels (``min_side``), each
band is box-reduced by an integer factor right after its conversion, so the full-size RGB
image never exists either.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from lookalike.errors import ImageError

__all__ = ["band_rows", "reduce_factor", "rgb_reduced", "to_rgb"]

# Rows are converted in bands of about this many bytes (Pillow keeps 4 bytes per RGB pixel).
BAND_BYTES = 4 * 1024 * 1024
# Reduction stops while the shorter side is still >= REDUCING_GAP x min_side: the caller's
# own resampling (antialiased) does the rest, so the box filter's coarseness never shows.
REDUCING_GAP = 2
# Greys whose 8-bit form depends on the range of the whole image: converted in one piece.
_WIDE_GREY = ("I", "F", "I;32", "F;32")
_GREY_16 = ("I;16", "I;16L", "I;16B", "I;16N", "I;16S")


def reduce_factor(width: int, height: int, min_side: int | None) -> int:
    """The integer box-reduction factor that keeps the shorter side >= REDUCING_GAP x
    ``min_side``; 1 (no reduction) when ``min_side`` is None or the image is small."""
    if min_side is None or min_side <= 0:
        return 1
    return max(1, min(width, height) // (REDUCING_GAP * min_side))


def band_rows(width: int, factor: int) -> int:
    """Rows per band for an image ``width`` pixels wide: about BAND_BYTES of RGB, and a
    multiple of ``factor`` so that bands reduce exactly as the whole image would."""
    return factor * max(1, BAND_BYTES // (4 * max(1, width) * factor))


def to_rgb(image: Image.Image, *, min_side: int | None = None) -> Image.Image:
    """``image`` as 8-bit RGB; transparency composited over white, 16-bit greys / 257.

    With ``min_side``, box-reduced by :func:`reduce_factor`. Returns ``image`` itself when
    it is already RGB without transparency and needs no reduction (copy it before drawing
    on it). Raises ImageError (with an empty source) for modes with no sensible RGB form.
    """
    return rgb_reduced(image, reduce_factor(image.width, image.height, min_side))


def rgb_reduced(image: Image.Image, factor: int) -> Image.Image:
    """``image`` in RGB, box-reduced by ``factor`` (1: none), converted band by band."""
    if image.mode in _WIDE_GREY:
        rgb = _convert(image)
        return rgb.reduce(factor) if factor > 1 else rgb
    if factor == 1 and image.mode == "RGB" and "transparency" not in image.info:
        return image
    width, height = image.size
    rows = band_rows(width, factor)
    if rows >= height:
        rgb = _convert(image)
        return rgb.reduce(factor) if factor > 1 else rgb
    out = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        band = _convert(image.crop((0, top, width, min(height, top + rows))))
        out.paste(band.reduce(factor) if factor > 1 else band, (0, top // factor))
    return out


def _convert(im: Image.Image) -> Image.Image:
    """``im`` (whole, no reduction) as 8-bit RGB; ``im`` itself if it is that already."""
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode in _GREY_16 or mode in _WIDE_GREY:
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
