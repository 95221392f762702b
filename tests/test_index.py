"""Vector indexes against an exact oracle; their persistence (checksummed files), catalog
sync and use from several threads at once."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pytest

import lookalike
from lookalike.index import manager as manager_module
from lookalike.index.faiss_index import BinaryIndex, FloatIndex, _threads_for
from lookalike.index.manager import IndexManager
from lookalike.index.rwlock import ReadWriteLock
from lookalike.index.whiten import Whitening
from lookalike.index.whitened import WhitenedIndex
from lookalike.search.engine import Lookalike
from lookalike.search.ranking import merge_variants
from lookalike.store.base import NewImage
from lookalike.store.sql_catalog import SqlCatalog
from lookalike.store.sqlite_db import SqliteDatabase

from .conftest import SAMPLES, sample


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


def _record(catalog: SqlCatalog, n: int, start: int = 0) -> None:
    rng = np.random.default_rng(start)
    rows = _unit(rng, n, 4)
    catalog.record(
        NewImage(f"sha{start + i}", f"/p/{start + i}.png", 1, 1, 1, 1, "PNG", {"cnn": ("v1", r)})
        for i, r in enumerate(rows)
    )


def test_manager_persists_and_catches_up_with_catalog(tmp_path: Path) -> None:
    catalog = SqlCatalog(SqliteDatabase(tmp_path / "c.sqlite3"))
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


def test_damaged_index_file_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    catalog = SqlCatalog(SqliteDatabase(tmp_path / "c.sqlite3"))
    _record(catalog, 10)
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "cnn.idx").write_bytes(b"garbage")
    manager = IndexManager(catalog, tmp_path / "index", ann_threshold=1000, nprobe=4)
    assert len(manager.get(_Desc())) == 10  # type: ignore[arg-type]
    assert "not a lookalike index file" in caplog.text


def test_header_field_changed_fails_the_checksum(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The checksum covers the header's fields too: a generation that went from the
    catalog's to another number is not taken for "the file is stale"."""
    catalog = SqlCatalog(SqliteDatabase(tmp_path / "c.sqlite3"))
    _record(catalog, 10)
    IndexManager(catalog, tmp_path / "index", ann_threshold=1000, nprobe=4).get(_Desc())  # type: ignore[arg-type]
    path = tmp_path / "index" / "cnn.idx"
    saved = path.read_bytes()
    generation = f'"generation": {catalog.generation("cnn")}'.encode()
    assert generation in saved
    path.write_bytes(saved.replace(generation, generation + b"0", 1))
    manager = IndexManager(catalog, tmp_path / "index", ann_threshold=1000, nprobe=4)
    assert len(manager.get(_Desc())) == 10  # type: ignore[arg-type]
    assert "(checksum mismatch)" in caplog.text
    assert path.read_bytes() == saved  # rebuilt as it was


def test_version_change_rebuilds_from_matching_vectors_only(tmp_path: Path) -> None:
    catalog = SqlCatalog(SqliteDatabase(tmp_path / "c.sqlite3"))
    _record(catalog, 10)
    manager = IndexManager(catalog, tmp_path / "index", ann_threshold=1000, nprobe=4)
    manager.get(_Desc())  # type: ignore[arg-type]
    assert len(manager.get(_Desc(version="v2"))) == 0  # type: ignore[arg-type]


def test_file_of_the_older_format_is_rebuilt_in_the_new_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    catalog = SqlCatalog(SqliteDatabase(tmp_path / "c.sqlite3"))
    _record(catalog, 10)
    (tmp_path / "index").mkdir()
    old = b'LKIDX1\n{"version": "v1", "generation": 1, "kind": "flat", "n": 0}\n'
    (tmp_path / "index" / "cnn.idx").write_bytes(old)
    manager = IndexManager(catalog, tmp_path / "index", ann_threshold=1000, nprobe=4)
    with caplog.at_level(logging.INFO, logger="lookalike.index"):
        assert len(manager.get(_Desc())) == 10  # type: ignore[arg-type]
    assert (tmp_path / "index" / "cnn.idx").read_bytes().startswith(b"LKIDX2\n")
    assert not caplog.records  # an upgrade, not damage


@pytest.mark.slow
def test_manager_switches_to_ivf_above_threshold(tmp_path: Path) -> None:
    catalog = SqlCatalog(SqliteDatabase(tmp_path / "c.sqlite3"))
    _record(catalog, 300)
    manager = IndexManager(catalog, tmp_path / "index", ann_threshold=200, nprobe=8)
    assert manager.get(_Desc()).kind == "ivf"  # type: ignore[arg-type]


