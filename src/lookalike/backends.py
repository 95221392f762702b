"""The one place where backends are chosen from the settings."""

from __future__ import annotations

from lookalike.index.manager import IndexManager
from lookalike.settings import Settings
from lookalike.store.base import Catalog
from lookalike.store.sqlite import SqliteCatalog

CATALOG_FILE = "catalog.sqlite3"
INDEX_DIR = "index"


def open_catalog(settings: Settings) -> Catalog:
    """The catalog for ``settings`` (embedded SQLite in the data folder)."""
    return SqliteCatalog(settings.data_dir / CATALOG_FILE)


def open_indexes(settings: Settings, catalog: Catalog) -> IndexManager:
    """The vector indexes, persisted beside the catalog and derived from it."""
    return IndexManager(
        catalog,
        settings.data_dir / INDEX_DIR,
        ann_threshold=settings.ann_threshold,
        nprobe=settings.ann_nprobe,
    )
