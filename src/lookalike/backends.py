"""The one place where backends are chosen from the settings."""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import urlsplit

from lookalike.cache.base import ByteCache, NoCache
from lookalike.errors import DataFolderError, LookalikeError, Unavailable
from lookalike.index.manager import IndexManager
from lookalike.index.whitened import WhitenPolicy
from lookalike.search.status import PartState
from lookalike.settings import Settings
from lookalike.store.base import Catalog
from lookalike.store.sql_catalog import SqlCatalog
from lookalike.store.sqlite_db import SqliteDatabase

CATALOG_FILE = "catalog.sqlite3"
# The ``meta`` key of a catalog's random id (catalog_identity).
CATALOG_ID = "catalog_id"
INDEX_DIR = "index"
# URL schemes of a shared catalog (libpq's two names for PostgreSQL).
POSTGRES_SCHEMES = ("postgresql", "postgres")


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
    """The catalog for ``settings``: the shared PostgreSQL of ``catalog_url`` when set,
    otherwise the embedded SQLite file in the data folder."""
    if settings.catalog_url:
        return _shared_catalog(settings.catalog_url)
    path = settings.data_dir / CATALOG_FILE
    if path.exists() and not path.is_file():
        raise DataFolderError(f"{path}: the catalog is not a file; move it aside")
    return SqlCatalog(SqliteDatabase(path))


def _shared_catalog(url: str) -> Catalog:
    """The catalog in the PostgreSQL database at ``url``; Unavailable for another scheme,
    or without the ``scale`` extra installed."""
    scheme = urlsplit(url).scheme
    if scheme not in POSTGRES_SCHEMES:
        given = f"scheme {scheme}://" if scheme else "no scheme"
        raise Unavailable(
            f"catalog URL with {given}: not a PostgreSQL URL "
            "(postgresql://user:password@host:port/dbname)"
        )
    try:
        # Imported here: psycopg comes with the optional ``scale`` extra.
        from lookalike.store.postgres_db import PostgresDatabase
    except ImportError as exc:
        raise Unavailable(
            f"catalog {scheme}://...: PostgreSQL support is not installed ({exc}); "
            "pip install 'lookalike[scale]'"
        ) from None
    return SqlCatalog(PostgresDatabase(url))


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
        # The embedded catalog's generation costs microseconds: read before every search.
        poll_s=settings.catalog_poll_s if settings.catalog_url else 0.0,
        whiten=whiten_policy(settings),
        compact_threshold=settings.compact_threshold,
    )


def whiten_policy(settings: Settings) -> WhitenPolicy:
    """Which descriptors' indexes are whitened and augmented, and how (``whiten_*``,
    ``dba_*`` settings)."""
    return WhitenPolicy(
        frozenset(settings.whiten_descriptors),
        settings.whiten_dim,
        settings.whiten_min_images,
        settings.whiten_power,
        settings.whiten_shrinkage,
        settings.dba_k,
        settings.dba_alpha,
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


def catalog_identity(catalog: Catalog) -> str:
    """Which catalog this is, as the cache keys answers by (generations are per catalog): a
    random id its first user stores in the catalog, so a catalog made anew at the same path
    or URL (its counters starting again from 0) is another catalog."""
    stored = catalog.service.meta(CATALOG_ID)
    if stored is None:
        stored = catalog.service.put_meta_once(CATALOG_ID, uuid.uuid4().hex.encode())
    return stored.decode("ascii", "replace")


def part_states(settings: Settings, catalog: Catalog, cache: ByteCache) -> list[PartState]:
    """The catalog (open, so it answers), the cache and the broker of ``settings``, each
    asked now whether it answers (within their timeouts)."""
    catalog_kind = "postgresql" if settings.catalog_url else "sqlite"
    parts = [PartState("catalog", catalog_kind, catalog.where, True)]
    if settings.cache_url:
        kind = "redis-cluster" if "+cluster" in urlsplit(settings.cache_url).scheme else "redis"
        parts.append(PartState("cache", kind, cache.where, cache.ping()))
    else:
        parts.append(PartState("cache", "none", None, None))
    parts.append(_broker_state(settings))
    return parts


def _broker_state(settings: Settings) -> PartState:
    if not settings.broker_url:
        return PartState("broker", "none", None, None)
    from lookalike.queue.app import check_broker, hidden_url, make_app

    where = hidden_url(settings.broker_url)
    try:
        check_broker(make_app(settings), settings)
    except LookalikeError as exc:
        return PartState("broker", "redis", where, False, exc.message)
    return PartState("broker", "redis", where, True)
