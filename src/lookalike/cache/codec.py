"""Arrays as bytes for the cache, without pickle (a cache's bytes come from the network).

Layout: ``MAGIC``, a 4-byte big-endian length, a JSON header (``dtype``, ``shape`` and the
caller's ``meta``), then the array's raw C-order bytes. Only the dtypes of
:data:`DTYPES` are read back, and the byte count must match the header's shape.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np

__all__ = ["DTYPES", "MAGIC", "pack_array", "unpack_array"]

MAGIC = b"LKA1"
DTYPES = frozenset({"float32", "uint8"})
_LENGTH = struct.Struct(">I")
# A header is a few hundred bytes; anything larger is garbage.
_MAX_HEADER = 1024 * 1024


def pack_array(array: np.ndarray, meta: Any = None) -> bytes:
    """``array`` (a dtype of DTYPES) and JSON-able ``meta`` as bytes."""
    if array.dtype.name not in DTYPES:
        raise ValueError(f"cannot pack an array of {array.dtype}")
    header = json.dumps(
        {"dtype": array.dtype.name, "shape": list(array.shape), "meta": meta},
        separators=(",", ":"),
    ).encode()
    body = np.ascontiguousarray(array).tobytes()
    return MAGIC + _LENGTH.pack(len(header)) + header + body


def unpack_array(data: bytes) -> tuple[np.ndarray, Any]:
    """``(array, meta)`` of :func:`pack_array`'s bytes; ValueError if they are not that."""
    start = len(MAGIC) + _LENGTH.size
    if len(data) < start or not data.startswith(MAGIC):
        raise ValueError("not a packed array")
    (length,) = _LENGTH.unpack_from(data, len(MAGIC))
    if length > min(_MAX_HEADER, len(data) - start):
        raise ValueError("bad header length")
    header = json.loads(data[start : start + length])
    if not isinstance(header, dict):
        raise ValueError("bad header")
    dtype, shape = header.get("dtype"), header.get("shape")
    if dtype not in DTYPES or not isinstance(shape, list):
        raise ValueError("bad dtype or shape")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise ValueError("bad shape")
    body = data[start + length :]
    if math.prod(shape) * np.dtype(dtype).itemsize != len(body):
        raise ValueError("the array's bytes do not match its shape")
    array = np.frombuffer(body, dtype=dtype).reshape(shape).copy()
    return array, header.get("meta")
