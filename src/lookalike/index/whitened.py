"""An index that compares whitened rows, and the stored whitening it is built on.

The manager fits a :class:`~lookalike.index.whiten.Whitening` on a deterministic sample
of a descriptor's vectors once there are enough of them, keeps it in
``<data>/index/<name>.whiten`` and wraps the descriptor's index in a :class:`WhitenedIndex`:
rows and queries are whitened on the way in, so callers keep passing descriptor rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.errors import BadInput
from lookalike.files import atomic_write
from lookalike.index.base import VectorIndex
from lookalike.index.whiten import Whitening, WhiteningMismatch

# Most vectors a whitening is learned from: the covariance of 100k rows is as good as that
# of all of them, and a fit stays a few seconds at any collection size.
SAMPLE = 100_000
MAX_HEADER = 256  # bytes: the whitening file's first line


@dataclass(frozen=True)
class WhitenPolicy:
    """Which float descriptors are whitened and how (the ``whiten_*`` settings)."""

    descriptors: frozenset[str]
    dim: int  # 0: no whitening
    min_images: int
    power: float = 0.5
    shrinkage: float = 0.1

    def applies(self, name: str, width: int) -> bool:
        """Whether ``name``'s rows (``width`` wide) are whitened at all."""
        return self.dim > 0 and name in self.descriptors and self.dim <= width

    def matches(self, whitening: Whitening) -> bool:
        """Whether a stored whitening was fitted with these parameters."""
        return (whitening.dim, whitening.power, whitening.shrinkage) == (
            self.dim,
            self.power,
            self.shrinkage,
        )


@dataclass(frozen=True)
class Fitted:
    """A whitening and how many vectors the descriptor had when it was fitted (refitted
    once that count has doubled)."""

    whitening: Whitening
    count: int


def sample_positions(n: int) -> np.ndarray:
    """Which of ``n`` vectors (sorted positions, in id order) a whitening is fitted on: the
    same on every node that sees the same catalog."""
    if n <= SAMPLE:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, SAMPLE, replace=False))


def save(path: Path, fitted: Fitted) -> None:
    """Write ``fitted`` to ``path`` atomically: a JSON line, then the whitening's bytes."""
    head = json.dumps({"count": fitted.count}).encode() + b"\n"
    atomic_write(path, head + fitted.whitening.to_bytes(), durable=True)


def load(path: Path, source_version: str) -> Fitted:
    """The whitening ``save`` wrote; FileNotFoundError, or WhiteningMismatch if it is
    damaged or was fitted on another descriptor version."""
    data = path.read_bytes()
    line, _, body = data.partition(b"\n")
    try:
        head: Any = json.loads(line[:MAX_HEADER])
        count = int(head["count"])
    except (ValueError, TypeError, KeyError) as exc:
        raise WhiteningMismatch(f"not a whitening file ({exc})") from None
    return Fitted(Whitening.from_bytes(body, source_version=source_version), count)


class WhitenedIndex:
    """``inner`` (an index over whitened rows) taking descriptor rows: rows and queries are
    whitened first. ``search(rows)`` is ``search_space(to_space(rows))`` as for any index."""

    def __init__(self, inner: VectorIndex, whitening: Whitening) -> None:
        self.inner = inner
        self.whitening = whitening
        self.kind = inner.kind  # set before wrapping (an IVF index is trained first)

    def __len__(self) -> int:
        return len(self.inner)

    def ids(self) -> np.ndarray:
        return self.inner.ids()

    def add(self, ids: np.ndarray, rows: np.ndarray) -> None:
        if len(ids):
            self.inner.add(ids, self.to_space(rows))

    def remove(self, ids: np.ndarray) -> None:
        self.inner.remove(ids)

    def to_space(self, queries: np.ndarray) -> np.ndarray:
        """Descriptor rows whitened: float32 (m, whitening.dim), L2-normalised."""
        q = np.asarray(queries)
        if q.ndim != 2:
            raise BadInput(f"query shape {q.shape} is not a matrix of rows")
        return self.whitening.apply(q)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.search_space(self.to_space(queries), k)

    def search_space(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.inner.search_space(q, k)

    def to_bytes(self) -> bytes:
        return self.inner.to_bytes()

    def write_to(self, write: Callable[[bytes], object]) -> None:
        self.inner.write_to(write)