def test_changed_ann_threshold_switches_index_kind(tmp_path: Path) -> None:
    catalog = SqlCatalog(SqliteDatabase(tmp_path / "c.sqlite3"))
    _record(catalog, 300)
    exact = IndexManager(catalog, tmp_path / "index", ann_threshold=1000, nprobe=8)
    assert exact.get(_Desc()).kind == "flat"  # type: ignore[arg-type]
    # Same catalog generation, new setting: the saved flat index must not be reused as is.
    approx = IndexManager(catalog, tmp_path / "index", ann_threshold=200, nprobe=8)
    assert approx.get(_Desc()).kind == "ivf"  # type: ignore[arg-type]


def _synthetic(lk: Lookalike, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random unit cnn vectors recorded straight into the catalog; (ids, rows)."""
    rows = _unit(np.random.default_rng(7), n, lk.descriptor("cnn").dim)
    version = lk.descriptor("cnn").version
    ids = lk.catalog.record(
        NewImage(f"{i:064x}", f"/synthetic/{i}.jpg", 1, 0, 1, 1, "JPEG", {"cnn": (version, r)})
        for i, r in enumerate(rows)
    )
    return np.asarray(ids, dtype=np.int64), rows


@pytest.mark.slow
def test_rows_asked_for_after_their_removal_are_a_key_error_or_none() -> None:
    # A search finds ids, another thread removes one, then the rows are asked for.
    rows = np.eye(4, dtype=np.float32)
    index = FloatIndex(4)
    index.add(np.arange(1, 5, dtype=np.int64), rows)
    index.remove(np.array([3], dtype=np.int64))
    with pytest.raises(KeyError, match="id 3"):
        index.stored(np.array([2, 3], dtype=np.int64))
    whitening = Whitening.fit(
        np.random.default_rng(0).standard_normal((50, 4)), 4, source_version="v"
    )
    whitened = WhitenedIndex(FloatIndex(4), whitening)
    whitened.add(np.arange(1, 5, dtype=np.int64), rows)
    whitened.remove(np.array([3], dtype=np.int64))
    assert whitened.held(np.array([2, 3], dtype=np.int64)) is None
    assert whitened.held(np.array([2], dtype=np.int64)).shape == (1, 4)  # type: ignore[union-attr]


def test_searches_stay_right_while_another_thread_adds_and_removes(tmp_path: Path) -> None:
    """Threads search through the engine while it adds and removes images in another. Each
    change is synced into the index object the searchers hold; removing the lowest ids
    moves every searched vector within it."""
    with lookalike.open(tmp_path / "data", commit_every=1, faces=False) as lk:
        ids, rows = _synthetic(lk, 3000)
        cnn = lk.descriptor("cnn")
        lk.indexes.get(cnn)
        folder = tmp_path / "new"
        folder.mkdir()
        for name in SAMPLES[:2]:
            sample(name).resize((64, 64)).save(folder / f"{name}.png")
        stop = threading.Event()
        wrong: list[str] = []

        def search(seed: int) -> int:
            rng = np.random.default_rng(seed)
            done = 0
            while not stop.is_set():
                j = int(rng.integers(len(ids) // 2, len(ids)))  # never removed
                hits = lk.search_vectors(rows[j : j + 1], k=3, descriptor="cnn")
                if hits[0].image_id != ids[j] or hits[0].score < 0.999:
                    wrong.append(f"query {ids[j]}: {hits[0].image_id} {hits[0].score}")
                done += 1
            return done

        with ThreadPoolExecutor(3) as pool:
            searchers = [pool.submit(search, s) for s in range(3)]
            try:
                for step in range(30):
                    if step % 10 == 0:
                        lk.index([folder], faces=False, progress=False)
                    lk.remove([f"/synthetic/{i}.jpg" for i in range(50 * step, 50 * step + 50)])
                    if step % 10 == 9:
                        lk.remove([folder])
            finally:
                stop.set()
            counts = [f.result() for f in searchers]
        held = lk.indexes.get(cnn).ids()
        assert held.tolist() == lk.catalog.vector_ids("cnn", cnn.version).tolist()
    assert not wrong, wrong[:5]
    assert min(counts) > 0


def test_small_search_thread_count_stays_in_its_thread() -> None:
    """faiss' OpenMP (libgomp) keeps the thread count per calling thread: a small search
    setting one thread does not change it for a search in another thread, so concurrent
    searches need no process-wide lock around it."""
    inside, checked = threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    def small_search() -> None:
        with _threads_for(1):
            seen["small"] = faiss.omp_get_max_threads()
            inside.set()
            checked.wait(30)
        seen["small, after"] = faiss.omp_get_max_threads()

    default = faiss.omp_get_max_threads()
    worker = threading.Thread(target=small_search)
    worker.start()
    assert inside.wait(30)
    seen["other thread"] = faiss.omp_get_max_threads()
    checked.set()
    worker.join()
    assert seen == {"small": 1, "other thread": default, "small, after": default}


def _hold(lock: ReadWriteLock, mode: str, log: list[str], release: threading.Event) -> None:
    with lock.reading() if mode == "read" else lock.writing():
        log.append(f"{mode} in")
        release.wait(30)
    log.append(f"{mode} out")


def test_readers_share_the_lock_and_a_writer_waits_for_them() -> None:
    lock, log = ReadWriteLock(), []
    first, second, writer_go = threading.Event(), threading.Event(), threading.Event()
    threads = [threading.Thread(target=_hold, args=(lock, "read", log, first))]
    threads[0].start()
    while not log:
        time.sleep(0.001)
    with lock.reading():  # a second reader is let in beside the first
        log.append("second read")
    writer = threading.Thread(target=_hold, args=(lock, "write", log, writer_go))
    writer.start()
    time.sleep(0.1)
    late = threading.Thread(target=_hold, args=(lock, "read", log, second))
    late.start()  # arrives while the writer waits: held back
    time.sleep(0.1)
    assert log == ["read in", "second read"]
    first.set()
    threads[0].join()
    while "write in" not in log:
        time.sleep(0.001)
    assert log == ["read in", "second read", "read out", "write in"]
    writer_go.set()
    second.set()
    writer.join()
    late.join()
    assert log[4:] == ["write out", "read in", "read out"]


def _float_rows(n: int) -> tuple[FloatIndex | BinaryIndex, np.ndarray]:
    return FloatIndex(64), _unit(np.random.default_rng(3), n, 64)


def _binary_rows(n: int) -> tuple[FloatIndex | BinaryIndex, np.ndarray]:
    return BinaryIndex(256), np.random.default_rng(3).integers(0, 256, (n, 32), dtype=np.uint8)


@pytest.mark.parametrize("make", [_float_rows, _binary_rows], ids=["float", "binary"])
def test_index_changed_during_searches_answers_every_search_right(
    make: Callable[[int], tuple[FloatIndex | BinaryIndex, np.ndarray]],
) -> None:
    """Removing the lowest ids moves every other row inside faiss: a search running at
    that moment must still find each row under its own id."""
    n, step = 8_000, 40
    index, rows = make(2 * n)
    index.add(np.arange(n), rows[:n])
    stop = threading.Event()

    def search(seed: int) -> list[tuple[int, int]]:
        rng = np.random.default_rng(seed)
        wrong = []
        while not stop.is_set():
            j = int(rng.integers(n // 2, n))  # never removed
            _, found = index.search(rows[j : j + 1], 1)
            if found[0, 0] != j:
                wrong.append((j, int(found[0, 0])))
        return wrong

    with ThreadPoolExecutor(3) as pool:
        searchers = [pool.submit(search, s) for s in range(3)]
        try:
            for start in range(0, n // 2, step):
                index.remove(np.arange(start, start + step))
                index.add(
                    np.arange(n + start, n + start + step), rows[n + start : n + start + step]
                )
        finally:
            stop.set()
        wrong = [w for f in searchers for w in f.result()]
    assert not wrong, wrong[:5]
    assert len(index) == n


@pytest.fixture(scope="module")
def indexed(photo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with the sample photos indexed, their faces included."""
    data = tmp_path_factory.mktemp("indexed") / "data"
    with lookalike.open(data) as lk:
        lk.index([photo_dir], progress=False)
    return data


def _answers(lk: Lookalike, name: str, photo_dir: Path) -> list[list[tuple[int, float]]]:
    """Every sample photo's hits (id, score) from the ``name`` index ("face": the faces
    like the astronaut's)."""
    if name == "face":
        found = lk.people.search(str(photo_dir / "astronaut.jpg"), k=5, max_distance=2.0)
        return [[(h.face_id, round(h.distance, 5)) for h in found.results]]
    queries = sorted(str(p) for p in photo_dir.iterdir())
    results = [lk.search_one(q, k=6, descriptor=name) for q in queries]
    return [[(h.image_id, round(h.score, 5)) for h in r.results] for r in results]


@pytest.mark.parametrize("name", ["cnn", "phash", "face"])
def test_damaged_index_body_is_rebuilt_from_the_catalog(
    name: str, indexed: Path, photo_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """50 bytes flipped in the middle of the ids + faiss part, the header left intact: the
    file is not trusted but rebuilt (and rewritten), with a warning; answers do not change."""
    data = shutil.copytree(indexed, tmp_path / "data")
    with lookalike.open(data) as lk:
        before = _answers(lk, name, photo_dir)
    path = data / "index" / f"{name}.idx"
    damaged = bytearray(path.read_bytes())
    body = damaged.index(b"\n", damaged.index(b"\n") + 1) + 1  # after magic and header
    middle = (body + len(damaged)) // 2 - 25
    damaged[middle : middle + 50] = bytes(b ^ 0xFF for b in damaged[middle : middle + 50])
    path.write_bytes(damaged)
    with caplog.at_level(logging.WARNING, logger="lookalike.index"), lookalike.open(data) as lk:
        assert _answers(lk, name, photo_dir) == before
    assert [r.getMessage() for r in caplog.records] == [
        f"{path} is damaged (checksum mismatch): rebuilding it from the catalog"
    ]
    assert path.read_bytes() != damaged
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lookalike.index"), lookalike.open(data) as lk:
        assert _answers(lk, name, photo_dir) == before
    assert not caplog.records  # the rewritten file is whole


class _Watched:
    """A real catalog whose vector reads are recorded (how many rows each read asked for),
    and which refuses to hand out all vectors at once."""

    def __init__(self, catalog: SqlCatalog) -> None:
        self.catalog = catalog
        self.reads: list[int] = []

    def generation(self, name: str) -> int:
        return self.catalog.generation(name)

    def vector_ids(self, name: str, version: str) -> np.ndarray:
        return self.catalog.vector_ids(name, version)

    def vectors(self, name: str, version: str) -> tuple[np.ndarray, np.ndarray]:
        raise AssertionError("an index build must not load every vector at once")

    def vectors_for(
        self, name: str, version: str, ids: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        self.reads.append(len(ids))
        return self.catalog.vectors_for(name, version, ids)

    def vector_batches(
        self, name: str, version: str, size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for ids, raw in self.catalog.vector_batches(name, version, size):
            self.reads.append(len(ids))
            yield ids, raw


@pytest.mark.parametrize("ann_threshold", [10_000, 400])  # flat, then IVF
def test_an_index_is_built_in_bounded_batches_and_is_the_one_built_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ann_threshold: int
) -> None:
    monkeypatch.setattr(manager_module, "BUILD_BATCH", 128)
    catalog = SqlCatalog(SqliteDatabase(tmp_path / "c.sqlite3"))
    _record(catalog, 1000)
    source = _Watched(catalog)
    manager = IndexManager(source, tmp_path / "index", ann_threshold=ann_threshold, nprobe=4)
    built = manager.rebuild(_Desc())  # type: ignore[arg-type]
    ids, raw = catalog.vectors("cnn", "v1")
    at_once = FloatIndex.build(ids, raw.view(np.float32), ann_threshold=ann_threshold, nprobe=4)
    assert built.kind == at_once.kind == ("flat" if ann_threshold > 1000 else "ivf")
    assert built.to_bytes() == at_once.to_bytes()
    assert max(source.reads) <= 128
    assert sum(source.reads) >= 1000  # every vector (and, for IVF, a training sample)
    catalog.close()


@dataclass
class _WideDesc(_Desc):
    dim: int = 256


def test_saving_an_index_streams_it_to_the_file_without_a_copy_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 1M-vector index is GBs: saving it must not hold its bytes (nor two copies) in memory.
    # numpy and Python report their allocations to tracemalloc; faiss's is the index itself.
    import tracemalloc

    from lookalike.index import faiss_index

    monkeypatch.setattr(faiss_index, "WRITE_PIECE", 1 << 16)
    catalog = SqlCatalog(SqliteDatabase(tmp_path / "c.sqlite3"))
    rows = _unit(np.random.default_rng(0), 1000, 256)
    catalog.record(
        NewImage(f"sha{i}", f"/p/{i}.png", 1, 1, 1, 1, "PNG", {"cnn": ("v1", r)})
        for i, r in enumerate(rows)
    )
    desc = _WideDesc()
    manager = IndexManager(catalog, tmp_path / "index", ann_threshold=10**9, nprobe=4)
    size = len(manager.rebuild(desc).to_bytes())  # type: ignore[arg-type]
    tracemalloc.start()
    manager._save("cnn", manager._held["cnn"])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < size / 4, f"saving held {peak:,} bytes for a {size:,}-byte index"
    # What was saved loads back, its checksum (known only after the body) checked.
    again = IndexManager(catalog, tmp_path / "index", ann_threshold=10**9, nprobe=4)
    loaded = again.get(desc)  # type: ignore[arg-type]
    assert loaded.to_bytes() == manager._held["cnn"].index.to_bytes()
    catalog.close()
