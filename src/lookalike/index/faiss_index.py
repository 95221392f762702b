"""faiss-backed vector indexes: exact inner product, IVF above a size, Hamming for hashes.

Searches of one index run at the same time (faiss searches are thread-safe and release
the GIL); adding or removing rows waits for the searches in progress and holds new ones
back (a readers-writer lock), because faiss moves rows in memory while it changes an index.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import faiss
import numpy as np

from lookalike.errors import BadInput
from lookalike.index.rwlock import ReadWriteLock

# Query batches smaller than this are searched on one OpenMP thread. On idle cores more
# threads make a 4-row query ~1.8x faster, but once another process keeps a core busy they
# gain nothing (BENCHMARKS.md, speed-search: "one core busy" columns), and with both cores
# busy faiss' workers wait for them: a 1-row query on 10,000 vectors took 24 ms against 4.2
# on one thread. On all cores, 4 clients' /similar ran at 0.72x the throughput (http-concurrency).
SMALL_BATCH = 32
# Bytes faiss asks a reader for at a time when it loads an index from a stream.
READ_CHUNK = 1 << 24
# Bytes per piece when an index is written out (write_to).
WRITE_PIECE = 1 << 24

Metric = Literal["ip", "l2"]
# ``read(n)``: up to ``n`` more bytes of a stream (a file's ``read``).
Reader = Callable[[int], bytes]


@contextmanager
def _threads_for(nq: int) -> Iterator[None]:
    """Run faiss on one thread for small query batches, on all cores otherwise.

    OpenMP keeps the thread count per calling thread (libgomp's ``nthreads-var``), so
    concurrent searches each set their own without a lock (tests/test_index.py checks it).
    """
    if nq >= SMALL_BATCH:
        yield
        return
    with single_threaded():
        yield


@contextmanager
def single_threaded() -> Iterator[None]:
    """faiss on the calling thread alone while inside (its OpenMP thread count is kept per
    calling thread, so other threads are not affected)."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _as_ids(ids: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)


def _stream(read: Reader) -> faiss.IOReader:
    """A faiss reader that pulls its bytes from ``read``, a chunk at a time."""
    return faiss.PyCallbackIOReader(read, READ_CHUNK)  # type: ignore[attr-defined,no-any-return]


def _flat(dim: int, metric: Metric) -> faiss.Index:
    return faiss.IndexFlatIP(dim) if metric == "ip" else faiss.IndexFlatL2(dim)


def _lists(n: int) -> int:
    """The IVF lists for ``n`` rows.

    About sqrt(n) lists (1,000 at a million vectors), with at least 39 training points
    per list (faiss' advice). On 1280-d cnn-like vectors (bench/speed.py ann), 4 sqrt(n)
    lists gave recall@10 0.84-0.91 at the default nprobe (48) from 30k to 100k vectors,
    and k-means for 4,000 lists over all of 1M vectors would take ~18 minutes on 2
    cores; sqrt(n) lists give 0.94 at 50k, 0.97 at 100k and 0.98 at 1M, where the
    whole build (train + add) takes under 3 minutes.
    """
    return max(1, min(round(math.sqrt(n)), n // 39))


class _IdMapped:
    """Rows under int64 ids in a faiss ID-map index, with the sorted ids kept beside it.

    Subclasses say how rows and queries are checked and how distances become scores.
    """

    kind: str
    _index: Any  # faiss.Index or faiss.IndexBinary

    def __init__(self) -> None:
        self._ids = np.zeros(0, dtype=np.int64)
        self._guard = ReadWriteLock()

    def _rows(self, rows: np.ndarray, n: int) -> np.ndarray:
        """``rows`` as the (n, width) array faiss takes; BadInput if the width is wrong."""
        raise NotImplementedError

    def _queries(self, queries: np.ndarray) -> np.ndarray:
        """``queries`` as the (m, width) array faiss takes; BadInput if the shape is wrong."""
        raise NotImplementedError

    def _scores(self, distances: np.ndarray) -> np.ndarray:
        """faiss' distances (m, k) as this index's float32 scores."""
        return distances

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        return self._ids

    def add(self, ids: np.ndarray, rows: np.ndarray) -> None:
        ids = _as_ids(ids)
        if len(ids) == 0:
            return
        rows = self._rows(rows, len(ids))
        with self._guard.writing():
            self._remove(ids[np.isin(ids, self._ids)])
            self._index.add_with_ids(rows, ids)
            self._ids = np.union1d(self._ids, ids)

    def remove(self, ids: np.ndarray) -> None:
        ids = _as_ids(ids)
        if len(ids) == 0:
            return
        with self._guard.writing():
            self._remove(ids)

    def _remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self._index.remove_ids(faiss.IDSelectorBatch(ids))
            self._ids = np.setdiff1d(self._ids, ids)

    def to_space(self, queries: np.ndarray) -> np.ndarray:
        """``queries`` (descriptor rows) as rows of the space this index compares in: the
        same rows, checked, for these indexes (a whitened index whitens them)."""
        return self._queries(queries)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.search_space(self.to_space(queries), k)

    def search_space(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` of rows already in this index's space (``to_space``'s)."""
        q = self._queries(q)
        with self._guard.reading():
            n = len(self)
            if n == 0:
                m = q.shape[0]
                return np.zeros((m, 0), np.float32), np.zeros((m, 0), np.int64)
            with _threads_for(q.shape[0]):
                distances, ids = self._index.search(q, max(1, min(k, n)))
        return self._scores(distances), ids

    def to_bytes(self) -> bytes:
        pieces: list[bytes] = []
        self.write_to(pieces.append)
        return b"".join(pieces)

    def write_to(self, write: Callable[[bytes], object]) -> None:
        def piece(data: bytes) -> int:
            write(bytes(data))
            return len(data)

        with self._guard.reading():
            writer = faiss.PyCallbackIOWriter(piece, WRITE_PIECE)  # type: ignore[attr-defined]
            try:
                self._write(writer)
            finally:
                del writer  # flushes its last piece

    def _write(self, writer: Any) -> None:
        raise NotImplementedError


class FloatIndex(_IdMapped):
    """Float32 rows compared by inner product (``ip``: cosine, for L2-normalised rows;
    higher is closer) or by squared Euclidean distance (``l2``; lower is closer).

    ``flat`` is exact; ``ivf`` (IndexIVFFlat) trades a little recall for sub-linear search
    on large collections; ``nprobe`` sets that trade.
    """

    def __init__(
        self, dim: int, *, kind: str = "flat", nprobe: int = 32, metric: Metric = "ip"
    ) -> None:
        super().__init__()
        self.dim = dim
        self.kind = kind
        self.nprobe = nprobe
        self.metric: Metric = metric
        self._index = faiss.IndexIDMap2(_flat(dim, metric))

    @classmethod
    def build(
        cls,
        ids: np.ndarray,
        rows: np.ndarray,
        *,
        ann_threshold: int,
        nprobe: int,
        metric: Metric = "ip",
    ) -> FloatIndex:
        """An index over ``rows``: exact below ``ann_threshold`` rows, IVF at or above it."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        n, dim = rows.shape
        index = cls(dim, nprobe=nprobe, metric=metric)
        if n >= ann_threshold:
            pick = cls.training_sample(n)
            index.train_ivf(rows if len(pick) == n else rows[pick], n)
        index.add(ids, rows)
        return index

    @staticmethod
    def training_sample(n: int) -> np.ndarray:
        """Which of ``n`` rows (sorted positions) an IVF index over them is trained on.

        k-means on at most 256 points per list (faiss' own cap, which it would otherwise
        apply by sampling the whole matrix): training cost grows linearly with n.
        """
        limit = 256 * _lists(n)
        if n <= limit:
            return np.arange(n)
        return np.sort(np.random.default_rng(0).choice(n, limit, replace=False))

    def train_ivf(self, sample: np.ndarray, n: int) -> None:
        """Make this empty index an IVF one for ``n`` rows, trained on ``sample`` (the rows
        at ``training_sample(n)``); rows are added after, at once or in batches alike."""
        quantizer = _flat(self.dim, self.metric)
        kind = faiss.METRIC_INNER_PRODUCT if self.metric == "ip" else faiss.METRIC_L2
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, _lists(n), kind)
        ivf.train(np.ascontiguousarray(sample, dtype=np.float32))
        ivf.nprobe = self.nprobe
        self._index = ivf
        self.kind = "ivf"

    def stored(self, ids: np.ndarray) -> np.ndarray:
        """The rows held under ``ids``, float32 (len(ids), dim); exact (``flat``) indexes
        only: IVF lists keep no map from id to row. KeyError if an id is not held (removed
        since the caller found it)."""
        if self.kind != "flat":
            raise BadInput(f"an {self.kind} index cannot give its rows back")
        out = []
        with self._guard.reading():
            for i in _as_ids(ids):
                try:
                    out.append(self._index.reconstruct(int(i)))
                except RuntimeError:  # faiss: "key not found"
                    raise KeyError(f"id {int(i)} is not in the index") from None
        return np.asarray(out, dtype=np.float32).reshape(len(out), self.dim)

    def transform_rows(self, change: Callable[[np.ndarray], np.ndarray]) -> None:
        """Replace every row by ``change(all rows)`` (same shape, same order; ``flat`` only):
        what database-side augmentation does once an index is built."""
        if self.kind != "flat":
            raise BadInput(f"the rows of an {self.kind} index cannot be rewritten")
        with self._guard.writing():
            n = int(self._index.ntotal)
            if n == 0:
                return
            ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            rows = self._rows(change(self._index.index.reconstruct_n(0, n)), n)
            fresh = faiss.IndexIDMap2(_flat(self.dim, self.metric))
            fresh.add_with_ids(rows, ids)
            self._index = fresh

    def _rows(self, rows: np.ndarray, n: int) -> np.ndarray:
        rows = np.ascontiguousarray(rows, dtype=np.float32).reshape(n, -1)
        if rows.shape[1] != self.dim:
            raise BadInput(f"vector width {rows.shape[1]} does not match the index ({self.dim})")
        return rows

    def _queries(self, queries: np.ndarray) -> np.ndarray:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise BadInput(f"query shape {q.shape} does not match the index width {self.dim}")
        return q

    def _write(self, writer: Any) -> None:
        faiss.write_index(self._index, writer)

    @classmethod
    def read(cls, read: Reader, ids: np.ndarray, *, kind: str, nprobe: int) -> FloatIndex:
        """The index ``to_bytes`` wrote, streamed from ``read`` (memory: the index only),
        holding ``ids``; RuntimeError if faiss cannot parse it."""
        raw = faiss.read_index(_stream(read))
        metric: Metric = "l2" if raw.metric_type == faiss.METRIC_L2 else "ip"
        index = cls(int(raw.d), kind=kind, nprobe=nprobe, metric=metric)
        index._index = raw
        if kind == "ivf":
            faiss.extract_index_ivf(raw).nprobe = nprobe
        index._ids = _as_ids(ids)
        return index

    @classmethod
    def from_bytes(cls, data: bytes, ids: np.ndarray, *, kind: str, nprobe: int) -> FloatIndex:
        """The index ``to_bytes`` returned, holding ``ids``."""
        return cls.read(io.BytesIO(data).read, ids, kind=kind, nprobe=nprobe)


class BinaryIndex(_IdMapped):
    """Packed bit codes compared by Hamming distance; score = 1 - distance / bits."""

    kind = "binary"

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits
        self._index = faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(bits))

    def _rows(self, rows: np.ndarray, n: int) -> np.ndarray:
        codes = np.ascontiguousarray(rows, dtype=np.uint8).reshape(n, -1)
        if codes.shape[1] * 8 != self.bits:
            raise BadInput(f"code width {codes.shape[1] * 8} bits does not match {self.bits}")
        return codes

    def _queries(self, queries: np.ndarray) -> np.ndarray:
        q = np.ascontiguousarray(queries, dtype=np.uint8)
        if q.ndim != 2 or q.shape[1] * 8 != self.bits:
            raise BadInput(f"query shape {q.shape} does not match {self.bits}-bit codes")
        return q

    def _scores(self, distances: np.ndarray) -> np.ndarray:
        return 1.0 - distances.astype(np.float32) / self.bits

    def _write(self, writer: Any) -> None:
        faiss.write_index_binary(self._index, writer)

    @classmethod
    def read(cls, read: Reader, ids: np.ndarray) -> BinaryIndex:
        """The index ``to_bytes`` wrote, streamed from ``read``, holding ``ids``;
        RuntimeError if faiss cannot parse it."""
        raw = faiss.read_index_binary(_stream(read))
        index = cls(int(raw.d))
        index._index = raw
        index._ids = _as_ids(ids)
        return index

    @classmethod
    def from_bytes(cls, data: bytes, ids: np.ndarray) -> BinaryIndex:
        """The index ``to_bytes`` returned, holding ``ids``."""
        return cls.read(io.BytesIO(data).read, ids)
