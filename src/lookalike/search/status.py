"""What a data folder holds: ``Lookalike.status`` and ``lookalike status``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lookalike.index.manager import IndexState

PartName = Literal["catalog", "cache", "broker"]


@dataclass(frozen=True)
class PartState:
    """One shared part a node uses (the catalog, the cache, the broker), and whether it
    answers now."""

    part: PartName
    kind: str  # sqlite, postgresql, redis, redis-cluster; none when not configured
    where: str | None  # a path, or a URL without its password
    answers: bool | None  # None when not configured
    error: str | None = None


@dataclass(frozen=True)
class FolderStatus:
    """Counts of a data folder's catalog, and the state of each index file."""

    data_dir: str
    schema_version: int
    images: int
    paths: int
    # Faces (all, usable, named, clustered, unprocessed), people and clusters.
    faces: dict[str, int]
    indexes: list[IndexState] = field(default_factory=list)
    # Bytes of every file in the data folder (catalog, indexes, uploads).
    size: int = 0
    # The catalog, cache and broker this node uses.
    parts: list[PartState] = field(default_factory=list)

    @property
    def current(self) -> bool:
        """Whether every index file reflects the catalog."""
        return all(s.current for s in self.indexes)


def folder_size(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (links not followed)."""
    total = 0
    for here, _, names in os.walk(folder):
        for name in names:
            try:
                st = os.lstat(os.path.join(here, name))
            except OSError:
                continue  # gone meanwhile (a temporary file)
            total += st.st_size
    return total
