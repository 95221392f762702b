"""Re-ranking arithmetic (lookalike.search.rerank) against direct formulas, and the search
options (lookalike.search.ranking) over a real index and an in-memory vector source."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pytest

from lookalike.errors import BadArgument
from lookalike.index.augment import augment_database, normalised, weighted_sum
from lookalike.index.faiss_index import FloatIndex
from lookalike.search.ranking import SearchOptions, rank
from lookalike.search.rerank import Expansion, euclidean, expand_query, pearson
from lookalike.settings import get_settings


def unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    return normalised(np.random.default_rng(seed).standard_normal((n, d)))


# -- pure functions -------------------------------------------------------------------------


def test_weighted_sum_is_the_normalised_alpha_weighted_sum() -> None:
    own = unit_rows(1, 8, seed=1)
    near = unit_rows(3, 8, seed=2)
    sims = np.array([0.9, 0.5, -0.2], np.float32)
    got = weighted_sum(own, near[None], sims[None], alpha=3.0)
    want = own[0] + 0.9**3 * near[0] + 0.5**3 * near[1]  # a negative similarity weighs 0
    np.testing.assert_allclose(got[0], want / np.linalg.norm(want), atol=1e-6)
    assert got.dtype == np.float32


def test_alpha_zero_weighs_every_positive_neighbour_one() -> None:
    own = unit_rows(1, 4, seed=3)
    near = unit_rows(2, 4, seed=4)
    got = weighted_sum(own, near[None], np.array([[0.3, 0.0]], np.float32), alpha=0.0)
    want = own[0] + near[0]  # similarity 0 is no neighbour, even as 0 ** 0
    np.testing.assert_allclose(got[0], want / np.linalg.norm(want), atol=1e-6)


def test_expand_query_expands_the_variant_that_matched_best() -> None:
    rows = unit_rows(4, 16, seed=5)
    near = unit_rows(2, 16, seed=6)
    sims = np.array([0.8, 0.7], np.float32)
    got = expand_query(rows, np.array([0.1, 0.9, 0.3, 0.2]), near, sims, alpha=1.0)
    want = rows[1] + 0.8 * near[0] + 0.7 * near[1]
    assert got.shape == (1, 16)
    np.testing.assert_allclose(got[0], want / np.linalg.norm(want), atol=1e-6)


def test_augment_database_matches_a_brute_force_oracle() -> None:
    rows = unit_rows(40, 12, seed=7)
    got = augment_database(rows, k=3, alpha=3.0, chunk=7)  # blocks that do not divide 40
    sims = rows @ rows.T
    for i in range(len(rows)):
        others = [j for j in np.argsort(-sims[i]) if j != i][:3]
        want = rows[i] + sum(max(sims[i, j], 0) ** 3 * rows[j] for j in others)
        np.testing.assert_allclose(got[i], want / np.linalg.norm(want), atol=1e-5)


def test_augment_database_k0_is_the_rows_and_k_is_capped_by_the_collection() -> None:
    rows = unit_rows(3, 5, seed=8)
    np.testing.assert_array_equal(augment_database(rows, 0, 3.0), rows)
    everything = augment_database(rows, 10, 0.0)  # k 10 of 3 rows: the other two
    sims = rows @ rows.T
    for i in range(3):
        want = rows[i] + sum(rows[j] for j in range(3) if j != i and sims[i, j] > 0)
        np.testing.assert_allclose(everything[i], want / np.linalg.norm(want), atol=1e-6)
    with pytest.raises(BadArgument):
        augment_database(rows, -1, 3.0)


def test_euclidean_of_unit_rows_is_their_distance() -> None:
    a, b = unit_rows(2, 32, seed=9)
    got = euclidean(np.array([a @ b, 1.0, 1.0000001], np.float32))
    assert got[0] == pytest.approx(np.linalg.norm(a - b), abs=1e-5)
    assert got[1] == 0.0 and got[2] == 0.0  # rounding above 1 is no negative root


def test_pearson_is_the_correlation_of_the_rows() -> None:
    q = np.random.default_rng(10).standard_normal((2, 20))
    x = np.random.default_rng(11).standard_normal((5, 20))
    got = pearson(q, x)
    want = np.corrcoef(np.vstack([q, x]))[:2, 2:]
    np.testing.assert_allclose(got, want, atol=1e-6)
    # Shifting or scaling a row changes its cosine but not its correlation.
    np.testing.assert_allclose(pearson(q, 3 * x + 0.5), got, atol=1e-6)
    assert pearson(q, np.ones((1, 20)))[0, 0] == 0.0  # a constant row correlates with nothing


def test_expansion_checks_its_settings_and_names_its_key() -> None:
    assert Expansion(2, 3.0).key == "qe2a3"
    for n, alpha in ((0, 3.0), (2, -1.0)):
        with pytest.raises(BadArgument):
            Expansion(n, alpha)


# -- options and ranking over a real index ---------------------------------------------------


@dataclass
class Spec:
    name: str
    kind: Literal["float", "binary"]
    dim: int = 16
    version: str = "v1"
    input_side: int = 32


class Rows:
    """A catalog's vectors in memory: what ``rank`` reads neighbours and raw rows from."""

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows

    def generation(self, name: str) -> int:
        return 1

    def vectors(self, name: str, version: str) -> tuple[np.ndarray, np.ndarray]:
        return self.vectors_for(name, version, range(len(self.rows)))

    def vector_ids(self, name: str, version: str) -> np.ndarray:
        return np.arange(len(self.rows), dtype=np.int64)

    def vector_batches(
        self, name: str, version: str, size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        yield self.vectors(name, version)

    def vectors_for(
        self, name: str, version: str, ids: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        found = np.array(sorted(set(ids)), dtype=np.int64)  # by id, as the catalog answers
        return found, np.ascontiguousarray(self.rows[found]).view(np.uint8)


def index_of(rows: np.ndarray) -> FloatIndex:
    index = FloatIndex(rows.shape[1])
    index.add(np.arange(len(rows), dtype=np.int64), rows)
    return index


def options(measure: str | None = None, expand: bool | None = None) -> SearchOptions:
    return SearchOptions.of(CNN, get_settings(), measure, expand)


CNN = Spec("cnn", "float")


def test_options_default_to_cosine_and_hamming_expanding_whitened_rows_only() -> None:
    assert (options().measure, options().expansion) == ("cosine", None)
    whitened = SearchOptions.of(CNN, get_settings(), None, None, whitened=True)
    assert whitened.expansion == Expansion(2, 1.0)
    phash = SearchOptions.of(Spec("phash", "binary", dim=64), get_settings(), None, None)
    assert (phash.measure, phash.expansion) == ("hamming", None)
    on = SearchOptions.of(CNN, get_settings(query_expansion=True), None, None)
    assert on.expansion == Expansion(2, 1.0)
    assert SearchOptions.of(CNN, get_settings(query_expansion=True), None, False).expansion is None


@pytest.mark.parametrize(
    ("spec", "measure", "expand", "says"),
    [
        (CNN, "manhattan", None, "measure must be one of"),
        (CNN, "hamming", None, "compares by cosine or euclidean or pearson only"),
        (Spec("phash", "binary", dim=64), "euclidean", None, "hamming only"),
        (Spec("phash", "binary", dim=64), None, True, "does not apply to phash"),
        (CNN, "pearson", True, "does not apply to cnn by pearson"),
    ],
)
def test_options_refuse_what_the_descriptor_cannot_take(
    spec: Spec, measure: str | None, expand: bool | None, says: str
) -> None:
    with pytest.raises(BadArgument, match=says):
        SearchOptions.of(spec, get_settings(), measure, expand)


def test_options_keys_differ_by_measure_and_expansion() -> None:
    keys = {tuple(options(m, e).key) for m in ("cosine", "euclidean") for e in (False, True)}
    keys.add(tuple(options("pearson").key))
    assert len(keys) == 5


def test_euclidean_ranks_as_cosine_and_gives_distances() -> None:
    rows = unit_rows(50, 16, seed=12)
    query = unit_rows(2, 16, seed=13)  # two variants
    index = index_of(rows)
    cos_ids, cos = rank(index, Rows(rows), CNN, query, 5, options("cosine"))
    ids, dist = rank(index, Rows(rows), CNN, query, 5, options("euclidean"))
    np.testing.assert_array_equal(ids, cos_ids)
    best = np.max(query @ rows[ids].T, axis=0)
    want = [min(np.linalg.norm(q - rows[i]) for q in query) for i in ids]
    np.testing.assert_allclose(dist, want, atol=1e-5)
    np.testing.assert_allclose(cos, best, atol=1e-5)
    assert np.all(np.diff(dist) >= 0)  # nearest first


def test_pearson_reranks_the_shortlist_exactly() -> None:
    # Rows with an offset: cosine and Pearson order them differently.
    rng = np.random.default_rng(14)
    raw = rng.standard_normal((300, 16)) + rng.uniform(-2, 2, (300, 1))
    rows = normalised(raw)
    query = normalised(rng.standard_normal((1, 16)) + 1.0)
    ids, corr = rank(index_of(rows), Rows(rows), CNN, query, 10, options("pearson"))
    # The shortlist (100 of 300 by cosine) holds the true top 10 here: compare with all.
    everything = pearson(query, rows)[0]
    shortlist = np.argsort(-(query @ rows.T)[0])[:100]
    want = shortlist[np.argsort(-everything[shortlist], kind="stable")][:10]
    np.testing.assert_array_equal(ids, want)
    np.testing.assert_allclose(corr, everything[want], atol=1e-5)


def test_expansion_searches_with_the_expanded_best_variant() -> None:
    rows = unit_rows(60, 16, seed=15)
    query = normalised(rows[:2] + 0.3 * unit_rows(2, 16, seed=16))
    chosen = options(expand=True)
    exp = chosen.expansion
    assert exp is not None
    ids, scores = rank(index_of(rows), Rows(rows), CNN, query, 5, chosen)
    # The oracle: by hand, exhaustively.
    per = query @ rows.T
    merged = per.max(axis=0)
    near = np.argsort(-merged)[: exp.n]
    best = int(np.argmax(per.max(axis=1)))
    w = merged[near] ** exp.alpha
    q = query[best] + w @ rows[near]
    sims = rows @ (q / np.linalg.norm(q))
    np.testing.assert_array_equal(ids, np.argsort(-sims)[:5])
    np.testing.assert_allclose(scores, np.sort(sims)[::-1][:5], atol=1e-5)


def test_expansion_ranks_an_image_equal_to_a_query_variant_first() -> None:
    # Row 7 is the query turned back (a lossless rotation); the other variant is near a
    # tight group (rows 20-22) that the expansion follows, away from row 7.
    rows = unit_rows(60, 16, seed=21)
    centre = unit_rows(1, 16, seed=22)[0]
    rows[20:23] = normalised(centre + 0.05 * unit_rows(3, 16, seed=23))
    query = np.stack([normalised(centre + 0.05 * unit_rows(1, 16, seed=24))[0], rows[7]])
    ids, scores = rank(index_of(rows), Rows(rows), CNN, query, 4, options(expand=True))
    assert ids[0] == 7 and scores[0] == pytest.approx(1.0, abs=1e-5)
    assert set(ids[1:].tolist()) == {20, 21, 22}
    # Without expansion the same image is first too: the rule only keeps it there.
    plain, _ = rank(index_of(rows), Rows(rows), CNN, query, 1, options(expand=False))
    assert plain[0] == 7


@pytest.mark.parametrize(("measure", "expand"), [("cosine", True), ("pearson", None)])
def test_an_empty_index_finds_nothing(measure: str, expand: bool | None) -> None:
    empty = FloatIndex(16)
    ids, scores = rank(
        empty,
        Rows(np.zeros((0, 16), np.float32)),
        CNN,
        unit_rows(1, 16),
        5,
        options(measure, expand),
    )
    assert len(ids) == 0 and len(scores) == 0
