"""Uploaded images: size limits, and content-addressed storage in the data folder.

Uploads are kept as ``<uploads>/<sha256[:2]>/<sha256>.<ext>`` (``<data>/uploads`` unless the
``uploads_dir`` setting names a shared folder) and indexed like any file, so storing the same
bytes twice is one file and one image (idempotent by hash).
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import UploadFile

from lookalike.decode import decode_gate
from lookalike.decode.image import Decoded, decode, sha256_hex, sniff_format
from lookalike.errors import BadInput, ImageError, TooLarge
from lookalike.files import atomic_write, is_under
from lookalike.settings import Settings

UPLOAD_DIR = "uploads"
_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}
# Enough to prove an upload decodes; JPEGs are decoded at a reduced scale (draft mode).
_CHECK_SIDE = 64


def upload_name(upload: UploadFile) -> str:
    """The client's file name, or "upload" when it sent none."""
    return upload.filename or "upload"


async def read_upload(upload: UploadFile, settings: Settings) -> bytes:
    """The bytes of one uploaded file; TooLarge over ``upload_max_bytes``, ImageError if empty."""
    limit = settings.upload_max_bytes
    name = upload_name(upload)
    _check_declared_size(upload, limit)
    data = await upload.read(limit + 1)
    return _checked(data, name, limit)


def read_upload_sync(upload: UploadFile, settings: Settings) -> bytes:
    """``read_upload`` for plain ``def`` routes (run in the thread pool): reads from the
    start of the spooled file, so a second call gives the same bytes again."""
    limit = settings.upload_max_bytes
    _check_declared_size(upload, limit)
    upload.file.seek(0)
    return _checked(upload.file.read(limit + 1), upload_name(upload), limit)


def _check_declared_size(upload: UploadFile, limit: int) -> None:
    if upload.size is not None and upload.size > limit:
        name = upload_name(upload)
        raise TooLarge(f"{name}: {upload.size} bytes is over the upload limit of {limit}")


def _checked(data: bytes, name: str, limit: int) -> bytes:
    if len(data) > limit:
        raise TooLarge(f"{name}: over the upload limit of {limit} bytes")
    if not data:
        raise ImageError(name, "empty file")
    return data


def check_image(data: bytes, name: str, settings: Settings) -> Decoded:
    """Decode ``data`` enough to know it is a whole image within the pixel limit; raises
    ImageError (400) or ImageTooLarge (413) with the decoder's reason, Busy (503) when
    too many large images are being decoded."""
    return decode(
        data,
        name,
        min_side=_CHECK_SIDE,
        max_pixels=settings.max_image_pixels,
        gate=decode_gate(settings),
    )


def upload_dir(settings: Settings) -> Path:
    """Where uploads are stored: the ``uploads_dir`` setting, else ``<data>/uploads``."""
    return settings.uploads_dir or settings.data_dir / UPLOAD_DIR


def remove_upload(path: str, settings: Settings) -> bool:
    """Delete ``path`` if it is a stored upload (a file under ``<data>/uploads``); whether
    a file was deleted. Files elsewhere (indexed folders) are never touched."""
    root = os.path.realpath(upload_dir(settings))
    real = os.path.realpath(path)
    if real == root or not is_under(real, root):
        return False
    try:
        os.unlink(real)
    except FileNotFoundError:
        return False
    return True


def store_upload(data: bytes, settings: Settings) -> Path:
    """Write ``data`` under its hash (atomically; nothing if already there); its path."""
    fmt = sniff_format(data)
    if fmt is None:
        raise BadInput("not an image: JPEG, PNG, WebP, GIF, BMP or TIFF expected")
    sha = sha256_hex(data)
    folder = upload_dir(settings) / sha[:2]
    path = folder / f"{sha}.{_EXT[fmt]}"
    if path.exists():
        return path
    atomic_write(path, data)
    return path
