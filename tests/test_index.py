"""Vector indexes against an exact oracle, and their persistence and catalog sync."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from lookalike.index.faiss_index import BinaryIndex, FloatIndex
from lookalike.index.manager import IndexManager
from lookalike.search.engine import merge_variants
from lookalike.store.base import NewImage
from lookalike.store.sqlite import SqliteCatalog


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _clustered(rng: np.random.Generator, n: int, d: int, centres: int = 64) -> np.ndarray:
    c = _unit(rng, centres, d)
    x = c[rng.integers(0, centres, n)] + 0.35 * _unit(rng, n, d)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_flat_index_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    x = _unit(rng, 500, 32)
    ids = np.arange(1000, 1500, dtype=np.int64)
    index = FloatIndex.build(ids, x, ann_threshold=10_000, nprobe=8)
    assert index.kind == "flat"
    q = _unit(rng, 5, 32)
    scores, found = index.search(q, 10)
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10] + 1000
    assert (found == truth).all()
    assert np.allclose(scores[:, 0], (q @ x.T).max(axis=1), atol=1e-5)


def test_ivf_recall_at_10_against_exact() -> None:
    rng = np.random.default_rng(1)
    x = _clustered(rng, 20_000, 64)
    ids = np.arange(len(x), dtype=np.int64)
    ivf = FloatIndex.build(ids, x, ann_threshold=5_000, nprobe=16)
    flat = FloatIndex.build(ids, x, ann_threshold=10**9, nprobe=16)
    assert ivf.kind == "ivf"
    q = _clustered(rng, 200, 64)
    _, approx = ivf.search(q, 10)
    _, exact = flat.search(q, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    assert recall >= 0.95


def test_remove_and_replace() -> None:
    rng = np.random.default_rng(2)
    x = _unit(rng, 10, 8)
    index = FloatIndex(8)
    index.add(np.arange(10), x)
    index.remove(np.array([3, 4]))
    assert len(index) == 8
    assert 3 not in index.ids()
    index.add(np.array([5]), x[:1])  # replacing id 5 keeps one copy
    assert len(index) == 8
    _, found = index.search(x[:1], 2)
    assert set(found[0]) == {0, 5}


def test_k_larger_than_collection_returns_everything() -> None:
    index = FloatIndex(4)
    index.add(np.arange(3), np.eye(4, dtype=np.float32)[:3])
    _scores, found = index.search(np.eye(4, dtype=np.float32)[:1], 100)
    assert found.shape == (1, 3)


def test_binary_index_scores_by_hamming() -> None:
    codes = np.array([[0] * 8, [255] + [0] * 7, [255] * 8], dtype=np.uint8)
    index = BinaryIndex(64)
    index.add(np.array([7, 8, 9]), codes)
    scores, found = index.search(codes[:1], 3)
    assert list(found[0]) == [7, 8, 9]
    assert np.allclose(scores[0], [1.0, 1 - 8 / 64, 0.0])


def test_merge_variants_keeps_best_score_per_id() -> None:
    scores = np.array([[0.9, 0.5, 0.1], [0.95, 0.8, 0.2]], dtype=np.float32)
    ids = np.array([[1, 2, 3], [2, 4, -1]], dtype=np.int64)
    got_ids, got_scores = merge_variants(scores, ids, 3)
    assert list(got_ids) == [2, 1, 4]
    assert np.allclose(got_scores, [0.95, 0.9, 0.8])


@dataclass
class _Desc:
    name: str = "cnn"
    version: str = "v1"
    dim: int = 4
    kind: str = "float"
    input_side: int = 1


def _record(catalog: SqliteCatalog, n: int, start: int = 0) -> None:
    rng = np.random.default_rng(start)
    rows = _unit(rng, n, 4)
    catalog.record(
        NewImage(f"sha{start + i}", f"/p/{start + i}.png", 1, 1, 1, 1, "PNG", {"cnn": ("v1", r)})
        for i, r in enumerate(rows)
    )


def test_manager_persists_and_catches_up_with_catalog(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "c.sqlite3")
    desc = _Desc()
    _record(catalog, 20)
    manager = IndexManager(catalog, tmp_path / "index", ann_threshold=1000, nprobe=4)
    assert len(manager.get(desc)) == 20  # type: ignore[arg-type]
    assert (tmp_path / "index" / "cnn.idx").exists()
    # Another writer (or a run killed before saving) changes the catalog behind our back.
    _record(catalog, 5, start=100)
    catalog.remove_paths(["/p/0.png", "/p/1.png"])
    fresh = IndexManager(catalog, tmp_path / "index", ann_threshold=1000, nprobe=4)
    index = fresh.get(desc)  # type: ignore[arg-type]
    assert len(index) == 23
    assert set(index.ids().tolist()) == set(catalog.vector_ids("cnn", "v1").tolist())


def test_damaged_index_file_is_rebuilt(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "c.sqlite3")
    _record(catalog, 10)
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "cnn.idx").write_bytes(b"garbage")
    manager = IndexManager(catalog, tmp_path / "index", ann_threshold=1000, nprobe=4)
    assert len(manager.get(_Desc())) == 10  # type: ignore[arg-type]


def test_version_change_rebuilds_from_matching_vectors_only(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "c.sqlite3")
    _record(catalog, 10)
    manager = IndexManager(catalog, tmp_path / "index", ann_threshold=1000, nprobe=4)
    manager.get(_Desc())  # type: ignore[arg-type]
    assert len(manager.get(_Desc(version="v2"))) == 0  # type: ignore[arg-type]


@pytest.mark.slow
def test_manager_switches_to_ivf_above_threshold(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "c.sqlite3")
    _record(catalog, 300)
    manager = IndexManager(catalog, tmp_path / "index", ann_threshold=200, nprobe=8)
    assert manager.get(_Desc()).kind == "ivf"  # type: ignore[arg-type]


def test_changed_ann_threshold_switches_index_kind(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "c.sqlite3")
    _record(catalog, 300)
    exact = IndexManager(catalog, tmp_path / "index", ann_threshold=1000, nprobe=8)
    assert exact.get(_Desc()).kind == "flat"  # type: ignore[arg-type]
    # Same catalog generation, new setting: the saved flat index must not be reused as is.
    approx = IndexManager(catalog, tmp_path / "index", ann_threshold=200, nprobe=8)
    assert approx.get(_Desc()).kind == "ivf"  # type: ignore[arg-type]
