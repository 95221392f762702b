"""What a data folder holds: ``Lookalike.status`` and ``lookalike status``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lookalike.index.manager import IndexState


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
