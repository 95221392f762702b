"""Keeps each descriptor's persisted vector index in agreement with the catalog.

The catalog bumps a per-descriptor generation on every vector change (SQLite triggers).
The same machinery serves the face embeddings, with the face store as the source.
An index file records the generation it reflects; when the two differ (another process
wrote, or a run was killed between commit and save) the index is brought up to date by
adding and removing the ids that differ, never by trusting the file.

File layout: ``MAGIC``, one JSON header line (version, generation, kind, n, crc32), the
n int64 ids, then the faiss index. ``crc32`` covers the other header fields and every byte
after the header; a file that fails it is rebuilt from the catalog, with a warning.

Whitening (``WhitenPolicy``): a float descriptor named in the policy is indexed as
PCA-whitened rows once it has ``min_images`` vectors. The whitening is fitted on a
deterministic sample (every node fits the same one from the same catalog), kept in
``<name>.whiten`` and refitted when the count has doubled; its tag is part of the index's
version (``<descriptor version>+<tag>``), so a refit rebuilds the index. A whitening file
that is damaged or of another descriptor version is logged and fitted again.

From ``compact_threshold`` vectors an inner-product index is compact (``index/compact.py``):
codes in RAM, float16 rows in ``<name>.<token>.f16`` beside the index file, which records
how many of its rows it uses (rows appended after that are ignored).
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
from lookalike.index import whitened
from lookalike.index.base import IndexSpec, VectorIndex, VectorSource
from lookalike.index.compact import CompactIndex
from lookalike.index.faiss_index import BinaryIndex, FloatIndex, Metric
from lookalike.index.whiten import Whitening, WhiteningMismatch
from lookalike.index.whitened import Fitted, WhitenedIndex, WhitenPolicy

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


# No whitening for any descriptor (the faces' index, and the default of the class).
NO_WHITENING = WhitenPolicy(frozenset(), 0, 2)


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
        whiten: WhitenPolicy = NO_WHITENING,
        compact_threshold: int | None = None,
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
        self.whiten = whiten
        # Vectors from which an inner-product index is compact (None: never).
        self.compact_threshold = compact_threshold if metric == "ip" else None
        # The whitening each descriptor's index uses now (None: none), once looked up.
        self._fitted: dict[str, Fitted | None] = {}
        self._held: dict[str, _Held] = {}
        self._lock = threading.RLock()

    def _file(self, name: str) -> Path:
        return self.directory / f"{name}.idx"

    def _whiten_file(self, name: str) -> Path:
        return self.directory / f"{name}.whiten"

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
            version = self._version(descriptor)
            if fresh and held is not None and held.version == version:
                return held.index
            self._asked[descriptor.name] = now
            generation = self.source.generation(descriptor.name)
            if held is None or held.version != version:
                held = self._load(descriptor, version)
            if (
                held is None
                or held.generation != generation
                or not self._fits(held)
                or self._whitening_due(descriptor, held)
            ):
                held = self._sync(descriptor, held, generation)
                self._save(descriptor.name, held)
            self._held[descriptor.name] = held
            return held.index

    def whitened(self, descriptor: IndexSpec) -> bool:
        """Whether the descriptor's index compares whitened rows (brought up to date
        first): query expansion is on by default only then."""
        with self._lock:
            self.get(descriptor)
            return self._current(descriptor) is not None

    def rebuild(self, descriptor: IndexSpec) -> VectorIndex:
        """Build the index afresh from the catalog's vectors and persist it."""
        with self._lock:
            self._asked[descriptor.name] = time.monotonic()
            generation = self.source.generation(descriptor.name)
            ids = self.source.vector_ids(descriptor.name, descriptor.version)
            held = self._build(descriptor, generation, ids, self._whitening_for(descriptor, ids))
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
        if head["version"] != self._version(descriptor):
            return IndexState(name, "other version", bytes=size)
        behind = head["generation"] != self.source.generation(name)
        state = "behind" if behind else "current"
        return IndexState(name, state, vectors=head["n"], kind=head["kind"], bytes=size)

    # -- internals --------------------------------------------------------------------

    def _version(self, descriptor: IndexSpec) -> str:
        """The version the descriptor's index must have now (whitening included)."""
        return self._versioned(descriptor.version, self._current(descriptor))

    def _whitens(self, descriptor: IndexSpec) -> bool:
        return descriptor.kind == "float" and self.whiten.applies(descriptor.name, descriptor.dim)

    def _current(self, descriptor: IndexSpec) -> Fitted | None:
        """The whitening the descriptor's index is built on now: the one in memory, else
        its file's (None: no file, or one that cannot be used, which is logged)."""
        name = descriptor.name
        if not self._whitens(descriptor):
            return None
        if name not in self._fitted:
            path = self._whiten_file(name)
            try:
                fitted: Fitted | None = whitened.load(path, descriptor.version)
            except FileNotFoundError:
                fitted = None
            except (OSError, WhiteningMismatch) as exc:
                log.warning("%s cannot be used (%s): fitting it again", shown(path), exc)
                fitted = None
            if fitted is not None and not self.whiten.matches(fitted.whitening):
                fitted = None  # fitted under other settings: fitted again at the next sync
            self._fitted[name] = fitted
        return self._fitted[name]

    def _whitening_for(self, descriptor: IndexSpec, ids: np.ndarray) -> Fitted | None:
        """The whitening an index over ``ids`` is built on: none below ``min_images``
        vectors (too few to learn from), the current one until their count has doubled
        since it was fitted, else one fitted now on a sample of them (and saved)."""
        name = descriptor.name
        current = self._current(descriptor)
        if not self._whitens(descriptor) or len(ids) < self.whiten.min_images:
            if current is not None:
                self._whiten_file(name).unlink(missing_ok=True)
                self._fitted[name] = None
            return None
        if current is not None and len(ids) < 2 * current.count:
            return current
        sample = self._rows_of(descriptor, ids[whitened.sample_positions(len(ids))])
        if len(sample) < 2:  # the vectors went since ``ids`` was read
            return current
        whitening = Whitening.fit(
            sample,
            self.whiten.dim,
            source_version=descriptor.version,
            power=self.whiten.power,
            shrinkage=self.whiten.shrinkage,
        )
        fitted = Fitted(whitening, len(ids))
        whitened.save(self._whiten_file(name), fitted)
        self._fitted[name] = fitted
        log.info("%s: whitening fitted on %d of %d vectors", name, len(sample), len(ids))
        return fitted

    def _whitening_due(self, descriptor: IndexSpec, held: _Held) -> bool:
        """Whether an index saved unwhitened now holds enough rows to be whitened (saved
        before whitening applied to it, or with other settings): rebuilt without waiting
        for the catalog to change."""
        return (
            self._whitens(descriptor)
            and self._current(descriptor) is None
            and len(held.index) >= self.whiten.min_images
        )

    def _fits(self, held: _Held) -> bool:
        return self._right_kind(held.index.kind, len(held.index))

    def _right_kind(self, kind: str, n: int) -> bool:
        """False when ``n`` vectors call for the other of exact and approximate search.

        IVF is kept down to half the threshold, so a collection hovering around it is not
        rebuilt back and forth.
        """
        compact = self.compact_threshold
        if kind == "flat":
            return n < self.ann_threshold
        if kind == "ivf":
            return n >= self.ann_threshold // 2 and (compact is None or n < compact)
        if kind == "compact":  # likewise kept down to half its threshold
            return compact is not None and n >= compact // 2
        return True

    def _build(
        self, descriptor: IndexSpec, generation: int, ids: np.ndarray, fitted: Fitted | None
    ) -> _Held:
        """A new index of the source's vectors (``ids``: those read just before), whitened
        by ``fitted`` if given, read BUILD_BATCH rows at a time: memory is the index and one
        batch (and, for IVF, its bounded training sample)."""
        name, version = descriptor.name, descriptor.version
        index = self._empty(descriptor, ids, fitted)
        for batch, raw in self.source.vector_batches(name, version, BUILD_BATCH):
            index.add(batch, rows_as(descriptor, raw))
        if isinstance(index, WhitenedIndex):
            index.augment()
        return _Held(index, self._versioned(version, fitted), generation)

    def _empty(self, descriptor: IndexSpec, ids: np.ndarray, fitted: Fitted | None) -> VectorIndex:
        """An empty index of the kind ``ids`` (the vectors to come) call for; an IVF one is
        trained on the same sample as ``FloatIndex.build`` over all of them would take."""
        if descriptor.kind == "binary":
            return BinaryIndex(descriptor.dim)
        whitening = fitted.whitening if fitted else None

        def sample(positions: np.ndarray) -> np.ndarray:
            rows = self._rows_of(descriptor, ids[positions])
            return whitening.apply(rows) if whitening and len(rows) else rows

        width = whitening.dim if whitening else descriptor.dim
        n = len(ids)
        index: VectorIndex = FloatIndex(width, nprobe=self.nprobe, metric=self.metric)
        if self.compact_threshold is not None and n >= self.compact_threshold:
            rows = sample(CompactIndex.training_sample(n))
            if len(rows):  # else every vector went since ``ids`` was read
                prefix = self.directory / descriptor.name
                index = CompactIndex.train(prefix, rows, n)
        elif n and n >= self.ann_threshold:
            rows = sample(FloatIndex.training_sample(n))
            if len(rows):
                assert isinstance(index, FloatIndex)
                index.train_ivf(rows, n)
        return self._whitened(index, whitening) if whitening else index

    def _whitened(
        self, index: VectorIndex, whitening: Whitening, *, augmented: bool = False
    ) -> WhitenedIndex:
        dba = (self.whiten.dba_k, self.whiten.dba_alpha)
        return WhitenedIndex(index, whitening, dba=dba, augmented=augmented)

    def _versioned(self, version: str, fitted: Fitted | None) -> str:
        """The version of an index over ``version`` vectors, whitened by ``fitted`` (with
        the policy's augmentation) or not."""
        if fitted is None:
            return version
        return f"{version}+{fitted.whitening.tag}{self.whiten.augmentation}"

    def _rows_of(self, descriptor: IndexSpec, ids: np.ndarray) -> np.ndarray:
        """The rows of ``ids`` (those still in the source), read BUILD_BATCH at a time."""
        parts = [np.zeros((0, descriptor.dim), dtype=np.float32)]
        for start in range(0, len(ids), BUILD_BATCH):
            chunk = ids[start : start + BUILD_BATCH].tolist()
            _, raw = self.source.vectors_for(descriptor.name, descriptor.version, chunk)
            parts.append(rows_as(descriptor, raw))
        return np.concatenate(parts)

    def _sync(self, descriptor: IndexSpec, held: _Held | None, generation: int) -> _Held:
        wanted = self.source.vector_ids(descriptor.name, descriptor.version)
        fitted = self._whitening_for(descriptor, wanted)
        if held is None or held.version != self._versioned(descriptor.version, fitted):
            return self._build(descriptor, generation, wanted, fitted)
        have = held.index.ids()
        n = len(wanted)
        # Cross the exact/approximate/compact boundaries, or outgrow the lists: rebuild.
        if not self._right_kind(held.index.kind, n) or (
            held.index.kind in ("ivf", "compact") and n > 4 * len(have)
        ):
            return self._build(descriptor, generation, wanted, fitted)
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

    def _load(self, descriptor: IndexSpec, version: str) -> _Held | None:
        """The saved index of ``version``, or None when the caller must rebuild it: no
        file, a file of another version or format, or a damaged one (logged as a warning)."""
        path = self._file(descriptor.name)
        try:
            with path.open("rb") as f:
                return self._read(f, descriptor, version)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("%s cannot be read (%s): rebuilding it from the catalog", shown(path), exc)
        except (_Damaged, RuntimeError) as exc:
            # RuntimeError: faiss could not parse what the checksum let through.
            log.warning("%s is damaged (%s): rebuilding it from the catalog", shown(path), exc)
        return None

    def _read(self, f: io.BufferedReader, descriptor: IndexSpec, version: str) -> _Held | None:
        magic = f.read(len(MAGIC))
        if magic != MAGIC:
            if not magic.startswith(FORMAT_PREFIX):
                raise _Damaged("not a lookalike index file")
            return None  # another format (LKIDX1 had no checksum)
        head, stored = _header(f.readline(MAX_HEADER))
        if head["version"] != version:
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
        elif head["kind"] == "compact":
            index = CompactIndex.read(f.read, ids, self.directory / descriptor.name)
        else:
            index = FloatIndex.read(f.read, ids, kind=head["kind"], nprobe=self.nprobe)
        if len(index) != len(ids):
            raise _Damaged(f"{len(index)} vectors under {len(ids)} ids")
        fitted = self._current(descriptor)
        if fitted is not None:  # the version named its tag: this whitening's
            index = self._whitened(index, fitted.whitening, augmented=True)
        return _Held(index, version, head["generation"])

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
        CompactIndex.prune(self.directory / name, keep=held.index)


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
