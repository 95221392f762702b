"""Keeps each descriptor's persisted vector index in agreement with the catalog.

The catalog bumps a per-descriptor generation on every vector change (SQLite triggers).
The same machinery serves the face embeddings, with the face store as the source.
An index file records the generation it reflects; when the two differ (another process
wrote, or a run was killed between commit and save) the index is brought up to date by
adding and removing the ids that differ, never by trusting the file.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from lookalike.files import atomic_write
from lookalike.index.base import IndexSpec, VectorIndex, VectorSource
from lookalike.index.faiss_index import BinaryIndex, FloatIndex, Metric

MAGIC = b"LKIDX1\n"


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
    ) -> None:
        self.source = source
        self.metric: Metric = metric
        self.directory = directory
        self.ann_threshold = ann_threshold
        self.nprobe = nprobe
        self._held: dict[str, _Held] = {}
        self._lock = threading.RLock()

    def _file(self, name: str) -> Path:
        return self.directory / f"{name}.idx"

    def get(self, descriptor: IndexSpec) -> VectorIndex:
        """The descriptor's index, brought up to date with the catalog."""
        with self._lock:
            held = self._held.get(descriptor.name)
            generation = self.source.generation(descriptor.name)
            if held is None or held.version != descriptor.version:
                held = self._load(descriptor)
            if held is not None and held.generation == generation and self._fits(held):
                self._held[descriptor.name] = held
                return held.index
            if held is None or held.generation != generation or not self._fits(held):
                held = self._sync(descriptor, held, generation)
                self._save(descriptor.name, held)
            self._held[descriptor.name] = held
            return held.index

    def rebuild(self, descriptor: IndexSpec) -> VectorIndex:
        """Build the index afresh from the catalog's vectors and persist it."""
        with self._lock:
            generation = self.source.generation(descriptor.name)
            held = self._build(descriptor, generation)
            self._save(descriptor.name, held)
            self._held[descriptor.name] = held
            return held.index

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
        ids, raw = self.source.vectors(descriptor.name, descriptor.version)
        index: VectorIndex
        if descriptor.kind == "binary":
            index = BinaryIndex(descriptor.dim)
            if len(ids):
                index.add(ids, rows_as(descriptor, raw))
        elif len(ids):
            index = FloatIndex.build(
                ids,
                rows_as(descriptor, raw),
                ann_threshold=self.ann_threshold,
                nprobe=self.nprobe,
                metric=self.metric,
            )
        else:
            index = FloatIndex(descriptor.dim, metric=self.metric)
        return _Held(index, descriptor.version, generation)

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
        for start in range(0, len(missing), 4096):
            ids, raw = self.source.vectors_for(
                descriptor.name, descriptor.version, missing[start : start + 4096].tolist()
            )
            if len(ids):
                held.index.add(ids, rows_as(descriptor, raw))
        held.generation = generation
        return held

    def _load(self, descriptor: IndexSpec) -> _Held | None:
        path = self._file(descriptor.name)
        try:
            data = path.read_bytes()
            if not data.startswith(MAGIC):
                return None
            head_end = data.index(b"\n", len(MAGIC))
            head = json.loads(data[len(MAGIC) : head_end])
            if head.get("version") != descriptor.version:
                return None
            n = int(head["n"])
            ids_start = head_end + 1
            ids = np.frombuffer(data, dtype=np.int64, count=n, offset=ids_start)
            body = data[ids_start + 8 * n :]
            index: VectorIndex
            if head["kind"] == "binary":
                index = BinaryIndex.from_bytes(body, ids)
            else:
                index = FloatIndex.from_bytes(body, ids, kind=head["kind"], nprobe=self.nprobe)
            if len(index) != n:
                return None
            return _Held(index, descriptor.version, int(head["generation"]))
        except (OSError, ValueError, KeyError, RuntimeError):
            # Missing or damaged: the catalog is the truth, the caller rebuilds.
            return None

    def _save(self, name: str, held: _Held) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        ids = np.ascontiguousarray(held.index.ids(), dtype=np.int64)
        head = {
            "version": held.version,
            "generation": held.generation,
            "kind": held.index.kind,
            "n": len(ids),
        }

        def write(f: BinaryIO) -> None:
            f.write(MAGIC)
            f.write(json.dumps(head).encode() + b"\n")
            f.write(ids.tobytes())
            f.write(held.index.to_bytes())

        atomic_write(self._file(name), write, durable=True)
