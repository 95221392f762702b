"""The vector index interface. An index is derived data: the catalog can always rebuild it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Literal, Protocol

import numpy as np


class VectorIndex(Protocol):
    """Vectors keyed by int64 id (image or face). Scores: similarity, higher is closer, or
    (``FloatIndex`` with ``metric="l2"``) squared distance, lower is closer."""

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
        """``(scores float32 (m, k), ids int64 (m, k))`` best first; id -1 where fewer than k.
        ``queries`` are descriptor rows: ``search_space(to_space(queries), k)``."""
        ...

    def to_space(self, queries: np.ndarray) -> np.ndarray:
        """Descriptor rows (m, width) as rows of the space the index compares in (whitened
        and reduced for a whitened index; the rows themselves otherwise). Query expansion
        combines rows of this space."""
        ...

    def search_space(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` of rows already in the index's space."""
        ...

    def to_bytes(self) -> bytes: ...

    def write_to(self, write: Callable[[bytes], object]) -> None:
        """The bytes ``to_bytes`` gives, handed to ``write`` piece by piece (memory: one
        piece, not a copy of the index)."""
        ...


class IndexSpec(Protocol):
    """What an index is built for: a descriptor, or the face embeddings."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str:
        """Vectors of another version are never mixed into the index."""
        ...

    @property
    def dim(self) -> int: ...

    @property
    def kind(self) -> Literal["float", "binary"]: ...


class VectorSource(Protocol):
    """Where an index's vectors come from (the catalog): rows as raw uint8 blobs by id."""

    def generation(self, name: str) -> int:
        """A counter bumped by every change to ``name``'s vectors."""
        ...

    def vectors(self, name: str, version: str) -> tuple[np.ndarray, np.ndarray]: ...

    def vector_ids(self, name: str, version: str) -> np.ndarray: ...

    def vector_batches(
        self, name: str, version: str, size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``vectors``, by id, at most ``size`` rows at a time: what builds an index from a
        catalog of any size in bounded memory."""
        ...

    def vectors_for(
        self, name: str, version: str, ids: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]: ...
