"""How one search ranks the collection: the similarity measure and query expansion chosen for
it (:class:`SearchOptions`), applied over a descriptor's index and the catalog's rows
(:func:`rank`). The arithmetic is :mod:`lookalike.search.rerank`'s.

Every step works in the space the index compares in (``index.to_space``: the descriptor
rows themselves, or whitened and reduced ones), except Pearson, which correlates the
catalog's raw descriptor rows: the cosine index gives a generous shortlist, Pearson orders
it exactly (coarse to fine).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lookalike.errors import BadArgument
from lookalike.index.base import IndexSpec, VectorIndex, VectorSource
from lookalike.index.manager import rows_as
from lookalike.index.whitened import WhitenedIndex
from lookalike.search.rerank import (
    FLOAT_MEASURES,
    MEASURES,
    Expansion,
    Measure,
    euclidean,
    expand_query,
    pearson,
)
from lookalike.settings import Settings

# Pearson re-ranks at least this many cosine candidates, however small k is.
MIN_SHORTLIST = 100
# Query expansion passes over rows this close to the query's (the query itself, a byte
# copy, or a lossless rotation of it) and ranks them first.
SAME_ROW = 0.9999
# Neighbours fetched for expansion beyond its n: room for rows equal to the query.
SAME_ROOM = 4


@dataclass(frozen=True)
class SearchOptions:
    """A search's measure and expansion (None: none), checked against its descriptor."""

    measure: Measure
    expansion: Expansion | None
    shortlist_factor: int  # Pearson: candidates per result wanted

    @classmethod
    def of(
        cls,
        desc: IndexSpec,
        settings: Settings,
        measure: str | None,
        expand: bool | None,
        *,
        whitened: bool = False,
    ) -> SearchOptions:
        """The options of one search: ``measure`` None is the descriptor's own (cosine, or
        hamming for hash codes), ``expand`` None the ``query_expansion`` setting where it
        applies (that setting None: expansion where the index is ``whitened``). BadArgument
        for a measure or an expansion the descriptor cannot take."""
        chosen = measure or ("hamming" if desc.kind == "binary" else "cosine")
        if chosen not in MEASURES:
            raise BadArgument(f"measure must be one of {', '.join(MEASURES)}, not {chosen!r}")
        allowed = ("hamming",) if desc.kind == "binary" else FLOAT_MEASURES
        if chosen not in allowed:
            raise BadArgument(
                f"the {desc.name} descriptor compares by {' or '.join(allowed)} only, not {chosen}"
            )
        # Expansion sums float rows in the cosine space; Pearson re-ranks raw rows.
        can_expand = desc.kind == "float" and chosen != "pearson"
        if expand and not can_expand:
            raise BadArgument(f"query expansion does not apply to {desc.name} by {chosen}")
        default = whitened if settings.query_expansion is None else settings.query_expansion
        wanted = default if expand is None else expand
        expansion = (
            Expansion(settings.query_expansion_n, settings.query_expansion_alpha)
            if wanted and can_expand
            else None
        )
        return cls(chosen, expansion, settings.pearson_shortlist)

    @property
    def key(self) -> list[str | int]:
        """What a cached ranking depends on besides the query and the collection."""
        expansion = self.expansion.key if self.expansion else "noqe"
        shortlist = self.shortlist_factor if self.measure == "pearson" else 0
        return [self.measure, expansion, shortlist]


def rank(
    index: VectorIndex,
    catalog: VectorSource,
    desc: IndexSpec,
    rows: np.ndarray,
    k: int,
    options: SearchOptions,
) -> tuple[np.ndarray, np.ndarray]:
    """``(ids int64, scores float32)``, the ``k`` best for a query given as its descriptor
    rows (variants: best score per image), best first: highest cosine, Pearson or
    1 - hamming/bits, or lowest Euclidean distance."""
    q = index.to_space(rows)
    if options.measure == "pearson":
        shortlist = max(MIN_SHORTLIST, k * options.shortlist_factor)
        return _pearson(index, catalog, desc, rows, q, shortlist, k)
    if options.expansion is not None:
        best_ids, best = _expanded_search(index, catalog, desc, q, k, options.expansion)
    else:
        scores, ids = index.search_space(q, k)
        best_ids, best = merge_variants(scores, ids, k)
    if options.measure == "euclidean":
        best = euclidean(best)
    return best_ids, best


