"""The vector index interface. An index is derived data: the catalog can always rebuild it."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class VectorIndex(Protocol):
    """Vectors keyed by int64 image id; higher score means more similar."""

    kind: str  # "flat", "ivf" or "binary"

    def __len__(self) -> int: ...

    def ids(self) -> np.ndarray:
        """int64 (n,) ids held, sorted."""
        ...

    def add(self, ids: np.ndarray, rows: np.ndarray) -> None:
        """Add rows (n, width) under ids (n,); ids already present are replaced."""
        ...

    def remove(self, ids: np.ndarray) -> None: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores float32 (m, k), ids int64 (m, k))`` best first; id -1 where fewer than k."""
        ...

    def to_bytes(self) -> bytes: ...
