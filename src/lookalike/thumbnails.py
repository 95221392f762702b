"""Image thumbnails for the web page: made once per content and size, kept on disk, and sent
with an ETag so that a browser that has one asks again for nothing but a 304.

A thumbnail is named by its image's SHA-256 and size (``<data>/thumbnails/<sha[:2]>/
<sha>-<size>.jpg``): the same bytes under another path, or a later image reusing a deleted
one's id, never gets another image's thumbnail. Only the sizes the page asks for are kept,
so a client walking through every size cannot fill the disk. Thumbnails of images that left
the catalog are deleted by :func:`prune`, which indexing and removal run.
"""

from __future__ import annotations

import contextlib
import io
import re
import time
from collections.abc import Callable, Collection
from pathlib import Path

from lookalike.errors import NotFound
from lookalike.files import atomic_write
from lookalike.settings import Settings
from lookalike.sheet import load_thumbnail
from lookalike.store.base import ImageRow

THUMBNAIL_DIR = "thumbnails"
# The sizes kept on disk (the page's grid, its retina grid, the photo view); others are made
# on each request.
KEPT_SIZES = frozenset({128, 256, 512, 1024})
# The browser keeps a copy but asks each time whether it is current (an id may be reused
# after a delete, so no max-age); the answer is a 304 whenever the ETag matches.
CACHE_CONTROL = "private, no-cache"
# A kept thumbnail's file name, and the temporary one atomic_write gives it while writing.
_KEPT = re.compile(r"([0-9a-f]{64})-[0-9]+\.jpg")
_PARTIAL = re.compile(r"\.[0-9a-f]{64}-[0-9]+\.jpg\..*\.tmp")
# A temporary file this old was left by a writer that was killed: no write takes this long.
PARTIAL_AGE_S = 3600.0


def etag(row: ImageRow, size: int) -> str:
    """The thumbnail's ETag: its image's content hash and its size, quoted."""
    return f'"{row.sha256}-{size}"'


def matches(if_none_match: str | None, tag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``tag`` (or ``*``); weak tags count too."""
    if not if_none_match:
        return False
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return tag in tags or "*" in tags


def _cached_path(settings: Settings, sha256: str, size: int) -> Path:
    return settings.data_dir / THUMBNAIL_DIR / sha256[:2] / f"{sha256}-{size}.jpg"


def thumbnail_jpeg(row: ImageRow, size: int, settings: Settings) -> bytes:
    """The JPEG thumbnail of ``row`` whose longer side is at most ``size``: from the disk cache
    when kept there, else made from the first of its files that can be read (and kept, for
    a kept size). NotFound when none can."""
    cached = _cached_path(settings, row.sha256, size)
    if size in KEPT_SIZES:
        with contextlib.suppress(OSError):
            return cached.read_bytes()
    for path in row.paths:
        thumb = load_thumbnail(path, size, max_pixels=settings.max_image_pixels)
        if thumb is not None:
            buf = io.BytesIO()
            thumb.save(buf, "JPEG", quality=85)
            data = buf.getvalue()
            if size in KEPT_SIZES:
                # A data folder that cannot be written to still serves thumbnails.
                with contextlib.suppress(OSError):
                    atomic_write(cached, data)
            return data
    raise NotFound(f"image {row.id}: none of its files can be read any more")


def forget_thumbnails(sha256: str, settings: Settings) -> None:
    """Delete the kept thumbnails of the image with this content (it left the catalog)."""
    for size in KEPT_SIZES:
        with contextlib.suppress(OSError):
            _cached_path(settings, sha256, size).unlink()


def prune(settings: Settings, known: Callable[[Collection[str]], set[str]]) -> int:
    """Delete the kept thumbnails of images that left the catalog, and temporary files that
    killed writers left; returns how many files were deleted.

    ``known(shas)``: those of ``shas`` still in the catalog (``Catalog.known_sha256``). A
    thumbnail deleted while its image comes back is made again on its next request.
    """
    kept: dict[str, list[Path]] = {}
    stale: list[Path] = []
    cutoff = time.time() - PARTIAL_AGE_S
    for path in _files(settings.data_dir / THUMBNAIL_DIR):
        if match := _KEPT.fullmatch(path.name):
            kept.setdefault(match[1], []).append(path)
        elif _PARTIAL.fullmatch(path.name) and _mtime(path) < cutoff:
            stale.append(path)
    present = known(list(kept)) if kept else set()
    stale += [p for sha, paths in kept.items() if sha not in present for p in paths]
    deleted = 0
    for path in stale:
        with contextlib.suppress(OSError):
            path.unlink()
            deleted += 1
    return deleted


def _files(root: Path) -> list[Path]:
    """The files one folder down from ``root`` (none if it cannot be listed)."""
    out: list[Path] = []
    with contextlib.suppress(OSError):
        for folder in root.iterdir():
            with contextlib.suppress(OSError):
                out += [p for p in folder.iterdir() if p.is_file()]
    return out


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return float("inf")  # gone already: nothing to delete
