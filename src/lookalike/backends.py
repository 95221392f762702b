"""The one place where backends are chosen from the settings."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from lookalike.cache.base import ByteCache, NoCache
from lookalike.errors import DataFolderError, Unavailable
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


def open_cache(settings: Settings) -> ByteCache:
    """The result cache's store for ``settings``: Redis or a Redis Cluster (``cache_url``),
    else none. Unavailable if the URL is malformed or redis-py is missing; Redis itself is
    first asked on first use (a cache that does not answer is a miss, never an error)."""
    if not settings.cache_url:
        return NoCache()
    try:  # only now: the default path imports nothing of Redis
        from lookalike.cache.redis_cache import RedisCache, parse_url
    except ImportError as exc:
        raise Unavailable(
            f"the cache (cache_url) needs the redis package ({exc}): pip install 'lookalike[scale]'"
        ) from None
    return RedisCache(
        parse_url(settings.cache_url),
        timeout_s=settings.cache_timeout_s,
        retry_s=settings.cache_retry_s,
    )


def catalog_identity(settings: Settings) -> str:
    """Which catalog ``settings`` open, as a string the cache keys answers by (generations
    are per catalog): the catalog URL without its password, else this machine's name, the
    data folder's real path and the catalog file's inode (a new file starts anew)."""
    if settings.catalog_url:
        parts = urlsplit(settings.catalog_url)
        host = parts.netloc.rpartition("@")[2]
        user = parts.username or ""
        return urlunsplit((parts.scheme, f"{user}@{host}", parts.path, "", ""))
    path = settings.data_dir / CATALOG_FILE
    try:
        inode = os.stat(path).st_ino
    except OSError:
        inode = 0
    return f"sqlite:{socket.gethostname()}:{os.path.realpath(path)}:{inode}"
