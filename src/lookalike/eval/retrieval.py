"""Retrieval quality from rankings: average precision, mAP, precision@k, recall@k.

Pure functions, no model: callers rank the database themselves and pass, for each query,
its database paths best first. Relevance comes from groups (images of the same group are
relevant to each other), and a query never counts as a result for itself (the INRIA Holidays
protocol: the query is left out of its own ranking).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lookalike.errors import BadInput

Interpolation = Literal["step", "trapezoid"]


@dataclass(frozen=True)
class RetrievalScores:
    """Mean scores over the queries that have at least one relevant database image."""

    map: float  # mean average precision
    p1: float  # precision at 1
    p10: float  # precision at 10
    r10: float  # recall at 10
    n_queries: int  # queries scored (those with no relevant image are skipped)

    def as_dict(self) -> dict[str, float | int]:
        """The scores as a plain dict (for JSON reports)."""
        return {
            "mAP": self.map,
            "p@1": self.p1,
            "p@10": self.p10,
            "r@10": self.r10,
            "n_queries": self.n_queries,
        }


def average_precision(
    ranking: Iterable[str],
    relevant: set[str] | frozenset[str],
    query: str | None = None,
    interpolation: Interpolation = "step",
) -> float:
    """Average precision of one ranking (best first) against a set of relevant items.

    ``query`` is skipped wherever it appears in the ranking and is never relevant. Relevant
    items missing from the ranking count as never retrieved (precision 0). ``"step"`` is the
    usual non-interpolated AP: the mean, over relevant items, of the precision at each one's
    rank. ``"trapezoid"`` integrates the precision-recall curve with the trapezoid rule, as
    the original Holidays evaluation does (slightly higher). Returns a value in [0, 1];
    raises :class:`BadInput` if no item is relevant.
    """
    targets = set(relevant) - {query}
    if not targets:
        raise BadInput("average precision needs at least one relevant item")
    step = 1.0 / len(targets)
    ap = 0.0
    hits = 0
    rank = 0  # results seen before the current one, the query excluded
    seen: set[str] = set()
    for item in ranking:
        if item == query or item in seen:
            continue  # a duplicate entry must not be counted twice
        seen.add(item)
        if item in targets:
            after = (hits + 1) / (rank + 1)
            if interpolation == "step":
                ap += after * step
            else:
                # Precision just before this hit; at rank 0 the curve starts at 1.
                before = hits / rank if rank else 1.0
                ap += (before + after) / 2 * step
            hits += 1
            if hits == len(targets):
                break
        rank += 1
    return ap


def _precision_recall_at(
    ranking: Sequence[str], targets: set[str], query: str, k: int
) -> tuple[float, float]:
    top: list[str] = []
    for item in ranking:
        if item != query and item not in top:
            top.append(item)
            if len(top) == k:
                break
    hits = sum(1 for item in top if item in targets)
    return hits / k, hits / len(targets)


def evaluate(
    ranked: Mapping[str, Sequence[str]],
    groups: Mapping[str, str],
    queries: Sequence[str] | None = None,
    interpolation: Interpolation = "step",
) -> RetrievalScores:
    """Score rankings against group labels.

    ``ranked`` maps each query to database paths, best first (it may contain the query
    itself; it is skipped). ``groups`` maps every database path (and every query) to its
    group; a query's relevant items are the other paths of its group in ``groups``.
    ``queries`` defaults to every path in ``groups``. Queries without any relevant item are
    skipped. Returns the means over the scored queries; raises :class:`BadInput` if a query
    has no ranking or no group, or if no query can be scored.
    """
    by_group: dict[str, set[str]] = {}
    for path, group in groups.items():
        by_group.setdefault(group, set()).add(path)
    chosen = list(groups) if queries is None else list(queries)

    aps: list[float] = []
    p1s: list[float] = []
    p10s: list[float] = []
    r10s: list[float] = []
    for query in chosen:
        if query not in groups:
            raise BadInput(f"query {query!r} has no group")
        if query not in ranked:
            raise BadInput(f"query {query!r} has no ranking")
        targets = by_group[groups[query]] - {query}
        if not targets:
            continue
        ranking = ranked[query]
        aps.append(average_precision(ranking, targets, query, interpolation))
        p1s.append(_precision_recall_at(ranking, targets, query, 1)[0])
        p10, r10 = _precision_recall_at(ranking, targets, query, 10)
        p10s.append(p10)
        r10s.append(r10)
    if not aps:
        raise BadInput("no query has a relevant item to find")
    n = len(aps)
    return RetrievalScores(
        map=sum(aps) / n, p1=sum(p1s) / n, p10=sum(p10s) / n, r10=sum(r10s) / n, n_queries=n
    )


def _rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc}") from exc


def _resolve(folder: Path, relative: str) -> str:
    return str((folder / relative.strip()).resolve())


def read_labels(path: str | Path, exclude_subsets: Iterable[str] = ()) -> dict[str, str]:
    """Read a labels CSV with ``path`` and ``group`` columns.

    Paths are relative to the CSV's folder and come back absolute. Rows whose optional
    ``subset`` column is in ``exclude_subsets`` are dropped (e.g. Holidays' ``extra_queries``,
    which are not part of the database). Returns ``{absolute path: group}``; raises
    :class:`BadInput` if the file cannot be read or lacks a column.
    """
    csv_path = Path(path)
    excluded = set(exclude_subsets)
    out: dict[str, str] = {}
    for row in _rows(csv_path):
        if "path" not in row or "group" not in row:
            raise BadInput(f"{csv_path}: needs 'path' and 'group' columns")
        if row.get("subset") in excluded:
            continue
        out[_resolve(csv_path.parent, row["path"])] = row["group"].strip()
    return out


def read_queries(path: str | Path) -> list[str]:
    """Read a queries CSV (a ``query_path`` or ``path`` column, relative to its folder).

    Returns the absolute query paths in file order; raises :class:`BadInput` if the file
    cannot be read or has neither column.
    """
    csv_path = Path(path)
    out: list[str] = []
    for row in _rows(csv_path):
        value = row.get("query_path") or row.get("path")
        if value is None:
            raise BadInput(f"{csv_path}: needs a 'query_path' or 'path' column")
        out.append(_resolve(csv_path.parent, value))
    return out


def read_relevant(path: str | Path) -> dict[str, set[str]]:
    """Read a queries CSV's optional ``relevant_paths`` column (``;``-separated).

    Returns ``{absolute query path: {absolute relevant paths}}``, empty if the column is
    absent; useful to check that group labels give the same relevant sets.
    """
    csv_path = Path(path)
    out: dict[str, set[str]] = {}
    for row in _rows(csv_path):
        query = row.get("query_path") or row.get("path")
        listed = row.get("relevant_paths")
        if query is None or listed is None:
            continue
        out[_resolve(csv_path.parent, query)] = {
            _resolve(csv_path.parent, p) for p in listed.split(";") if p.strip()
        }
    return out
