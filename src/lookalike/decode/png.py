"""PNGs decoded a band of rows at a time: a huge, highly compressed PNG (a few hundred
kilobytes that claim 100 megapixels) never needs its full-size pixel buffer.

Pillow inflates and unfilters a PNG into one buffer holding the whole image (4 bytes per
pixel for RGB and RGBA). Here the zlib stream is inflated incrementally instead; each band
of scanlines is wrapped, as it is, in a small PNG of its own (the same header, palette and
transparency; the band's rows, stored uncompressed) that Pillow decodes exactly as it would
have decoded those rows in the whole file. PNG filters refer to the row above, so each small
PNG starts with the previous band's last row, unfiltered (filter type 0). Bands are turned
into RGB and box-reduced as they come (:func:`lookalike.decode.rgb.rgb_reduced`).

Applies to non-interlaced, non-animated PNGs of 8 or 16 bits per sample; others
(interlaced, 1/2/4 bits per sample, APNG) are decoded whole by Pillow.

Errors are Pillow's kinds (OSError, EOFError, ValueError), which the decoder turns into
ImageError reasons as it does for a whole decode.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, PngImagePlugin

from lookalike.decode.rgb import band_rows, rgb_reduced

__all__ = ["PngLayout", "decode_bands", "layout"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Samples per pixel by colour type: grey, RGB, palette, grey + alpha, RGBA.
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Chunks every band's PNG repeats: they change how its pixels are read.
_KEPT = (b"PLTE", b"tRNS")


@dataclass(frozen=True)
class PngLayout:
    """What band decoding needs from a PNG's chunks."""

    width: int
    height: int
    depth: int
    colour: int
    # The PLTE and tRNS chunks, whole (length, type, data, CRC).
    kept: bytes
    # The data of the IDAT chunks, in order: one zlib stream.
    idat: tuple[memoryview, ...]
    # The eXIf chunk's data, wherever it is (Pillow only sees one before IDAT unloaded).
    exif: bytes | None

    @property
    def stride(self) -> int:
        """Bytes per scanline: the filter-type byte and the row's samples."""
        return 1 + self.width * _CHANNELS[self.colour] * self.depth // 8


def layout(data: bytes) -> PngLayout | None:
    """How to decode ``data`` (a PNG) in bands, or None when it must be decoded whole:
    interlaced, fewer than 8 bits per sample, animated or with an unknown colour type."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if interlace or depth not in (8, 16) or colour not in _CHANNELS:
        return None
    kept: list[bytes] = []
    idat: list[memoryview] = []
    exif: bytes | None = None
    view = memoryview(data)
    pos = len(_SIGNATURE)
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        # Cut short: the rows it holds are read, then the reader says what is missing.
        body = view[pos + 8 : min(end - 4, len(data))]
        if kind == b"IDAT":
            idat.append(body)
        elif kind in _KEPT:
            kept.append(data[pos:end])
        elif kind == b"eXIf":
            exif = bytes(body)
        elif kind == b"acTL":
            return None
        elif kind == b"IEND":
            break
        pos = end
    return PngLayout(width, height, depth, colour, b"".join(kept), tuple(idat), exif)


def decode_bands(layout: PngLayout, factor: int) -> Image.Image:
    """The whole PNG in RGB, box-reduced by ``factor``, decoded band by band."""
    width, height = layout.width, layout.height
    rows = band_rows(width, factor)
    out = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    scanlines = _Inflater(layout.idat)
    prior = b""
    for top in range(0, height, rows):
        count = min(rows, height - top)
        band = _band(layout, prior, scanlines.read(count * layout.stride, top, height))
        prior = b"\x00" + _last_row_raw(band, layout)
        out.paste(rgb_reduced(band, factor), (0, top // factor))
    return out


def _band(layout: PngLayout, prior: bytes, scanlines: bytes) -> Image.Image:
    """The rows of ``scanlines`` (filtered, as in the file) decoded by Pillow in the image's
    own mode; ``prior``: the unfiltered row above them (empty for the first band)."""
    lead = 1 if prior else 0
    rows = lead + len(scanlines) // layout.stride
    header = struct.pack(">IIBBBBB", layout.width, rows, layout.depth, layout.colour, 0, 0, 0)
    png = b"".join(
        (
            _SIGNATURE,
            _chunk(b"IHDR", header),
            layout.kept,
            # Level 0: stored blocks, nothing to compress (Pillow inflates them at memcpy speed).
            _chunk(b"IDAT", zlib.compress(prior + scanlines, 0)),
            _chunk(b"IEND", b""),
        )
    )
    image = PngImagePlugin.PngImageFile(io.BytesIO(png))
    image.load()
    return image.crop((0, 1, layout.width, rows)) if lead else image


def _last_row_raw(band: Image.Image, layout: PngLayout) -> bytes:
    """The samples of ``band``'s last row as the PNG stores them, unfiltered.

    Pillow keeps only the high byte of 16-bit colour samples. PNG filters work byte by byte
    (each byte predicted from the same byte of the pixel to the left and of the row above),
    so high bytes unfilter right whatever the low bytes are: those are left zero.
    """
    last = np.asarray(band.crop((0, band.height - 1, band.width, band.height)))
    if last.dtype != np.uint8:  # 16-bit grey ("I;16"): both bytes kept, big-endian in PNG
        return last.astype(">u2").tobytes()
    if layout.depth == 8:
        return last.tobytes()
    samples = last.reshape(band.width, -1)
    if layout.colour == 4:  # 16-bit grey + alpha was widened to RGBA: take L and A back
        samples = samples[:, [0, 3]]
    raw = np.zeros((*samples.shape, 2), np.uint8)
    raw[..., 0] = samples
    return raw.tobytes()


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


class _Inflater:
    """The IDAT chunks' zlib stream, inflated a requested number of bytes at a time."""

    def __init__(self, chunks: tuple[memoryview, ...]) -> None:
        self._chunks: Iterator[memoryview] = iter(chunks)
        self._z = zlib.decompressobj()
        self._pending: bytes | memoryview = b""

    def read(self, size: int, top: int, height: int) -> bytes:
        """The next ``size`` bytes; EOFError if the stream ends first (rows ``top`` on of
        ``height`` missing), ValueError if it is corrupt."""
        out = bytearray()
        while len(out) < size:
            if not self._pending:
                following = None if self._z.eof else next(self._chunks, None)
                if following is None:
                    raise EOFError(f"truncated: image data ends in row {top} of {height}")
                self._pending = following
            try:
                out += self._z.decompress(self._pending, size - len(out))
            except zlib.error as exc:
                raise ValueError(f"corrupt image data ({exc})") from None
            self._pending = self._z.unconsumed_tail
        return bytes(out)
