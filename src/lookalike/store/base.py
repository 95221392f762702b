"""The catalog interface: the source of truth for images, their paths and descriptors.

The embedded default is SQLite (``lookalike.store.sqlite``); a shared PostgreSQL catalog
implements the same protocol. Every write is idempotent by content hash.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class PathRow:
    path: str
    image_id: int
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class ImageRow:
    id: int
    sha256: str
    width: int
    height: int
    format: str
    size: int
    paths: tuple[str, ...] = ()


@dataclass
class NewImage:
    """One file to record: its content, where it was found and its descriptor rows."""

    sha256: str
    path: str
    size: int
    mtime_ns: int
    width: int = 0
    height: int = 0
    format: str = ""
    # descriptor name -> (version, vector row); empty when the content is already stored.
    vectors: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)


class Catalog(Protocol):
    """What the engine needs from a catalog backend."""

    def close(self) -> None: ...

    def path_row(self, path: str) -> PathRow | None:
        """The recorded state of ``path``, or None."""
        ...

    def paths_under(self, root: str) -> list[str]:
        """Every recorded path equal to ``root`` or inside it (a folder)."""
        ...

    def image_by_sha(self, sha256: str) -> ImageRow | None: ...

    def images(self, ids: Sequence[int]) -> dict[int, ImageRow]:
        """Rows (with their paths) for the ids that exist."""
        ...

    def missing_vectors(self, image_id: int, wanted: dict[str, str]) -> list[str]:
        """Descriptor names (from ``wanted``: name -> version) the image lacks."""
        ...

    def record(self, items: Iterable[NewImage]) -> list[int]:
        """Store images, paths and vectors in one transaction; returns the image ids."""
        ...

    def remove_paths(self, paths: Iterable[str]) -> list[int]:
        """Forget paths; images left without a path are deleted. Returns deleted image ids."""
        ...

    def vectors(self, descriptor: str, version: str) -> tuple[np.ndarray, np.ndarray]:
        """``(ids int64 (n,), rows (n, width))`` of one descriptor version, by id."""
        ...

    def vector_ids(self, descriptor: str, version: str) -> np.ndarray:
        """int64 ids of the images that have this descriptor version."""
        ...

    def vectors_for(
        self, descriptor: str, version: str, ids: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like ``vectors``, restricted to ``ids``."""
        ...

    def generation(self, descriptor: str) -> int:
        """A counter bumped by every change to this descriptor's vectors."""
        ...

    def exact_duplicates(self) -> list[ImageRow]:
        """Images recorded under more than one path."""
        ...

    def count_images(self) -> int: ...

    def all_paths(self) -> list[str]: ...

    def schema_version(self) -> int: ...
