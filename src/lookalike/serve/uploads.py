"""Uploaded images: size limits, and content-addressed storage in the data folder.

Uploads are kept as ``<data>/uploads/<sha256[:2]>/<sha256>.<ext>`` and indexed like any
file, so storing the same bytes twice is one file and one image (idempotent by hash).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fastapi import UploadFile

from lookalike.decode.image import sha256_hex, sniff_format
from lookalike.errors import BadInput, ImageError, TooLarge
from lookalike.settings import Settings

UPLOAD_DIR = "uploads"
_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}


async def read_upload(upload: UploadFile, settings: Settings) -> bytes:
    """The bytes of one uploaded file; TooLarge over ``upload_max_bytes``, BadInput if empty."""
    limit = settings.upload_max_bytes
    name = upload.filename or "upload"
    if upload.size is not None and upload.size > limit:
        raise TooLarge(f"{name}: {upload.size} bytes is over the upload limit of {limit}")
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"{name}: over the upload limit of {limit} bytes")
    if not data:
        raise ImageError(name, "empty file")
    return data


def store_upload(data: bytes, settings: Settings) -> Path:
    """Write ``data`` under its hash (atomically; nothing if already there); its path."""
    fmt = sniff_format(data)
    if fmt is None:
        raise BadInput("not an image: JPEG, PNG, WebP, GIF, BMP or TIFF expected")
    sha = sha256_hex(data)
    folder = settings.data_dir / UPLOAD_DIR / sha[:2]
    path = folder / f"{sha}.{_EXT[fmt]}"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".up-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
