"""Database-side augmentation (DBA) and the weighted sums it shares with query expansion.

Each database row is replaced by the normalised sum of itself and its ``k`` nearest rows,
weighted by similarity ** alpha: rows of one place pull together, so a query near one of
them ranks the others higher. Applied to a whitened exact index once it is built
(``index/whitened.py``); query expansion (``search/rerank.py``) sums a query with its
neighbours the same way.
"""

from __future__ import annotations

import numpy as np

from lookalike.errors import BadArgument


def normalised(rows: np.ndarray) -> np.ndarray:
    """``rows`` float32 (n, d) scaled to unit length (zero rows stay zero)."""
    x = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.asarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def weighted_sum(
    own: np.ndarray, neighbours: np.ndarray, sims: np.ndarray, alpha: float
) -> np.ndarray:
    """``normalise(own + sum_i max(sims_i, 0) ** alpha * neighbours_i)`` per row.

    ``own`` (m, d), ``neighbours`` (m, n, d), ``sims`` (m, n): returns float32 (m, d). A
    negative similarity weighs nothing (``0 ** 0`` counts as 0 too: it is no neighbour)."""
    clipped = np.maximum(np.asarray(sims, dtype=np.float64), 0.0)
    weights = np.where(clipped > 0, clipped**alpha, 0.0).astype(np.float32)
    return normalised(own + np.einsum("mn,mnd->md", weights, neighbours))


def augment_database(rows: np.ndarray, k: int, alpha: float, *, chunk: int = 4096) -> np.ndarray:
    """DBA: each row replaced by the normalised weighted sum of itself and its ``k`` nearest
    other rows (weights ``similarity ** alpha``); float32 (n, d).

    Exact neighbours by blocks of ``chunk`` rows (memory: ``chunk * n`` floats); an index
    builder with an approximate index would find the neighbours with it instead and call
    :func:`weighted_sum`. ``k`` 0 returns the rows as they are."""
    x = np.asarray(rows, dtype=np.float32)
    if k < 0:
        raise BadArgument(f"database augmentation needs k >= 0, not {k}")
    k = min(k, len(x) - 1)
    if k <= 0:
        return x.copy()
    out = np.empty_like(x)
    for start in range(0, len(x), chunk):
        block = x[start : start + chunk]
        sims = block @ x.T
        own = np.arange(start, start + len(block))
        sims[np.arange(len(block)), own] = -np.inf  # a row is not its own neighbour
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(sims, top, axis=1)
        out[start : start + len(block)] = weighted_sum(block, x[top], top_sims, alpha)
    return out
