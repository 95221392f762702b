"""Whitening in the index manager, and the compact index (PQ shortlist, float16 re-rank)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from lookalike.index import compact as compact_module
from lookalike.index.compact import CompactIndex
from lookalike.index.faiss_index import FloatIndex
from lookalike.index.manager import IndexManager
from lookalike.index.whiten import Whitening
from lookalike.index.whitened import Fitted, WhitenPolicy, save
from lookalike.search.duplicates import _pairs
from lookalike.store.base import NewImage
from lookalike.store.sql_catalog import SqlCatalog
from lookalike.store.sqlite_db import SqliteDatabase

DIM = 16
POLICY = WhitenPolicy(frozenset({"cnn"}), 8, 50)


@dataclass
class _Desc:
    name: str = "cnn"
    version: str = "v1"
    dim: int = DIM
    kind: str = "float"
    input_side: int = 1


def _vectors(seed: int, n: int, d: int = DIM) -> np.ndarray:
    """Unit rows around 32 centres, the axes of unequal variance (something to whiten)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((32, d)) * np.linspace(3.0, 0.3, d)
    x = centres[rng.integers(0, 32, n)] + 0.4 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _catalog(tmp_path: Path) -> SqlCatalog:
    return SqlCatalog(SqliteDatabase(tmp_path / "c.sqlite3"))


def _record(catalog: SqlCatalog, n: int, start: int = 0) -> None:
    catalog.record(
        NewImage(f"sha{start + i}", f"/p/{start + i}.png", 1, 1, 1, 1, "PNG", {"cnn": ("v1", r)})
        for i, r in enumerate(_vectors(start, n))
    )


def _manager(catalog: SqlCatalog, folder: Path, **kw: object) -> IndexManager:
    options: dict[str, object] = {"ann_threshold": 10_000, "nprobe": 8, "whiten": POLICY}
    options.update(kw)
    return IndexManager(catalog, folder, **options)  # type: ignore[arg-type]


def _header(folder: Path) -> bytes:
    return (folder / "cnn.idx").read_bytes().split(b"\n")[1]


