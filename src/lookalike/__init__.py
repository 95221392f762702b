"""lookalike: offline image search and face recognition on your own machine.

>>> import lookalike
>>> with lookalike.open("~/lookalike-data") as lk:
...     lk.index(["~/Pictures"])  # also finds the faces and groups them into clusters
...     for result in lk.search(["query.jpg"], k=5):
...         print([(hit.path, hit.score) for hit in result.results])
...     lk.people.enrol("Ada", ["ada.jpg"])  # faces and people: lookalike.people
...     print([(f.person, f.distance) for f in lk.people.identify("group.jpg")])
"""

from __future__ import annotations

import os
from pathlib import Path

from lookalike.errors import (
    BadArgument,
    BadInput,
    Busy,
    DataFolderError,
    ImageError,
    ImageTooLarge,
    LookalikeError,
    NotFound,
    SchemaTooNew,
)
from lookalike.ingest.report import IndexInterrupted, IndexReport
from lookalike.people.service import (
    ClusterReport,
    FaceHit,
    FaceSearch,
    FaceService,
    Identified,
)
from lookalike.search.duplicates import DuplicateGroup, DuplicateReport
from lookalike.search.engine import Hit, Lookalike, SearchResult
from lookalike.settings import Settings, get_settings

__all__ = [
    "BadArgument",
    "BadInput",
    "Busy",
    "ClusterReport",
    "DataFolderError",
    "DuplicateGroup",
    "DuplicateReport",
    "FaceHit",
    "FaceSearch",
    "FaceService",
    "Hit",
    "Identified",
    "ImageError",
    "ImageTooLarge",
    "IndexInterrupted",
    "IndexReport",
    "Lookalike",
    "LookalikeError",
    "NotFound",
    "SchemaTooNew",
    "SearchResult",
    "Settings",
    "get_settings",
    "open",
]


def open(data_dir: str | os.PathLike[str] | None = None, **settings: object) -> Lookalike:
    """Open (creating if needed) a data folder; returns the engine (a context manager).

    ``settings`` override fields of :class:`Settings` (e.g. ``ann_threshold=100_000``).
    """
    chosen = Path(data_dir).expanduser() if data_dir is not None else None
    return Lookalike(get_settings(data_dir=chosen, **settings))
