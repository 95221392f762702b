"""Keeps each descriptor's persisted vector index in agreement with the catalog.

The catalog bumps a per-descriptor generation on every vector change (SQLite triggers).
The same machinery serves the face embeddings, with the face store as the source.
An index file records the generation it reflects; when the two differ (another process
wrote, or a run was killed between commit and save) the index is brought up to date by
adding and removing the ids that differ, never by trusting the file.

File layout: ``MAGIC``, one JSON header line (version, generation, kind, n, crc32), the
n int64 ids, then the faiss index. ``crc32`` covers the other header fields and every byte
after the header; a file that fails it is rebuilt from the catalog, with a warning.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from lookalike.files import atomic_write, shown
from lookalike.index.base import IndexSpec, VectorIndex, VectorSource
from lookalike.index.faiss_index import BinaryIndex, FloatIndex, Metric

log = logging.getLogger("lookalike.index")

# Format 2 added the checksum; files of another format are rebuilt.
MAGIC = b"LKIDX2\n"
FORMAT_PREFIX = MAGIC[:5]
MAX_HEADER = 4096  # bytes: a longer first line is not a header
HEADER_FIELDS = {"version": str, "generation": int, "kind": str, "n": int, "crc32": int}
CHECK_CHUNK = 1 << 24  # bytes read at a time while checking a file
# Vectors read from the source at a time, building or catching up an index.
BUILD_BATCH = 4096


class _Damaged(Exception):
    """An index file that cannot be trusted (the message says why)."""


@dataclass(frozen=True)
class IndexState:
    """What an index file says of itself, read from its header alone (``lookalike status``;
    its checksum is checked when the index is loaded)."""

    name: str
    # "current", "empty" (no file, nothing to index), "behind" (the catalog changed since),
    # "missing", "other version", "older format" or "damaged": all but the first two are
    # rebuilt or caught up at the next use.
    state: str
    vectors: int | None = None
    kind: str | None = None
    bytes: int | None = None

    @property
    def current(self) -> bool:
        return self.state in ("current", "empty")


@dataclass
class _Held:
    index: VectorIndex
    version: str
    generation: int


def rows_as(descriptor: IndexSpec, raw: np.ndarray) -> np.ndarray:
    """Catalog blobs (uint8 (n, bytes)) viewed as the descriptor's row type."""
    if descriptor.kind == "binary":
        return raw.reshape(len(raw), -1)
    return raw.view(np.float32).reshape(len(raw), descriptor.dim)


