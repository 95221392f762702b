"""Re-ranking of a search's first results, as pure functions on numpy rows.

- **alpha-query expansion** (alpha-QE): the query row is replaced by the normalised sum of
  itself and its ``n`` nearest database rows, each weighted by its similarity to the query
  to the power ``alpha``, and the index is searched again with it. Close neighbours pull the
  query towards what the relevant images share; weak ones barely count.
- **database-side augmentation** (DBA): the same done to every database row with its own
  ``k`` nearest neighbours, once, when an index is built.
- **similarity measures**: cosine (the index's own score), Euclidean distance (of the
  L2-normalised rows, so it ranks as cosine does) and Pearson correlation (of the
  mean-centred rows: computed exactly on a shortlist the cosine index gives).

Rows are float32, L2-normalised, compared by inner product; ``(n, d)`` shapes throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from lookalike.errors import BadArgument
from lookalike.index.augment import weighted_sum

Measure = Literal["cosine", "euclidean", "pearson", "hamming"]
MEASURES: tuple[Measure, ...] = get_args(Measure)
FLOAT_MEASURES: tuple[Measure, ...] = ("cosine", "euclidean", "pearson")
# What a search's scores are under each measure.
SCORES: dict[Measure, str] = {
    "cosine": "cosine similarity, higher is closer",
    "euclidean": "Euclidean distance, lower is closer",
    "pearson": "Pearson correlation, higher is closer",
    "hamming": "1 - Hamming distance / bits, higher is closer",
}


@dataclass(frozen=True)
class Expansion:
    """alpha-query expansion's settings: ``n`` neighbours, weights ``similarity ** alpha``."""

    n: int
    alpha: float

    def __post_init__(self) -> None:
        if self.n < 1 or not 0.0 <= self.alpha <= 100.0:
            raise BadArgument(f"query expansion needs n >= 1 and 0 <= alpha <= 100, not {self}")

    @property
    def key(self) -> str:
        """What a cached ranking is keyed by: ``qe<n>a<alpha>``."""
        return f"qe{self.n}a{self.alpha:g}"


def expand_query(
    rows: np.ndarray, scores: np.ndarray, neighbours: np.ndarray, sims: np.ndarray, alpha: float
) -> np.ndarray:
    """The alpha-expanded query: float32 (1, d).

    ``rows`` (m, d) are the query's variants (e.g. its rotations), ``scores`` (m,) each
    variant's best similarity to the database: the variant that matched best is expanded,
    since the neighbours are in the orientation it found them in (expanding each variant
    with its own neighbours, or keeping the others beside the expanded one, measured worse
    on Holidays). ``neighbours`` (n, d) are the nearest database rows over all variants,
    ``sims`` (n,) their best similarity to the query."""
    best = int(np.argmax(scores))
    return weighted_sum(rows[best : best + 1], neighbours[None], sims[None], alpha)


def euclidean(sims: np.ndarray) -> np.ndarray:
    """Euclidean distances of unit rows from their cosines: ``sqrt(2 - 2 cos)``, float32."""
    gap = np.maximum(2.0 - 2.0 * np.asarray(sims, dtype=np.float32), 0.0)
    return np.asarray(np.sqrt(gap), dtype=np.float32)


def pearson(queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Pearson correlation of each query row with each row: float32 (m, n) in [-1, 1].

    Each row is centred on its own mean over its components and normalised; a constant
    row correlates 0 with everything."""
    q = _centred(queries)
    x = _centred(rows)
    return np.asarray(np.clip(q @ x.T, -1.0, 1.0), dtype=np.float32)


def _centred(rows: np.ndarray) -> np.ndarray:
    x = np.asarray(rows, dtype=np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(np.where(norms > 1e-12, x / np.maximum(norms, 1e-12), 0.0))


def higher_is_better(measure: Measure) -> bool:
    """Whether a larger score is more similar (distances: smaller is)."""
    return measure != "euclidean"
