"""lookalike: offline image search on your own machine.

>>> import lookalike
>>> with lookalike.open("~/lookalike-data") as lk:
...     lk.index(["~/Pictures"])
...     for result in lk.search(["query.jpg"], k=5):
...         print([(hit.path, hit.score) for hit in result.results])
"""

from __future__ import annotations

import os
from pathlib import Path

from lookalike.errors import (
    BadInput,
    ImageError,
    ImageTooLarge,
    LookalikeError,
    NotFound,
    SchemaTooNew,
)
from lookalike.search.duplicates import DuplicateGroup, DuplicateReport
from lookalike.search.engine import Hit, IndexInterrupted, IndexReport, Lookalike, SearchResult
from lookalike.settings import Settings, get_settings

__all__ = [
    "BadInput",
    "DuplicateGroup",
    "DuplicateReport",
    "Hit",
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
