"""The compact index: a coarse search over product-quantization codes held in RAM, then the
shortlist re-ranked exactly with float16 rows memory-mapped from disk.

The codes are faiss' fast-scan PQ (4-bit sub-quantizers, scanned with SIMD lookups in
registers): at 1M whitened 256-d vectors its one-row query took 2.97 ms against 3.64 ms for
8-bit PQ of the same 32 bytes, at the same recall (0.993 / 0.990), and it trains in a
quarter of the time (bench/compact.py). Its integer sums are exact on every CPU, and the
re-ranking decides the order.

RAM per row: the PQ code (``CODE_BYTES``), faiss' id of it in its inverted list (8 bytes)
and the row's catalog id (8 bytes); the float16 rows (2 bytes a dimension) stay on disk,
read through the page cache for the few hundred rows of each shortlist.

The float16 file, ``<name>.<token>.f16``, is append-only: rows are added at its end under
an exclusive lock (several processes may share a data folder), and the index file records
how many rows of it the index uses. Rows beyond that (a process killed between writing
rows and saving the index, or another process's rows) are ignored; removed rows leave
the coarse index and the shortlist. Their space is reclaimed when the index is rebuilt,
into a new file (a new token), so a file an index file names never changes under it.

Choice and figures: BENCHMARKS.md, compact (``bench/compact.py``).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from lookalike.errors import BadInput
from lookalike.index.faiss_index import WRITE_PIECE, Reader, _lists, _stream, _threads_for
from lookalike.index.rwlock import ReadWriteLock

CODE_BYTES = 32  # bytes of PQ code per row (at most; fewer for narrow rows)
BITS = 4  # per sub-quantizer: fast-scan PQ's
# Inverted lists scanned per query: a share of the lists, at least NPROBE. At 1M whitened
# vectors (bench/compact.py's recipe, 1,000 lists) recall@10 after re-rank was 0.957 /
# 0.979 / 0.993 at nprobe 16 / 32 / 64, the same for shortlists of 300 and 1,000: the
# lists scanned, not the shortlist, set recall. At 10M (3,162 lists) 64 / 128 / 202 / 256
# lists gave 0.927 / 0.956 / 0.977 / 0.988 at 3.5 / 4.4 / 5.5 / 6.4 ms.
NPROBE = 64
PROBE_SHARE = 0.064  # 64 of 1,000 lists
MAX_NPROBE = 512


def nprobe_for(lists: int) -> int:
    """Lists to scan of ``lists``: PROBE_SHARE of them, between NPROBE and MAX_NPROBE."""
    return min(lists, max(NPROBE, min(MAX_NPROBE, round(lists * PROBE_SHARE))))


SHORTLIST = 1000  # rows re-ranked exactly per query (room for larger neighbourhoods)
# Training rows per inverted list: k-means of 10M rows' lists on 64 points each is
# minutes, not the tens of minutes faiss' 256 would take, for the same recall.
TRAIN_PER_LIST = 64
MIN_TRAIN = 20_000  # ... and at least this many, for the PQ codebooks
# The payload ``write_to`` begins with: rows used in the f16 file, width, its token.
_HEAD = struct.Struct("<QQ16s")


class CompactDamaged(RuntimeError):
    """A compact index whose float16 file is missing or shorter than it says (rebuilt)."""


def _sub_quantizers(dim: int) -> int:
    """PQ sub-quantizers for ``dim``-wide rows: the most that fit CODE_BYTES and divide ``dim``."""
    most = CODE_BYTES * 8 // BITS
    return max(m for m in range(1, min(most, dim) + 1) if dim % m == 0)


class CompactIndex:
    """Rows compared by inner product (cosine, for L2-normalised rows): IVF fast-scan PQ
    shortlist, exact float16 re-ranking. faiss numbers rows by their place in the f16 file."""

    kind = "compact"

    def __init__(self, coarse: Any, path: Path, dim: int) -> None:
        self._coarse = coarse  # faiss IndexIVFPQFastScan over row numbers
        self.path = path
        self.dim = dim
        self._row_ids = np.zeros(0, dtype=np.int64)  # catalog id of each used row; -1: removed
        self._live = 0
        self._rows: np.ndarray = np.zeros((0, dim), dtype=np.float16)
        self._guard = ReadWriteLock()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self._closing = threading.Lock()

    # -- building ----------------------------------------------------------------------

    @staticmethod
    def training_sample(n: int) -> np.ndarray:
        """Which of ``n`` rows (sorted positions) a compact index over them is trained on."""
        limit = max(MIN_TRAIN, TRAIN_PER_LIST * _lists(n))
        if n <= limit:
            return np.arange(n)
        return np.sort(np.random.default_rng(0).choice(n, limit, replace=False))

    @classmethod
    def train(cls, prefix: Path, sample: np.ndarray, n: int) -> CompactIndex:
        """An empty compact index for ``n`` rows like ``sample`` (float (s, dim), the rows
        at ``training_sample(n)``), its float16 rows in a new file ``<prefix>.<token>.f16``."""
        sample = np.ascontiguousarray(sample, dtype=np.float32)
        dim = sample.shape[1]
        lists = max(1, min(_lists(n), len(sample) // 39))
        quantizer = faiss.IndexFlatIP(dim)
        coarse = faiss.IndexIVFPQFastScan(
            quantizer, dim, lists, _sub_quantizers(dim), BITS, faiss.METRIC_INNER_PRODUCT
        )
        coarse.train(sample)
        coarse.nprobe = nprobe_for(lists)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        return cls(coarse, prefix.with_name(f"{prefix.name}.{secrets.token_hex(8)}.f16"), dim)

    # -- the VectorIndex interface -----------------------------------------------------

    def __len__(self) -> int:
        return self._live

    def ids(self) -> np.ndarray:
        """int64 (n,) catalog ids held, sorted (computed: not kept in RAM)."""
        return np.sort(self._row_ids[self._row_ids >= 0])

    def add(self, ids: np.ndarray, rows: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) == 0:
            return
        rows = np.ascontiguousarray(rows, dtype=np.float32).reshape(len(ids), -1)
        if rows.shape[1] != self.dim:
            raise BadInput(f"vector width {rows.shape[1]} does not match the index ({self.dim})")
        with self._guard.writing():
            self._remove(ids)
            first = self._append(rows.astype(np.float16))
            self._coarse.add_with_ids(rows, np.arange(first, first + len(ids), dtype=np.int64))
            used = np.full(first + len(ids), -1, dtype=np.int64)  # rows between: others'
            used[: len(self._row_ids)] = self._row_ids
            used[first:] = ids
            self._row_ids = used
            self._live += len(ids)
            self._map(len(used))

    def remove(self, ids: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(ids):
            with self._guard.writing():
                self._remove(ids)

    def to_space(self, queries: np.ndarray) -> np.ndarray:
        """``queries`` checked: the rows are this index's space already."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise BadInput(f"query shape {q.shape} does not match the index width {self.dim}")
        return q

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.search_space(self.to_space(queries), k)

    def search_space(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` of each query's shortlist by exact inner product with the float16
        rows: ``(scores float32 (m, k'), ids int64 (m, k'))``, k' = min(k, len), id -1
        where a shortlist had fewer."""
        q = self.to_space(q)
        m = q.shape[0]
        with self._guard.reading():
            k = max(1, min(k, self._live)) if self._live else 0
            scores = np.full((m, k), -np.inf, dtype=np.float32)
            found = np.full((m, k), -1, dtype=np.int64)
            if k == 0:
                return scores, found
            with _threads_for(m):
                _, shortlist = self._coarse.search(q, max(k, SHORTLIST))
            for i in range(m):
                rows = np.unique(shortlist[i][shortlist[i] >= 0])  # sorted: reads in file order
                # einsum, not BLAS: OpenBLAS' threads make this 1000 x d product ~100x
                # slower on a busy machine (bench/compact.py measured 37 ms against 0.14).
                exact = np.einsum("ij,j->i", self._rows[rows].astype(np.float32), q[i])
                best = np.argsort(-exact, kind="stable")[:k]
                scores[i, : len(best)] = exact[best]
                found[i, : len(best)] = self._row_ids[rows[best]]
        return scores, found

    def to_bytes(self) -> bytes:
        pieces: list[bytes] = []
        self.write_to(pieces.append)
        return b"".join(pieces)

    def write_to(self, write: Callable[[bytes], object]) -> None:
        """The f16 file made durable first (the index about to be saved names its rows),
        then: the rows used, the width, the file's token, each row's catalog id, faiss' index."""
        with self._guard.reading():
            os.fsync(self._fd)
            token = self.path.name.rsplit(".", 2)[-2].encode()
            write(_HEAD.pack(len(self._row_ids), self.dim, token))
            write(self._row_ids.tobytes())

            def piece(data: bytes) -> int:
                write(bytes(data))
                return len(data)

            writer = faiss.PyCallbackIOWriter(piece, WRITE_PIECE)  # type: ignore[attr-defined]
            try:
                faiss.write_index(self._coarse, writer)
            finally:
                del writer  # flushes its last piece

    @classmethod
    def read(cls, read: Reader, ids: np.ndarray, prefix: Path) -> CompactIndex:
        """The index ``write_to`` wrote, streamed from ``read``, over ``prefix``'s f16 file
        it names; ``ids``: the catalog ids it holds (checked). CompactDamaged if the f16
        file is missing or short; RuntimeError if faiss cannot parse the rest."""
        head = read(_HEAD.size)
        if len(head) != _HEAD.size:
            raise CompactDamaged("cut short")
        used, dim, token = _HEAD.unpack(head)
        path = prefix.with_name(f"{prefix.name}.{token.decode('ascii', 'replace')}.f16")
        row_ids = np.frombuffer(read(8 * used), dtype=np.int64).copy()
        if len(row_ids) != used:
            raise CompactDamaged("cut short")
        if not np.array_equal(np.sort(row_ids[row_ids >= 0]), ids):
            raise CompactDamaged("rows and ids disagree")
        try:
            if path.stat().st_size < used * dim * 2:
                raise CompactDamaged(f"{path.name} is shorter than the {used} rows it had")
        except FileNotFoundError:
            raise CompactDamaged(f"{path.name} is missing") from None
        coarse = faiss.read_index(_stream(read))
        ivf = faiss.extract_index_ivf(coarse)
        ivf.nprobe = nprobe_for(ivf.nlist)
        index = cls(coarse, path, int(dim))
        index._row_ids = row_ids
        index._live = len(ids)
        index._map(used)
        return index

    @staticmethod
    def prune(prefix: Path, keep: object) -> None:
        """Delete ``<prefix>.*.f16`` files but the one ``keep`` (an index) uses, if any:
        those of replaced indexes (a process still mapping one keeps reading it)."""
        inner = getattr(keep, "inner", keep)
        kept = inner.path if isinstance(inner, CompactIndex) else None
        for path in prefix.parent.glob(f"{prefix.name}.*.f16"):
            if path != kept:
                path.unlink(missing_ok=True)

    # -- internals ---------------------------------------------------------------------

    def _remove(self, ids: np.ndarray) -> None:
        if self._live == 0 or ids.min() > self._row_ids.max():
            return  # new ids only (the usual add): no pass over every row
        rows = np.flatnonzero(np.isin(self._row_ids, ids))
        if len(rows):
            self._coarse.remove_ids(faiss.IDSelectorBatch(rows.astype(np.int64)))
            self._row_ids[rows] = -1
            self._live -= len(rows)

    def _append(self, rows: np.ndarray) -> int:
        """Append float16 ``rows`` to the file under an exclusive lock; returns the row
        number of the first. A partial row left by a killed writer is padded out first."""
        width = self.dim * 2
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            size = os.fstat(self._fd).st_size
            if size % width:
                os.write(self._fd, bytes(width - size % width))
            first = -(-size // width)
            data = memoryview(rows.tobytes())
            while data:
                data = data[os.write(self._fd, data) :]
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        return first

    def _map(self, rows: int) -> None:
        """Map the first ``rows`` rows of the f16 file (read-only, shared with the page cache)."""
        if rows == 0:
            self._rows = np.zeros((0, self.dim), dtype=np.float16)
        elif rows != len(self._rows):
            self._rows = np.memmap(self.path, dtype=np.float16, mode="r", shape=(rows, self.dim))

    def __del__(self) -> None:
        with self._closing:
            fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
