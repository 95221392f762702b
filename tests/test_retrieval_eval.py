"""Retrieval metrics on small rankings whose scores are worked out by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from lookalike.errors import BadInput
from lookalike.eval.retrieval import (
    average_precision,
    evaluate,
    read_labels,
    read_queries,
    read_relevant,
)


def test_ap_of_a_perfect_ranking_is_one() -> None:
    assert average_precision(["a", "b", "x"], {"a", "b"}) == 1.0


def test_ap_step() -> None:
    # Hits at ranks 1 and 3: (1/1 + 2/3) / 2.
    assert average_precision(["a", "x", "b", "y"], {"a", "b"}) == pytest.approx(5 / 6)


def test_ap_trapezoid() -> None:
    # Hit 1: precision 1 -> 1 (area 0.5 * 1); hit 2: precision 1/2 -> 2/3 (area 0.5 * 7/12).
    ap = average_precision(["a", "x", "b", "y"], {"a", "b"}, interpolation="trapezoid")
    assert ap == pytest.approx(0.5 + 0.5 * 7 / 12)


def test_query_is_left_out_of_its_own_ranking() -> None:
    # Without q the ranking is [x, a, b]: (1/2 + 2/3) / 2.
    expected = (1 / 2 + 2 / 3) / 2
    assert average_precision(["q", "x", "a", "b"], {"a", "b"}, query="q") == pytest.approx(expected)
    assert average_precision(["x", "q", "a", "b"], {"a", "b"}, query="q") == pytest.approx(expected)
    # The query never counts as relevant to itself.
    assert average_precision(["q", "a"], {"q", "a"}, query="q") == 1.0


def test_missing_relevant_items_count_as_never_found() -> None:
    assert average_precision(["a", "x"], {"a", "b"}) == pytest.approx(0.5)
    assert average_precision([], {"a"}) == 0.0


def test_duplicates_in_a_ranking_count_once() -> None:
    assert average_precision(["x", "x", "a"], {"a"}) == pytest.approx(1 / 2)
    assert average_precision(["a", "a", "b"], {"a", "b"}) == 1.0


def test_ap_needs_a_relevant_item() -> None:
    with pytest.raises(BadInput):
        average_precision(["a"], set())
    with pytest.raises(BadInput):
        average_precision(["q"], {"q"}, query="q")


GROUPS = {"a1": "A", "a2": "A", "a3": "A", "b1": "B", "b2": "B", "c1": "C"}


def test_evaluate_by_hand() -> None:
    ranked = {
        # relevant a2, a3 at ranks 1 and 3 (a1 skipped): AP 5/6, p@1 1, 2 hits in top 10
        "a1": ["a1", "a2", "b1", "a3", "b2", "c1"],
        # relevant b2 at rank 2: AP 1/2, p@1 0
        "b1": ["b1", "a1", "b2", "a2", "a3", "c1"],
    }
    scores = evaluate(ranked, GROUPS, ["a1", "b1"])
    assert scores.n_queries == 2
    assert scores.map == pytest.approx((5 / 6 + 1 / 2) / 2)
    assert scores.p1 == pytest.approx(0.5)
    # Only 5 results after leaving the query out; precision@10 still divides by 10.
    assert scores.p10 == pytest.approx((2 / 10 + 1 / 10) / 2)
    assert scores.r10 == pytest.approx(1.0)


def test_evaluate_recall_at_10_counts_only_the_top_10() -> None:
    groups = {"q": "G", "r1": "G", "r2": "G", **{f"n{i}": "N" for i in range(12)}}
    ranking = ["q", "r1", *[f"n{i}" for i in range(12)], "r2"]
    scores = evaluate({"q": ranking}, groups, ["q"])
    assert scores.r10 == pytest.approx(0.5)
    assert scores.p10 == pytest.approx(0.1)
    assert scores.map == pytest.approx((1 + 2 / 14) / 2)


def test_evaluate_defaults_to_every_image_and_skips_singletons() -> None:
    ranked = {p: sorted(GROUPS, key=lambda o, p=p: (GROUPS[o] != GROUPS[p], o)) for p in GROUPS}
    scores = evaluate(ranked, GROUPS)
    assert scores.n_queries == 5  # c1 has nothing to find
    assert scores.map == 1.0 and scores.p1 == 1.0 and scores.r10 == 1.0
    assert scores.as_dict()["mAP"] == 1.0


def test_evaluate_errors() -> None:
    with pytest.raises(BadInput, match="no group"):
        evaluate({"z": []}, GROUPS, ["z"])
    with pytest.raises(BadInput, match="no ranking"):
        evaluate({}, GROUPS, ["a1"])
    with pytest.raises(BadInput, match="no query"):
        evaluate({"c1": ["c1"]}, GROUPS, ["c1"])


def test_read_csvs(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text(
        "path,group,subset\n"
        "images/1.jpg,10,images\n"
        "images/2.jpg,10,images\n"
        "extra/3.png,10,extra_queries\n"
    )
    (tmp_path / "queries.csv").write_text(
        "query_path,group,relevant_paths\nimages/1.jpg,10,images/2.jpg\n"
    )
    root = tmp_path.resolve()
    labels = read_labels(tmp_path / "labels.csv")
    assert labels == {
        str(root / "images/1.jpg"): "10",
        str(root / "images/2.jpg"): "10",
        str(root / "extra/3.png"): "10",
    }
    assert len(read_labels(tmp_path / "labels.csv", exclude_subsets=["extra_queries"])) == 2
    assert read_queries(tmp_path / "queries.csv") == [str(root / "images/1.jpg")]
    assert read_relevant(tmp_path / "queries.csv") == {
        str(root / "images/1.jpg"): {str(root / "images/2.jpg")}
    }

    (tmp_path / "q2.csv").write_text("path\nimages/2.jpg\n")
    assert read_queries(tmp_path / "q2.csv") == [str(root / "images/2.jpg")]
    (tmp_path / "bad.csv").write_text("file,label\nx,y\n")
    with pytest.raises(BadInput, match="columns"):
        read_labels(tmp_path / "bad.csv")
    with pytest.raises(BadInput, match="column"):
        read_queries(tmp_path / "bad.csv")
    with pytest.raises(BadInput, match="cannot read"):
        read_labels(tmp_path / "missing.csv")