def _exact(index_rows: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Ids of the exact top ``k`` of each query (rows in the index's space)."""
    return np.asarray(ids[np.argsort(-(q @ index_rows.T), axis=1, kind="stable")[:, :k]])


# -- whitening in the manager ----------------------------------------------------------


def test_too_small_a_collection_is_searched_unwhitened(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path)
    _record(catalog, 30)  # below whiten_min_images (50)
    index = _manager(catalog, tmp_path / "index").get(_Desc())  # type: ignore[arg-type]
    q = _vectors(9, 3)
    assert np.array_equal(index.to_space(q), q)
    assert not (tmp_path / "index" / "cnn.whiten").exists()
    assert b'"version": "v1"' in _header(tmp_path / "index")


def test_whitening_is_fitted_at_the_minimum_and_refitted_when_the_count_doubles(
    tmp_path: Path,
) -> None:
    catalog = _catalog(tmp_path)
    _record(catalog, 30)
    manager = _manager(catalog, tmp_path / "index")
    manager.get(_Desc())  # type: ignore[arg-type]
    _record(catalog, 30, start=1000)  # 60: whitened from now on
    index = manager.get(_Desc())  # type: ignore[arg-type]
    ids, raw = catalog.vectors("cnn", "v1")
    fitted = Whitening.fit(raw.view(np.float32), 8, source_version="v1")
    q = _vectors(9, 5)
    assert np.allclose(index.to_space(q), fitted.apply(q), atol=1e-5)
    assert f'"version": "v1+{fitted.tag}"'.encode() in _header(tmp_path / "index")
    # Search is exact search in the whitened space.
    _, found = index.search(q, 5)
    whitened = fitted.apply(raw.view(np.float32))
    assert np.array_equal(found, _exact(whitened, ids, fitted.apply(q), 5))

    _record(catalog, 50, start=2000)  # 110 < 2 x 60: the same whitening, caught up
    assert len(manager.get(_Desc())) == 110  # type: ignore[arg-type]
    assert fitted.tag.encode() in _header(tmp_path / "index")
    _record(catalog, 10, start=3000)  # 120: doubled, refitted, the index rebuilt
    index = manager.get(_Desc())  # type: ignore[arg-type]
    _, raw = catalog.vectors("cnn", "v1")
    refitted = Whitening.fit(raw.view(np.float32), 8, source_version="v1")
    assert refitted.tag != fitted.tag
    assert f'"version": "v1+{refitted.tag}"'.encode() in _header(tmp_path / "index")
    assert len(index) == 120
    # Another node on the same catalog fits the same whitening from the same sample.
    other = _manager(catalog, tmp_path / "other").get(_Desc())  # type: ignore[arg-type]
    assert np.array_equal(other.to_space(q), index.to_space(q))


def test_an_index_saved_unwhitened_is_whitened_once_it_may_be(tmp_path: Path) -> None:
    # Saved by a manager that did not whiten it (another version, other settings); the
    # catalog does not change afterwards, yet the index is whitened when next asked for.
    catalog = _catalog(tmp_path)
    _record(catalog, 60)
    plain = _manager(catalog, tmp_path / "index", whiten=WhitenPolicy(frozenset(), 0, 2))
    assert plain.get(_Desc()).to_space(_vectors(9, 1)).shape == (1, DIM)  # type: ignore[arg-type]
    manager = _manager(catalog, tmp_path / "index")
    assert manager.whitened(_Desc())  # type: ignore[arg-type]
    assert manager.get(_Desc()).to_space(_vectors(9, 1)).shape == (1, 8)  # type: ignore[arg-type]


def test_collection_shrinking_below_the_minimum_drops_the_whitening(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path)
    _record(catalog, 60)
    manager = _manager(catalog, tmp_path / "index")
    assert manager.get(_Desc()).to_space(_vectors(9, 1)).shape == (1, 8)  # type: ignore[arg-type]
    catalog.remove_paths([f"/p/{i}.png" for i in range(20)])
    index = manager.get(_Desc())  # type: ignore[arg-type]
    assert index.to_space(_vectors(9, 1)).shape == (1, DIM)
    assert len(index) == 40
    assert not (tmp_path / "index" / "cnn.whiten").exists()


@pytest.mark.parametrize("damage", ["garbage", "other version", "cut"])
def test_unusable_whitening_file_is_logged_and_fitted_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    catalog = _catalog(tmp_path)
    _record(catalog, 60)
    folder = tmp_path / "index"
    good = _manager(catalog, folder).get(_Desc())  # type: ignore[arg-type]
    q = _vectors(9, 4)
    expected = good.search(q, 5)
    path = folder / "cnn.whiten"
    if damage == "garbage":
        path.write_bytes(b"not a whitening")
    elif damage == "cut":
        path.write_bytes(path.read_bytes()[:-100])
    else:
        _, raw = catalog.vectors("cnn", "v1")
        old = Whitening.fit(raw.view(np.float32)[:40], 8, source_version="v0")
        save(path, Fitted(old, 60))
    with caplog.at_level(logging.WARNING, logger="lookalike.index"):
        index = _manager(catalog, folder).get(_Desc())  # type: ignore[arg-type]
    assert "cnn.whiten cannot be used" in caplog.text
    for got, want in zip(index.search(q, 5), expected, strict=True):
        assert np.allclose(got, want, atol=1e-5)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lookalike.index"):
        _manager(catalog, folder).get(_Desc())  # type: ignore[arg-type]
    assert not caplog.records  # the file was written again whole


def test_whitening_of_other_settings_is_fitted_again(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path)
    _record(catalog, 60)
    _manager(catalog, tmp_path / "index").get(_Desc())  # type: ignore[arg-type]
    wider = WhitenPolicy(frozenset({"cnn"}), 12, 50)
    index = _manager(catalog, tmp_path / "index", whiten=wider).get(_Desc())  # type: ignore[arg-type]
    assert index.to_space(_vectors(9, 1)).shape == (1, 12)
    assert b"+pcaw12-" in _header(tmp_path / "index")


# -- the compact index -------------------------------------------------------------------


def _trained(tmp_path: Path, x: np.ndarray) -> CompactIndex:
    return CompactIndex.train(tmp_path / "cnn", x[CompactIndex.training_sample(len(x))], len(x))


def test_compact_recall_at_10_against_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compact_module, "SHORTLIST", 100)  # a shortlist of 2% of the rows
    x = _vectors(0, 5000, 32)
    ids = np.arange(5000, dtype=np.int64) * 3 + 7
    index = _trained(tmp_path, x)
    for start in range(0, 5000, 1000):
        index.add(ids[start : start + 1000], x[start : start + 1000])
    q = _vectors(1, 100, 32)
    scores, found = index.search(q, 10)
    truth = _exact(x, ids, q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
    assert recall >= 0.95
    # Scores are the exact inner products of the float16 rows.
    rows = {int(i): r for i, r in zip(ids, x.astype(np.float16).astype(np.float32), strict=True)}
    assert np.allclose(scores[0], [rows[int(i)] @ q[0] for i in found[0]], atol=1e-4)
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_compact_remove_replace_and_few_rows(tmp_path: Path) -> None:
    x = _vectors(0, 400, 8)
    index = _trained(tmp_path, x)
    index.add(np.arange(400), x)
    index.remove(np.arange(0, 400, 2))
    index.add(np.array([1]), x[:1])  # id 1 now holds row 0's vector
    assert len(index) == 200
    assert index.ids().tolist() == list(range(1, 400, 2))
    _, found = index.search(x[:1], 3)
    assert found[0, 0] == 1
    _, found = index.search(x[2:4], 400)
    assert set(found[0].tolist()) <= set(range(1, 400, 2)) | {-1}
    empty = _trained(tmp_path, x)
    scores, found = empty.search(x[:2], 5)
    assert scores.shape == found.shape == (2, 0)


def test_manager_switches_to_compact_and_loads_it_back(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path)
    _record(catalog, 400)
    folder = tmp_path / "index"
    options = {"ann_threshold": 100, "compact_threshold": 300}
    index = _manager(catalog, folder, **options).get(_Desc())  # type: ignore[arg-type]
    assert index.kind == "compact"
    files = sorted(folder.glob("cnn.*.f16"))
    assert len(files) == 1
    q = _vectors(9, 4)
    before = index.search(q, 10)
    loaded = _manager(catalog, folder, **options).get(_Desc())  # type: ignore[arg-type]
    assert sorted(folder.glob("cnn.*.f16")) == files  # loaded, not rebuilt
    for got, want in zip(loaded.search(q, 10), before, strict=True):
        assert np.array_equal(got, want)
    # Caught up by generation: removed ids leave, new ones come.
    catalog.remove_paths(["/p/0.png", "/p/1.png"])
    _record(catalog, 10, start=5000)
    caught = _manager(catalog, folder, **options).get(_Desc())  # type: ignore[arg-type]
    assert set(caught.ids().tolist()) == set(catalog.vector_ids("cnn", "v1").tolist())
    # Below half the threshold it is an exact index again, and the f16 file goes.
    catalog.remove_paths([f"/p/{i}.png" for i in range(2, 360)])
    small = _manager(catalog, folder, **options).get(_Desc())  # type: ignore[arg-type]
    assert small.kind == "flat"
    assert not list(folder.glob("cnn.*.f16"))


def test_kill_between_f16_rows_and_index_file_gives_right_answers(tmp_path: Path) -> None:
    """Rows appended to the float16 file by a process killed before it saved the index
    file: the saved index uses its own rows only, and catches up from the catalog."""
    catalog = _catalog(tmp_path)
    _record(catalog, 400)
    folder = tmp_path / "index"
    options = {
        "ann_threshold": 100,
        "compact_threshold": 300,
        "whiten": WhitenPolicy(frozenset(), 0, 2),
    }
    _manager(catalog, folder, **options).get(_Desc())  # type: ignore[arg-type]
    (f16,) = folder.glob("cnn.*.f16")
    saved = (folder / "cnn.idx").read_bytes()
    # The killed process: it recorded 50 images and wrote their rows, and a torn half row.
    _record(catalog, 50, start=7000)
    doomed = _manager(catalog, folder, **options)
    doomed.get(_Desc())  # type: ignore[arg-type]
    (folder / "cnn.idx").write_bytes(saved)  # ... but its index file never replaced the old
    with f16.open("ab") as f:
        f.write(b"\x01" * 7)
    fresh = _manager(catalog, folder, **options).get(_Desc())  # type: ignore[arg-type]
    ids, raw = catalog.vectors("cnn", "v1")
    rows = raw.view(np.float32).reshape(len(ids), DIM)
    q = _vectors(9, 5)
    scores, found = fresh.search(q, 10)
    exact = FloatIndex.build(
        ids, rows.astype(np.float16).astype(np.float32), ann_threshold=10**6, nprobe=1
    )
    want_scores, want = exact.search(q, 10)
    assert np.mean(found == want) >= 0.9  # approximate shortlist, exact scores
    got = {int(i): s for i, s in zip(found.ravel(), scores.ravel(), strict=True)}
    wanted = {int(i): s for i, s in zip(want.ravel(), want_scores.ravel(), strict=True)}
    assert all(abs(got[i] - wanted[i]) < 1e-4 for i in set(got) & set(wanted))


def test_damaged_f16_file_rebuilds_the_compact_index(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    catalog = _catalog(tmp_path)
    _record(catalog, 400)
    folder = tmp_path / "index"
    options = {"ann_threshold": 100, "compact_threshold": 300}
    before = _manager(catalog, folder, **options).get(_Desc()).search(_vectors(9, 3), 5)  # type: ignore[arg-type]
    (f16,) = folder.glob("cnn.*.f16")
    with f16.open("r+b") as f:
        f.truncate(100)
    with caplog.at_level(logging.WARNING, logger="lookalike.index"):
        index = _manager(catalog, folder, **options).get(_Desc())  # type: ignore[arg-type]
    assert "shorter than" in caplog.text
    assert len(index) == 400
    assert [f.name for f in folder.glob("cnn.*.f16")] != [f16.name]
    _, found = index.search(_vectors(9, 3), 5)
    assert np.mean(found == before[1]) >= 0.9


def test_duplicate_pairs_are_scored_by_the_descriptors_cosine_not_the_whitened_one(
    tmp_path: Path,
) -> None:
    """The duplicate threshold is a cosine of cnn descriptors: a whitened index finds the
    candidates, the descriptors' own cosine decides."""
    catalog = _catalog(tmp_path)
    _record(catalog, 60)
    index = _manager(catalog, tmp_path / "index").get(_Desc())  # type: ignore[arg-type]
    ids, raw = catalog.vectors("cnn", "v1")
    rows = raw.view(np.float32)
    cosine = rows @ rows.T
    pairs = _pairs(index, ids, rows, 0.9, rescore=True)
    assert pairs
    at = {int(i): n for n, i in enumerate(ids)}
    for a, b, score in pairs:
        assert score == pytest.approx(cosine[at[a], at[b]], abs=1e-5)
    want = {(int(ids[i]), int(ids[j])) for i, j in np.argwhere(cosine >= 0.9) if i != j}
    assert {(a, b) for a, b, _ in pairs} <= want
    whitened_scores = [s for a, b, s in _pairs(index, ids, rows, -1.0)]
    assert not np.allclose(sorted(whitened_scores)[-5:], sorted(s for *_, s in pairs)[-5:])


# -- database-side augmentation of a whitened exact index -------------------------------

DBA = WhitenPolicy(frozenset({"cnn"}), 8, 50, dba_k=3, dba_alpha=3.0)


def test_a_whitened_exact_index_holds_augmented_rows(tmp_path: Path) -> None:
    from lookalike.index.augment import augment_database

    catalog = _catalog(tmp_path)
    _record(catalog, 80)
    manager = _manager(catalog, tmp_path / "index", whiten=DBA)
    index = manager.get(_Desc())  # type: ignore[arg-type]
    assert b"+dba3a3" in _header(tmp_path / "index")
    ids, raw = catalog.vectors("cnn", "v1")
    whitened = index.to_space(raw.view(np.float32).reshape(len(ids), DIM))
    held = index.inner.stored(ids)  # type: ignore[attr-defined]
    np.testing.assert_allclose(held, augment_database(whitened, 3, 3.0), atol=1e-5)
    # Loaded back, it is the same augmented index (no rebuild), and a row added later is
    # summed with its nearest held rows as it comes.
    again = _manager(catalog, tmp_path / "index", whiten=DBA).get(_Desc())  # type: ignore[arg-type]
    np.testing.assert_allclose(again.inner.stored(ids), held, atol=1e-6)  # type: ignore[attr-defined]
    _record(catalog, 1, start=500)
    grown = manager.get(_Desc())  # type: ignore[arg-type]
    new_id = np.setdiff1d(grown.ids(), ids)
    assert len(new_id) == 1
    row = grown.inner.stored(new_id)  # type: ignore[attr-defined]
    _, new_raw = catalog.vectors_for("cnn", "v1", new_id.tolist())
    plain = grown.to_space(new_raw.view(np.float32).reshape(1, DIM))
    assert 0.5 < float((row @ plain.T)[0, 0]) < 0.9999  # moved towards its neighbours
    # Without augmentation the version says so, and the rows are the whitened ones.
    plain_index = _manager(catalog, tmp_path / "plain", whiten=POLICY).get(_Desc())  # type: ignore[arg-type]
    assert b"dba" not in _header(tmp_path / "plain")
    ids, raw = catalog.vectors("cnn", "v1")
    np.testing.assert_allclose(
        plain_index.inner.stored(ids),  # type: ignore[attr-defined]
        plain_index.to_space(raw.view(np.float32).reshape(len(ids), DIM)),
        atol=1e-6,
    )
