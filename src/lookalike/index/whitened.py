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
from lookalike.index.augment import augment_database, weighted_sum
from lookalike.index.base import VectorIndex
from lookalike.index.faiss_index import FloatIndex
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
    # Database-side augmentation of exact (flat) whitened indexes: each row summed with
    # its ``dba_k`` nearest, weighted by similarity ** ``dba_alpha`` (0: none).
    dba_k: int = 0
    dba_alpha: float = 3.0

    @property
    def augmentation(self) -> str:
        """What the index version says of the augmentation: ``+dba<k>a<alpha>`` or nothing."""
        return f"+dba{self.dba_k}a{self.dba_alpha:g}" if self.dba_k > 0 else ""

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

    def __init__(
        self,
        inner: VectorIndex,
        whitening: Whitening,
        *,
        dba: tuple[int, float] = (0, 3.0),
        augmented: bool = False,
    ) -> None:
        self.inner = inner
        self.whitening = whitening
        self.kind = inner.kind  # set before wrapping (an IVF index is trained first)
        # (k, alpha) of database-side augmentation; it applies to exact indexes only: an
        # approximate one would need a search per row at every rebuild (ARCHITECTURE.md).
        self._dba = dba if isinstance(inner, FloatIndex) and inner.kind == "flat" else (0, 0.0)
        # Whether the rows held are augmented (then rows added later are augmented as they
        # come, with their neighbours among them); a build adds plain rows, then augments.
        self._augmented = augmented and self._dba[0] > 0

    def augment(self) -> None:
        """Augment every row held (DBA, exact neighbours), once an index is built."""
        k, alpha = self._dba
        if k > 0 and isinstance(self.inner, FloatIndex):
            self.inner.transform_rows(lambda rows: augment_database(rows, k, alpha))
            self._augmented = True

    def __len__(self) -> int:
        return len(self.inner)

    def ids(self) -> np.ndarray:
        return self.inner.ids()

    def add(self, ids: np.ndarray, rows: np.ndarray) -> None:
        if len(ids):
            self.inner.add(ids, self._augmented_rows(self.to_space(rows)))

    def held(self, ids: np.ndarray) -> np.ndarray | None:
        """The rows held under ``ids`` (augmented where the index is), or None when the
        inner index keeps no rows to give back (approximate ones) or no longer holds one of
        them (removed by another thread since the caller found it)."""
        inner = self.inner
        if isinstance(inner, FloatIndex) and inner.kind == "flat":
            try:
                return inner.stored(ids)
            except KeyError:
                return None
        return None

    def _augmented_rows(self, rows: np.ndarray) -> np.ndarray:
        """New whitened rows summed with their nearest rows held, when the index is
        augmented (as :meth:`augment` did to the others); ``rows`` otherwise."""
        k, alpha = self._dba
        inner = self.inner
        if not self._augmented or not isinstance(inner, FloatIndex) or len(inner) == 0:
            return rows
        sims, near = inner.search_space(rows, k)
        neighbours = inner.stored(near.ravel()).reshape(*near.shape, -1)
        return weighted_sum(rows, neighbours, sims, alpha)

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
