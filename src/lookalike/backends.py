"""The one place where backends are chosen from the settings."""

from __future__ import annotations

from pathlib import Path

from lookalike.errors import DataFolderError
from lookalike.index.manager import IndexManager
from lookalike.settings import Settings
from lookalike.store.base import Catalog
from lookalike.store.sqlite import SqliteCatalog

CATALOG_FILE = "catalog.sqlite3"
INDEX_DIR = "index"


def open_data_dir(settings: Settings) -> Path:
    """The data folder, created if missing; DataFolderError if it cannot be one."""
    folder = settings.data_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise DataFolderError(f"{folder}: the data folder is a file, not a folder") from None
    except OSError as exc:
        raise DataFolderError(f"{folder}: cannot create the data folder ({exc.strerror})") from None
    return folder


def open_catalog(settings: Settings) -> Catalog:
    """The catalog for ``settings`` (embedded SQLite in the data folder)."""
    path = settings.data_dir / CATALOG_FILE
    if path.exists() and not path.is_file():
        raise DataFolderError(f"{path}: the catalog is not a file; move it aside")
    return SqliteCatalog.open(path)


def open_indexes(settings: Settings, catalog: Catalog) -> IndexManager:
    """The vector indexes, persisted beside the catalog and derived from it."""
    folder = settings.data_dir / INDEX_DIR
    if folder.exists() and not folder.is_dir():
        raise DataFolderError(
            f"{folder}: the index folder is not a folder; remove it (indexes are rebuilt "
            "from the catalog)"
        )
    return IndexManager(
        catalog,
        folder,
        ann_threshold=settings.ann_threshold,
        nprobe=settings.ann_nprobe,
    )
