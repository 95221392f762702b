"""BLAS kept on the calling thread while ONNX Runtime does the heavy work.

numpy's OpenBLAS runs each matrix product on every core, and its threads then spin for a
while (~0.1 s) waiting for more. An index run alternates the network (ONNX Runtime, its own
threads on every core) with small numpy products (pooling the feature maps): the spinning
BLAS threads then hold the cores ONNX Runtime's threads need. On 2 cores the cnn's pass
over camera photos took 22-24 ms per image instead of 14-15 (the network alone: 11), and
indexing them ran at 31 images/s instead of 45-48.

So indexing describes images inside :func:`single_threaded_blas`. OpenBLAS has one thread
pool per process: the first thread in sets the limit and lifts it when it leaves; a thread
coming in meanwhile shares it and changes nothing (so a limit is never left behind, nor
lifted under its owner).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["single_threaded_blas"]

_lock = threading.Lock()
_owner: threading.Thread | None = None  # the thread that set the limit
_depth = 0  # its nested uses
_limiter: Any = None  # threadpoolctl's limit while it holds


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """numpy's BLAS on one thread while inside (process-wide; see the module docstring)."""
    global _owner, _depth, _limiter
    me = threading.current_thread()
    with _lock:
        if _owner is None:
            from threadpoolctl import threadpool_limits

            _limiter, _owner = threadpool_limits(limits=1, user_api="blas"), me
        owns = _owner is me
        _depth += owns
    try:
        yield
    finally:
        if owns:
            with _lock:
                _depth -= 1
                if _depth == 0:
                    _limiter.__exit__(None, None, None)  # restores, releases the pool
                    _limiter = _owner = None
