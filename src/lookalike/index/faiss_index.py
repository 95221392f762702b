"""faiss-backed vector indexes: exact inner product, IVF above a size, Hamming for hashes."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import faiss
import numpy as np

from lookalike.errors import BadInput

# Query batches smaller than this are searched on one OpenMP thread: for a few rows faiss
# gains nothing from more, and its spinning workers cost 2-5x when the cores are busy
# (BENCHMARKS.md, speed-search and speed-ann: 1-thread and default columns).
SMALL_BATCH = 32
_omp_lock = threading.Lock()


@contextmanager
def _threads_for(nq: int) -> Iterator[None]:
    """Run faiss on one thread for small query batches, on all cores otherwise."""
    if nq >= SMALL_BATCH:
        yield
        return
    with _omp_lock:
        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            yield
        finally:
            faiss.omp_set_num_threads(before)


def _as_ids(ids: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)


Metric = Literal["ip", "l2"]


def _flat(dim: int, metric: Metric) -> faiss.Index:
    return faiss.IndexFlatIP(dim) if metric == "ip" else faiss.IndexFlatL2(dim)


class FloatIndex:
    """Float32 rows compared by inner product (``ip``: cosine, for L2-normalised rows;
    higher is closer) or by squared Euclidean distance (``l2``; lower is closer).

    ``flat`` is exact; ``ivf`` (IndexIVFFlat) trades a little recall for sub-linear search
    on large collections; ``nprobe`` sets that trade.
    """

    def __init__(
        self, dim: int, *, kind: str = "flat", nprobe: int = 32, metric: Metric = "ip"
    ) -> None:
        self.dim = dim
        self.kind = kind
        self.nprobe = nprobe
        self.metric: Metric = metric
        self._ids = np.zeros(0, dtype=np.int64)
        self._index: faiss.Index = faiss.IndexIDMap2(_flat(dim, metric))

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
        if n >= ann_threshold:
            index = cls(dim, kind="ivf", nprobe=nprobe, metric=metric)
            index._train_ivf(rows)
        else:
            index = cls(dim, metric=metric)
        index.add(ids, rows)
        return index

    def _train_ivf(self, rows: np.ndarray) -> None:
        n = rows.shape[0]
        # About sqrt(n) lists (1,000 at a million vectors), with at least 39 training points
        # per list (faiss' advice). On 1280-d cnn-like vectors (bench/speed.py ann), 4 sqrt(n)
        # lists gave recall@10 0.84-0.91 at the default nprobe (48) from 30k to 100k vectors,
        # and k-means for 4,000 lists over all of 1M vectors would take ~18 minutes on 2
        # cores; sqrt(n) lists give 0.94 at 50k, 0.97 at 100k and 0.98 at 1M, where the
        # whole build (train + add) takes under 3 minutes.
        nlist = max(1, min(round(math.sqrt(n)), n // 39))
        quantizer = _flat(self.dim, self.metric)
        kind = faiss.METRIC_INNER_PRODUCT if self.metric == "ip" else faiss.METRIC_L2
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, kind)
        # k-means on at most 256 points per list (faiss' own cap, which it would otherwise
        # apply by sampling the whole matrix): training cost grows linearly with n.
        sample = rows
        if n > 256 * nlist:
            pick = np.random.default_rng(0).choice(n, 256 * nlist, replace=False)
            sample = rows[np.sort(pick)]
        ivf.train(sample)
        ivf.nprobe = self.nprobe
        self._index = ivf

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        return self._ids

    def add(self, ids: np.ndarray, rows: np.ndarray) -> None:
        ids = _as_ids(ids)
        rows = np.ascontiguousarray(rows, dtype=np.float32).reshape(len(ids), -1)
        if rows.shape[1] != self.dim:
            raise BadInput(f"vector width {rows.shape[1]} does not match the index ({self.dim})")
        if len(ids) == 0:
            return
        self.remove(ids[np.isin(ids, self._ids)])
        self._index.add_with_ids(rows, ids)
        self._ids = np.union1d(self._ids, ids)

    def remove(self, ids: np.ndarray) -> None:
        ids = _as_ids(ids)
        if len(ids) == 0:
            return
        self._index.remove_ids(faiss.IDSelectorBatch(ids))
        self._ids = np.setdiff1d(self._ids, ids, assume_unique=False)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise BadInput(f"query shape {q.shape} does not match the index width {self.dim}")
        k = max(1, min(k, len(self)))
        if len(self) == 0:
            m = q.shape[0]
            return np.zeros((m, 0), np.float32), np.zeros((m, 0), np.int64)
        with _threads_for(q.shape[0]):
            scores, ids = self._index.search(q, k)
        return scores, ids

    def to_bytes(self) -> bytes:
        return bytes(faiss.serialize_index(self._index).tobytes())

    @classmethod
    def from_bytes(cls, data: bytes, ids: np.ndarray, *, kind: str, nprobe: int) -> FloatIndex:
        raw = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        metric: Metric = "l2" if raw.metric_type == faiss.METRIC_L2 else "ip"
        index = cls(int(raw.d), kind=kind, nprobe=nprobe, metric=metric)
        index._index = raw
        if kind == "ivf":
            faiss.extract_index_ivf(raw).nprobe = nprobe
        index._ids = _as_ids(ids)
        return index


class BinaryIndex:
    """Packed bit codes compared by Hamming distance; score = 1 - distance / bits."""

    kind = "binary"

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self._ids = np.zeros(0, dtype=np.int64)
        self._index: faiss.IndexBinary = faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(bits))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        return self._ids

    def add(self, ids: np.ndarray, rows: np.ndarray) -> None:
        ids = _as_ids(ids)
        codes = np.ascontiguousarray(rows, dtype=np.uint8).reshape(len(ids), -1)
        if codes.shape[1] * 8 != self.bits:
            raise BadInput(f"code width {codes.shape[1] * 8} bits does not match {self.bits}")
        if len(ids) == 0:
            return
        self.remove(ids[np.isin(ids, self._ids)])
        self._index.add_with_ids(codes, ids)
        self._ids = np.union1d(self._ids, ids)

    def remove(self, ids: np.ndarray) -> None:
        ids = _as_ids(ids)
        if len(ids) == 0:
            return
        self._index.remove_ids(faiss.IDSelectorBatch(ids))
        self._ids = np.setdiff1d(self._ids, ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(queries, dtype=np.uint8)
        if q.ndim != 2 or q.shape[1] * 8 != self.bits:
            raise BadInput(f"query shape {q.shape} does not match {self.bits}-bit codes")
        k = max(1, min(k, len(self)))
        if len(self) == 0:
            m = q.shape[0]
            return np.zeros((m, 0), np.float32), np.zeros((m, 0), np.int64)
        with _threads_for(q.shape[0]):
            dist, ids = self._index.search(q, k)
        return (1.0 - dist.astype(np.float32) / self.bits), ids

    def to_bytes(self) -> bytes:
        return bytes(faiss.serialize_index_binary(self._index).tobytes())

    @classmethod
    def from_bytes(cls, data: bytes, ids: np.ndarray) -> BinaryIndex:
        raw = faiss.deserialize_index_binary(np.frombuffer(data, dtype=np.uint8))
        index = cls(int(raw.d))
        index._index = raw
        index._ids = _as_ids(ids)
        return index