def _expanded_search(
    index: VectorIndex,
    catalog: VectorSource,
    desc: IndexSpec,
    q: np.ndarray,
    k: int,
    expansion: Expansion,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best for the alpha-expanded query, after the images equal to the query
    (the query itself when it is indexed, a byte copy, a lossless rotation of it): those
    are the best answer however the expansion moves the query (a rotated copy's original
    fell to second place in 11% of the near-duplicate benchmark's rotations without this)."""
    same, expanded = _expanded(index, catalog, desc, q, expansion)
    scores, ids = index.search_space(expanded, k)
    found, sims = merge_variants(scores, ids, k)
    if not same:
        return found, sims
    first = np.array(list(same), dtype=np.int64)
    rest = ~np.isin(found, first)
    ids_out = np.concatenate([first, found[rest]])[:k]
    sims_out = np.concatenate([np.array(list(same.values()), np.float32), sims[rest]])[:k]
    return ids_out, sims_out


def _expanded(
    index: VectorIndex, catalog: VectorSource, desc: IndexSpec, q: np.ndarray, expansion: Expansion
) -> tuple[dict[int, float], np.ndarray]:
    """``(same, row)``: the images whose rows equal a variant of the query (id: similarity,
    best first), and the alpha-expanded query row (1, d) in the index's space (``q`` if
    nothing else is near). Images equal to the query are passed over: adding the query to
    itself expands nothing."""
    scores, ids = index.search_space(q, expansion.n + SAME_ROOM)
    near, sims = merge_variants(scores, ids, expansion.n + SAME_ROOM)
    if len(near) == 0:
        return {}, q
    found, raw = catalog.vectors_for(desc.name, desc.version, near.tolist())
    if len(found) == 0:  # removed meanwhile
        return {}, q
    rows = index.to_space(rows_as(desc, raw))
    equal = (rows @ q.T).max(axis=1) >= SAME_ROW
    # vectors_for answers by id; weigh each row by its own similarity.
    by_id = dict(zip(near.tolist(), sims.tolist(), strict=True))
    weights = np.array([by_id[int(i)] for i in found], dtype=np.float32)
    order = np.argsort(-weights, kind="stable")
    same = {int(found[i]): float(weights[i]) for i in order[equal[order]]}
    keep = order[~equal[order]][: expansion.n]
    if len(keep) == 0:
        return same, q
    # The rows the index holds where it can give them (augmented ones), else these.
    held = index.held(found[keep]) if isinstance(index, WhitenedIndex) else None
    chosen = rows[keep] if held is None else held
    # The variant expanded is the one closest to these neighbours (not to the query itself).
    variant_scores = (q @ chosen.T).max(axis=1)
    return same, expand_query(q, variant_scores, chosen, weights[keep], expansion.alpha)


def _pearson(
    index: VectorIndex,
    catalog: VectorSource,
    desc: IndexSpec,
    rows: np.ndarray,
    q: np.ndarray,
    shortlist: int,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` of the cosine index's ``shortlist`` best with the highest Pearson
    correlation of raw rows (best over the query's variants)."""
    scores, ids = index.search_space(q, shortlist)
    candidates, _ = merge_variants(scores, ids, shortlist)
    if len(candidates) == 0:
        return candidates, np.zeros(0, np.float32)
    found, raw = catalog.vectors_for(desc.name, desc.version, candidates.tolist())
    if len(found) == 0:  # removed meanwhile
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    corr = pearson(rows, rows_as(desc, raw)).max(axis=0)
    order = np.argsort(-corr, kind="stable")[:k]
    return np.asarray(found, dtype=np.int64)[order], corr[order]


def merge_variants(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best score per id over the rows of a multi-variant query; ``(ids, scores)`` top ``k``."""
    flat_ids = ids.ravel()
    flat_scores = scores.ravel()
    keep = flat_ids >= 0
    flat_ids, flat_scores = flat_ids[keep], flat_scores[keep]
    if scores.shape[0] == 1:
        return flat_ids[:k], flat_scores[:k]
    order = np.argsort(-flat_scores, kind="stable")
    flat_ids, flat_scores = flat_ids[order], flat_scores[order]
    _, first = np.unique(flat_ids, return_index=True)
    first.sort()
    return flat_ids[first][:k], flat_scores[first][:k]