class IndexManager:
    """One index per descriptor, loaded lazily, synced with the catalog before use."""

    def __init__(
        self,
        source: VectorSource,
        directory: Path,
        *,
        ann_threshold: int,
        nprobe: int,
        metric: Metric = "ip",
        poll_s: float = 0.0,
    ) -> None:
        self.source = source
        # Seconds an index is used without asking the source for its generation again
        # (0: before every use). A shared catalog is a round trip away: a node on one reads
        # it at most this often, and sees other nodes' changes within this time.
        self.poll_s = poll_s
        self._asked: dict[str, float] = {}
        self.metric: Metric = metric
        self.directory = directory
        self.ann_threshold = ann_threshold
        self.nprobe = nprobe
        self._held: dict[str, _Held] = {}
        self._lock = threading.RLock()

    def _file(self, name: str) -> Path:
        return self.directory / f"{name}.idx"

    def get(self, descriptor: IndexSpec) -> VectorIndex:
        """The descriptor's index, brought up to date with the catalog.

        Other threads may be searching the returned index while a later ``get`` changes
        it: the index's own lock lets those searches finish first. Only the manager
        changes an index, always under its lock.
        """
        with self._lock:
            held = self._held.get(descriptor.name)
            now = time.monotonic()
            fresh = now - self._asked.get(descriptor.name, -math.inf) < self.poll_s
            if fresh and held is not None and held.version == descriptor.version:
                return held.index
            self._asked[descriptor.name] = now
            generation = self.source.generation(descriptor.name)
            if held is None or held.version != descriptor.version:
                held = self._load(descriptor)
            if held is None or held.generation != generation or not self._fits(held):
                held = self._sync(descriptor, held, generation)
                self._save(descriptor.name, held)
            self._held[descriptor.name] = held
            return held.index

    def rebuild(self, descriptor: IndexSpec) -> VectorIndex:
        """Build the index afresh from the catalog's vectors and persist it."""
        with self._lock:
            self._asked[descriptor.name] = time.monotonic()
            generation = self.source.generation(descriptor.name)
            held = self._build(descriptor, generation)
            self._save(descriptor.name, held)
            self._held[descriptor.name] = held
            return held.index

    def state(self, descriptor: IndexSpec) -> IndexState:
        """The index file's state against the catalog, from its header (nothing loaded)."""
        name = descriptor.name
        try:
            with self._file(name).open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                magic = f.read(len(MAGIC))
                if magic != MAGIC:
                    old = magic.startswith(FORMAT_PREFIX)
                    return IndexState(name, "older format" if old else "damaged", bytes=size)
                head, _ = _header(f.readline(MAX_HEADER))
        except FileNotFoundError:
            empty = self.source.generation(name) == 0
            return IndexState(name, "empty" if empty else "missing")
        except (OSError, _Damaged):
            return IndexState(name, "damaged")
        if head["version"] != descriptor.version:
            return IndexState(name, "other version", bytes=size)
        behind = head["generation"] != self.source.generation(name)
        state = "behind" if behind else "current"
        return IndexState(name, state, vectors=head["n"], kind=head["kind"], bytes=size)

    # -- internals --------------------------------------------------------------------

    def _fits(self, held: _Held) -> bool:
        return self._right_kind(held.index.kind, len(held.index))

    def _right_kind(self, kind: str, n: int) -> bool:
        """False when ``n`` vectors call for the other of exact and approximate search.

        IVF is kept down to half the threshold, so a collection hovering around it is not
        rebuilt back and forth.
        """
        if kind == "flat":
            return n < self.ann_threshold
        if kind == "ivf":
            return n >= self.ann_threshold // 2
        return True

    def _build(self, descriptor: IndexSpec, generation: int) -> _Held:
        """A new index of the source's vectors, read BUILD_BATCH rows at a time: memory is
        the index and one batch (and, for IVF, its bounded training sample)."""
        name, version = descriptor.name, descriptor.version
        index = self._empty(descriptor, self.source.vector_ids(name, version))
        for ids, raw in self.source.vector_batches(name, version, BUILD_BATCH):
            index.add(ids, rows_as(descriptor, raw))
        return _Held(index, version, generation)

    def _empty(self, descriptor: IndexSpec, ids: np.ndarray) -> VectorIndex:
        """An empty index of the kind ``ids`` (the vectors to come) call for; an IVF one is
        trained on the same sample as ``FloatIndex.build`` over all of them would take."""
        if descriptor.kind == "binary":
            return BinaryIndex(descriptor.dim)
        index = FloatIndex(descriptor.dim, nprobe=self.nprobe, metric=self.metric)
        n = len(ids)
        if n and n >= self.ann_threshold:
            sample = self._rows_of(descriptor, ids[FloatIndex.training_sample(n)])
            if len(sample):  # else every vector went since ``ids`` was read
                index.train_ivf(sample, n)
        return index

    def _rows_of(self, descriptor: IndexSpec, ids: np.ndarray) -> np.ndarray:
        """The rows of ``ids`` (those still in the source), read BUILD_BATCH at a time."""
        parts = [np.zeros((0, descriptor.dim), dtype=np.float32)]
        for start in range(0, len(ids), BUILD_BATCH):
            chunk = ids[start : start + BUILD_BATCH].tolist()
            _, raw = self.source.vectors_for(descriptor.name, descriptor.version, chunk)
            parts.append(rows_as(descriptor, raw))
        return np.concatenate(parts)

    def _sync(self, descriptor: IndexSpec, held: _Held | None, generation: int) -> _Held:
        if held is None or held.version != descriptor.version:
            return self._build(descriptor, generation)
        wanted = self.source.vector_ids(descriptor.name, descriptor.version)
        have = held.index.ids()
        n = len(wanted)
        # Cross the exact/approximate boundary, or outgrow the IVF lists: rebuild.
        if not self._right_kind(held.index.kind, n) or (
            held.index.kind == "ivf" and n > 4 * len(have)
        ):
            return self._build(descriptor, generation)
        held.index.remove(np.setdiff1d(have, wanted))
        missing = np.setdiff1d(wanted, have)
        for start in range(0, len(missing), BUILD_BATCH):
            ids, raw = self.source.vectors_for(
                descriptor.name, descriptor.version, missing[start : start + BUILD_BATCH].tolist()
            )
            if len(ids):
                held.index.add(ids, rows_as(descriptor, raw))
        held.generation = generation
        return held

    def _load(self, descriptor: IndexSpec) -> _Held | None:
        """The saved index, or None when the caller must rebuild it: no file, a file of
        another version or format, or a damaged one (logged as a warning)."""
        path = self._file(descriptor.name)
        try:
            with path.open("rb") as f:
                return self._read(f, descriptor)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("%s cannot be read (%s): rebuilding it from the catalog", shown(path), exc)
        except (_Damaged, RuntimeError) as exc:
            # RuntimeError: faiss could not parse what the checksum let through.
            log.warning("%s is damaged (%s): rebuilding it from the catalog", shown(path), exc)
        return None

    def _read(self, f: io.BufferedReader, descriptor: IndexSpec) -> _Held | None:
        magic = f.read(len(MAGIC))
        if magic != MAGIC:
            if not magic.startswith(FORMAT_PREFIX):
                raise _Damaged("not a lookalike index file")
            return None  # another format (LKIDX1 had no checksum)
        head, stored = _header(f.readline(MAX_HEADER))
        if head["version"] != descriptor.version:
            return None
        body = f.tell()
        if _crc32(f, _canonical(head)) != stored:
            raise _Damaged("checksum mismatch")
        f.seek(body)
        ids = np.empty(head["n"], dtype=np.int64)
        if f.readinto(ids.data.cast("B")) != ids.nbytes:
            raise _Damaged("cut short")
        index: VectorIndex
        if head["kind"] == "binary":
            index = BinaryIndex.read(f.read, ids)
        else:
            index = FloatIndex.read(f.read, ids, kind=head["kind"], nprobe=self.nprobe)
        if len(index) != len(ids):
            raise _Damaged(f"{len(index)} vectors under {len(ids)} ids")
        return _Held(index, descriptor.version, head["generation"])

    def _save(self, name: str, held: _Held) -> None:
        """Write the index file: header, ids, faiss bytes streamed from the index (memory:
        a piece, not a copy of a possibly many-GB index). The header's checksum is known
        only at the end: the header line has room for it, and is written again then."""
        ids = np.ascontiguousarray(held.index.ids(), dtype=np.int64).tobytes()
        head: dict[str, Any] = {
            "version": held.version,
            "generation": held.generation,
            "kind": held.index.kind,
            "n": len(ids) // 8,
        }

        # Every header line as wide as the widest checksum's (JSON allows the spaces).
        width = len(json.dumps({**head, "crc32": 0xFFFFFFFF}))

        def header(crc: int) -> bytes:
            return json.dumps({**head, "crc32": crc}).encode().ljust(width) + b"\n"

        def write(f: BinaryIO) -> None:
            crc = zlib.crc32(ids, zlib.crc32(_canonical(head)))

            def piece(data: bytes) -> None:
                nonlocal crc
                crc = zlib.crc32(data, crc)
                f.write(data)

            f.write(MAGIC)
            start = f.tell()
            f.write(header(0))
            f.write(ids)
            held.index.write_to(piece)
            end = f.tell()
            f.seek(start)
            f.write(header(crc))
            f.seek(end)

        atomic_write(self._file(name), write, durable=True)


