"""``lookalike eval retrieval``: index a labelled folder and score search on it."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from lookalike.errors import BadInput
from lookalike.eval.retrieval import RetrievalScores, evaluate, read_labels, read_queries
from lookalike.search.engine import Lookalike


def run_retrieval_eval(
    engine: Lookalike,
    labels_csv: Path,
    queries_csv: Path | None = None,
    *,
    descriptor: str | None = None,
    progress: bool | None = None,
) -> RetrievalScores:
    """Index the labelled images (idempotent), rank the collection for every query, score.

    Rankings keep only labelled images, so other images in the data folder don't count.
    Returns mAP (query left out of its own ranking), precision@1, @10 and recall@10.
    """
    groups = read_labels(labels_csv)
    report = engine.index(list(groups), progress=progress)
    failed = {f.path for f in report.failed}
    groups = {p: g for p, g in groups.items() if p not in failed}
    if not groups:
        raise BadInput(f"{labels_csv}: none of the labelled images could be indexed")
    queries = read_queries(queries_csv) if queries_csv is not None else list(groups)
    ranked: dict[str, list[str]] = {}
    for query in tqdm(
        queries, desc="searching", unit="query", disable=None if progress is None else not progress
    ):
        if query not in groups:
            raise BadInput(f"query {query} is not among the labelled images")
        result = engine.search_one(query, k=len(groups) + 1, descriptor=descriptor)
        ranked[query] = [hit.path for hit in result.results if hit.path in groups]
    return evaluate(ranked, groups, queries)
