"""The result cache: what is expensive to compute for a query image, kept in a shared store.

A backend is a :class:`~lookalike.cache.base.ByteCache` (bytes under a key, with a time to
live): :class:`~lookalike.cache.base.NoCache` when none is configured, Redis or a Redis
Cluster (:mod:`lookalike.cache.redis_cache`, imported only then), chosen by
``backends.open_cache``. :class:`~lookalike.cache.results.ResultCache` stores typed entries
over it (a query's descriptor rows and faces; search and identify rankings), and turns every
failure of the store, or garbage read from it, into a miss.
"""

from lookalike.cache.base import ByteCache, CacheUnavailable, NoCache
from lookalike.cache.results import ANSWERS, VECTORS, CacheEvent, ResultCache

__all__ = [
    "ANSWERS",
    "VECTORS",
    "ByteCache",
    "CacheEvent",
    "CacheUnavailable",
    "NoCache",
    "ResultCache",
]