def _canonical(head: dict[str, Any]) -> bytes:
    """The header fields as the checksum covers them (key order fixed)."""
    return json.dumps(head, sort_keys=True).encode()


def _header(line: bytes) -> tuple[dict[str, Any], int]:
    """The header's fields, checked for type, and its stored checksum; _Damaged if any is
    missing or malformed."""
    if not line.endswith(b"\n"):
        raise _Damaged("no header line")
    try:
        head = json.loads(line)
    except ValueError as exc:  # JSON and UTF-8 errors
        raise _Damaged("malformed header") from exc
    if (
        not isinstance(head, dict)
        or any(not isinstance(head.get(k), t) for k, t in HEADER_FIELDS.items())
        or head["n"] < 0
    ):
        raise _Damaged("malformed header")
    return head, head.pop("crc32")


def _crc32(f: io.BufferedReader, start: bytes) -> int:
    """CRC-32 of ``start`` followed by the rest of ``f``, read in chunks.

    CRC-32 rather than SHA-256 or BLAKE2b: the check is against accidental damage (whoever
    can write the data folder can rewrite the catalog too), and CRC-32 is the fastest of
    the three (bench/speed.py checksum), which counts for a 1M x 1280 index (5 GB).
    """
    crc = zlib.crc32(start)
    chunk = memoryview(bytearray(CHECK_CHUNK))
    while n := f.readinto(chunk):
        crc = zlib.crc32(chunk[:n], crc)
    return crc
