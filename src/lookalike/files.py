"""File-system helpers every stage shares: atomic writes, "is this path under that folder",
and paths shown to people.

Paths are ``str`` throughout lookalike. A file name that is not valid UTF-8 arrives from
``os.walk`` with its stray bytes as lone surrogates (Python's ``surrogateescape``), which
round-trip to the same bytes with :func:`os.fsencode`; :func:`shown` is how such a path is
printed or sent as JSON.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "is_under", "is_under_any", "shown"]


def atomic_write(
    target: Path,
    content: bytes | Callable[[BinaryIO], None],
    *,
    durable: bool = False,
    mode: int | None = None,
) -> Path:
    """Write ``content`` (bytes, or a function writing to a binary file) to ``target``.

    The data goes to a temporary file in the same folder, renamed into place: a reader sees
    the old file or the whole new one, never part of it, and a failed write leaves the old
    file as it was. ``durable``: fsync before the rename, so the new content survives a
    power cut once this returns. ``mode``: permission bits for the new file (mkstemp's
    default is 0600). Creates the folder. Returns ``target``.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            if isinstance(content, bytes | bytearray | memoryview):
                f.write(content)
            else:
                content(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def is_under(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or inside it, compared as written (no symlinks resolved:
    pass real paths when that matters)."""
    root = root.rstrip(os.sep) or os.sep
    return path == root or path.startswith(root if root == os.sep else root + os.sep)


def is_under_any(path: str, roots: Iterable[str]) -> bool:
    """Whether ``path`` is one of ``roots`` or inside one of them."""
    return any(is_under(path, r) for r in roots)


def shown(path: str | os.PathLike[str]) -> str:
    """``path`` as text fit to print or send as JSON: bytes that are not UTF-8 (held as
    lone surrogates) appear as ``\\xNN`` escapes; valid names are returned unchanged."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", errors="backslashreplace")
    return text


_SHOWN_BYTE = re.compile(rb"\\x([89a-f][0-9a-f])")


def unshown(text: str) -> str | None:
    """The path :func:`shown` turned into ``text``, when ``text`` holds its ``\\xNN``
    escapes of bytes that are not UTF-8; None when it holds none (it is its own path).

    Ambiguous by nature: a valid name may spell such an escape itself, so callers try
    ``text`` as it is first.
    """
    raw = _SHOWN_BYTE.sub(lambda m: bytes([int(m[1], 16)]), text.encode("utf-8", "surrogateescape"))
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return os.fsdecode(raw)
    return None
