"""Admission for large decodes: at most a few run at once in a process.

A decode's memory is estimated from the header before any pixel is decoded. One over
``decode_large_bytes`` takes a slot of a process-wide semaphore (``decode_slots`` of them)
for its duration; queries wait at most ``decode_wait_s`` for one and then raise Busy
(the server answers 503 with Retry-After), indexing waits its turn (``queueing``).

glibc keeps memory freed by a thread in that thread's arena, so a server's RSS would stay at
its peak after a large decode; each one ends by handing freed pages back (``malloc_trim``).
"""

from __future__ import annotations

import ctypes
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from lookalike.errors import Busy
from lookalike.settings import Settings

__all__ = ["DecodeGate", "decode_gate", "release_freed_memory"]


class _Slots:
    """One process-wide semaphore, and how long the decodes holding it usually take."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.semaphore = threading.BoundedSemaphore(count)
        self._lock = threading.Lock()
        self._typical_s = 1.0

    def record(self, seconds: float) -> None:
        """Fold one decode's duration into the typical one (exponential average)."""
        with self._lock:
            self._typical_s = 0.7 * self._typical_s + 0.3 * seconds

    def retry_after(self) -> int:
        """Whole seconds after which a slot is likely free again (at least 1)."""
        with self._lock:
            return max(1, math.ceil(self._typical_s))


_SLOTS: dict[int, _Slots] = {}
_SLOTS_LOCK = threading.Lock()


@dataclass(frozen=True)
class DecodeGate:
    """Lets decodes over ``large_bytes`` run only while holding one of the shared slots."""

    slots: _Slots
    large_bytes: int
    # Seconds to wait for a slot before Busy; None: wait as long as it takes.
    wait_s: float | None

    def queueing(self) -> DecodeGate:
        """The same slots, but waiting for one as long as it takes (batch work)."""
        return replace(self, wait_s=None)

    @contextmanager
    def admit(self, cost: int) -> Iterator[None]:
        """Run the body at once if ``cost`` (bytes) is small, else inside a slot."""
        if cost <= self.large_bytes:
            yield
            return
        with self.slot():
            yield

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for the body; Busy if none frees within ``wait_s``. Afterwards the
        memory the body freed is handed back to the system."""
        semaphore = self.slots.semaphore
        if self.wait_s is None:
            semaphore.acquire()
        elif not semaphore.acquire(timeout=self.wait_s):
            after = self.slots.retry_after()
            raise Busy(
                f"too many large images are being decoded (at most {self.slots.count} at "
                f"once); retry in {after} s",
                retry_after=after,
            )
        start = time.monotonic()
        try:
            yield
        finally:
            semaphore.release()
            self.slots.record(time.monotonic() - start)
            release_freed_memory()


def decode_gate(settings: Settings) -> DecodeGate:
    """The gate of this process for ``settings``: its ``decode_slots`` are shared by every
    caller with that many slots; waits up to ``decode_wait_s`` (queries)."""
    with _SLOTS_LOCK:
        slots = _SLOTS.get(settings.decode_slots)
        if slots is None:
            slots = _SLOTS[settings.decode_slots] = _Slots(settings.decode_slots)
    return DecodeGate(slots, settings.decode_large_bytes, settings.decode_wait_s)


def _find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None elsewhere (musl, macOS, Windows)."""
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError, AttributeError):
        return None
    if not libc.startswith("glibc"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    found: Callable[[int], int] = trim
    return found


_MALLOC_TRIM = _find_malloc_trim()


def release_freed_memory() -> None:
    """Hand the free pages of every malloc arena back to the system (glibc only)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
