"""The engine: index folders, search by image, find duplicates, remove.

Pipeline: walk -> read + hash + decode (thread pool) -> embed (batched, all descriptors)
-> record in the catalog (one transaction per ``commit_every`` images) -> sync the
vector indexes from the catalog.
"""

from __future__ import annotations

import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import numpy as np
from PIL import Image
from tqdm import tqdm

from lookalike.backends import INDEX_DIR, open_catalog, open_indexes
from lookalike.decode import Decoded, decode, decode_gate, read_file, sha256_hex, to_rgb
from lookalike.describe.base import Descriptor, create_descriptor, descriptor_names
from lookalike.errors import BadInput, ImageError, LookalikeError, NotFound
from lookalike.faces import Face
from lookalike.files import is_under_any
from lookalike.people.service import ClusterReport, FaceService
from lookalike.search.duplicates import DuplicateReport, find_duplicates
from lookalike.settings import Settings
from lookalike.store.base import ImageRow, NewImage

Query = str | Path | bytes | Image.Image


@dataclass
class Failure:
    path: str
    error: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "error": self.error}


@dataclass
class IndexReport:
    """What one ``index`` run did."""

    indexed: int = 0
    unchanged: int = 0
    duplicates: int = 0
    removed: int = 0
    failed: list[Failure] = field(default_factory=list)
    interrupted: bool = False
    # Faces found in the images scanned by this run (None: faces were not looked for).
    faces: int | None = None
    # What grouping the new faces did (None: not run).
    people: ClusterReport | None = None
    # SHA-256 of the images this run added to the catalog (content new to it).
    added: set[str] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "indexed": self.indexed,
            "unchanged": self.unchanged,
            "duplicates": self.duplicates,
            "removed": self.removed,
            "failed": [f.to_json() for f in self.failed],
        }
        if self.faces is not None:
            out["faces"] = self.faces
        if self.people is not None:
            out["people"] = self.people.to_json()
        return out


class IndexInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``index``: everything committed so far is kept; ``report`` says what."""

    def __init__(self, report: IndexReport) -> None:
        super().__init__("interrupted")
        self.report = report


@dataclass
class Hit:
    rank: int
    path: str
    sha256: str
    score: float
    image_id: int

    def to_json(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "path": self.path,
            "sha256": self.sha256,
            "score": round(self.score, 6),
        }


@dataclass
class SearchResult:
    query: str
    results: list[Hit]
    timing_ms: dict[str, float]
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"query": self.query}
        if self.error is not None:
            out["error"] = self.error
        out["results"] = [h.to_json() for h in self.results]
        out["timing_ms"] = {k: round(v, 3) for k, v in self.timing_ms.items()}
        return out


@dataclass
class _Prepared:
    """A file read, hashed and (unless its content is stored already) decoded."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    decoded: Decoded | None
    # What the image still needs: descriptor names, and whether its faces are to be found.
    missing: list[str] = field(default_factory=list)
    faces: bool = False
    # Its faces, detected in the decoder thread (embedded later, in batches).
    found: list[Face] = field(default_factory=list)


T = TypeVar("T")
R = TypeVar("R")


def _ordered_map(
    pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Sequence[T], ahead: int
) -> Iterator[Future[R]]:
    """Futures of ``fn(item)`` in input order, at most ``ahead`` in flight."""
    pending: list[Future[R]] = []
    it = iter(items)
    try:
        for item in it:
            pending.append(pool.submit(fn, item))
            if len(pending) >= ahead:
                yield pending.pop(0)
        while pending:
            yield pending.pop(0)
    finally:
        for f in pending:
            f.cancel()


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


class Lookalike:
    """An open data folder. Use as a context manager, or call ``close``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.catalog = open_catalog(settings)
        self.indexes = open_indexes(settings, self.catalog)
        # Faces and people (lookalike.people): enrol, identify, cluster, face search.
        self.people = FaceService(settings, self.catalog.faces, settings.data_dir / INDEX_DIR)
        self._descriptors: dict[str, Descriptor] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Lookalike:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.catalog.close()

    def descriptor(self, name: str | None = None) -> Descriptor:
        """The descriptor called ``name`` (default from settings), created once."""
        name = name or self.settings.default_descriptor
        with self._lock:
            if name not in self._descriptors:
                self._descriptors[name] = create_descriptor(name, self.settings)
            return self._descriptors[name]

    # -- indexing -----------------------------------------------------------------------

    def index(
        self,
        paths: Iterable[str | Path],
        *,
        descriptors: Sequence[str] | None = None,
        faces: bool | None = None,
        progress: bool | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        within: Sequence[str | Path] | None = None,
    ) -> IndexReport:
        """Add every readable image under ``paths``; skip unchanged files, drop gone ones.

        ``faces`` (default: the ``faces`` setting): also find, store and group the faces.
        ``on_progress(done, total)`` is called as files are processed (unchanged ones
        count as done at once); an exception it raises stops the run like any error.
        ``within``: only files whose real path (symbolic links resolved) lies under one of
        these folders are read; others are reported as failed (the server's jobs confine
        indexing to the allowed roots this way). The data folder itself is never walked.
        Returns the run's report. Files that cannot be read are listed in
        ``report.failed`` and skipped. On Ctrl-C raises ``IndexInterrupted``; what was
        committed stays, and the next run resumes.
        """
        paths = list(paths)
        descs = [self.descriptor(n) for n in (descriptors or descriptor_names())]
        wanted = {d.name: d.version for d in descs}
        with_faces = self.settings.faces if faces is None else faces
        min_side = max(d.input_side for d in descs)
        report = IndexReport(faces=0 if with_faces else None)
        files, folders, seen = self._walk(paths, report, within)
        store = self.catalog.faces
        face_version = self.people.version

        def needs(image_id: int) -> tuple[list[str], bool]:
            missing = self.catalog.missing_vectors(image_id, wanted)
            return missing, with_faces and not store.face_scanned(image_id, face_version)

        todo: list[tuple[str, os.stat_result]] = []
        for path, st in files:
            row = self.catalog.path_row(path)
            if (
                row is not None
                and row.size == st.st_size
                and row.mtime_ns == st.st_mtime_ns
                and needs(row.image_id) == ([], False)
            ):
                report.unchanged += 1
                seen.add(path)
            else:
                todo.append((path, st))

        # Large images take turns for the decode slots (indexing waits rather than fails).
        queue = decode_gate(self.settings).queueing()

        def prepare(job: tuple[str, os.stat_result]) -> _Prepared:
            path, st = job
            data = read_file(Path(path))
            sha = sha256_hex(data)
            known = self.catalog.image_by_sha(sha)
            missing, scan = needs(known.id) if known is not None else (list(wanted), with_faces)
            if not missing and not scan:
                return _Prepared(path, len(data), st.st_mtime_ns, sha, None)
            side = max(min_side, self.settings.face_decode_side) if scan else min_side
            decoded = decode(
                data, path, min_side=side, max_pixels=self.settings.max_image_pixels, gate=queue
            )
            # Face detection here, in the decoder threads: dlib's HOG releases the GIL, so it
            # runs beside the descriptors' and the face encoder's work on the main thread.
            found = self.people.detect(decoded) if scan else []
            return _Prepared(path, len(data), st.st_mtime_ns, sha, decoded, missing, scan, found)

        done = report.unchanged

        def advance() -> None:
            nonlocal done
            bar.update()
            done += 1
            if on_progress is not None:
                on_progress(done, len(files))

        bar = tqdm(
            total=len(todo),
            unit="img",
            desc="indexing",
            disable=None if progress is None else not progress,  # None: only on a terminal
            file=sys.stderr,
        )
        pending: list[NewImage] = []
        to_embed: list[tuple[NewImage, _Prepared]] = []
        run_shas: set[str] = set()
        if on_progress is not None:
            on_progress(done, len(files))

        def embed_pending() -> None:
            for desc in descs:
                jobs = [(item, p) for item, p in to_embed if desc.name in p.missing]
                for start in range(0, len(jobs), self.settings.batch_size):
                    chunk = jobs[start : start + self.settings.batch_size]
                    rows = desc.embed([p.decoded.image for _, p in chunk if p.decoded])
                    for (item, _), row in zip(chunk, rows, strict=True):
                        item.vectors[desc.name] = (desc.version, row)
            scanned = [(item, p) for item, p in to_embed if p.faces]
            for (item, _), faces in zip(
                scanned, self.people.scans([p.found for _, p in scanned]), strict=True
            ):
                item.faces = faces
                report.faces = (report.faces or 0) + len(faces.faces)
            to_embed.clear()

        def commit() -> None:
            embed_pending()
            if pending:
                self.catalog.record(pending)
                for item in pending:
                    seen.add(item.path)
                    if item.created:
                        report.added.add(item.sha256)
                pending.clear()

        try:
            with ThreadPoolExecutor(self.settings.decode_threads) as pool:
                ahead = max(2 * self.settings.batch_size, 4)
                for future, (path, _) in zip(
                    _ordered_map(pool, prepare, todo, ahead), todo, strict=True
                ):
                    try:
                        prep = future.result()
                    except LookalikeError as exc:
                        report.failed.append(Failure(path, _reason(exc)))
                        advance()
                        continue
                    except OSError as exc:
                        report.failed.append(Failure(path, exc.strerror or str(exc)))
                        advance()
                        continue
                    item = NewImage(prep.sha256, prep.path, prep.size, prep.mtime_ns)
                    if prep.decoded is None or prep.sha256 in run_shas:
                        report.duplicates += 1
                    else:
                        item.width, item.height = prep.decoded.width, prep.decoded.height
                        item.format = prep.decoded.format
                        to_embed.append((item, prep))
                        run_shas.add(prep.sha256)
                        report.indexed += 1
                    pending.append(item)
                    if len(to_embed) >= self.settings.batch_size:
                        embed_pending()
                    if len(pending) >= self.settings.commit_every:
                        commit()
                    advance()
                commit()
        except KeyboardInterrupt:
            bar.close()
            report.indexed -= sum(1 for item in pending if item.vectors or item.width)
            report.faces = (
                None
                if report.faces is None
                else report.faces
                - sum(len(item.faces.faces) for item in pending if item.faces is not None)
            )
            report.interrupted = True
            raise IndexInterrupted(report) from None
        bar.close()

        gone = [p for root in folders for p in self.catalog.paths_under(root) if p not in seen]
        gone += [p for p in report_gone_files(paths) if self.catalog.path_row(p) is not None]
        if gone:
            self.catalog.remove_paths(gone)
            report.removed = len(gone)
        for desc in descs:
            self.indexes.get(desc)
        if with_faces and self.settings.face_cluster_on_index:
            report.people = self.people.cluster()
        return report

    def _walk(
        self,
        paths: Iterable[str | Path],
        report: IndexReport,
        within: Sequence[str | Path] | None = None,
    ) -> tuple[list[tuple[str, os.stat_result]], list[str], set[str]]:
        """Regular files under ``paths`` (sorted, hidden entries skipped), walked folders."""
        files: list[tuple[str, os.stat_result]] = []
        folders: list[str] = []
        data_dir = os.path.realpath(self.settings.data_dir)
        roots = None if within is None else {os.path.realpath(r) for r in within}

        def admitted(path: str) -> bool:
            if roots is None:
                return True
            if is_under_any(os.path.realpath(path), roots):
                return True
            report.failed.append(Failure(path, "outside the allowed folders (symbolic link)"))
            return False

        for given in paths:
            root = os.path.abspath(os.fspath(given))
            try:
                st = os.stat(root)
            except OSError as exc:
                report.failed.append(Failure(str(given), exc.strerror or str(exc)))
                continue
            if stat.S_ISREG(st.st_mode):
                if admitted(root):
                    files.append((root, st))
                continue
            if not stat.S_ISDIR(st.st_mode):
                report.failed.append(Failure(root, "not a regular file or folder"))
                continue
            folders.append(root)

            def on_error(exc: OSError, root: str = root) -> None:
                report.failed.append(
                    Failure(exc.filename or root, f"cannot read folder: {exc.strerror}")
                )

            for here, dirs, names in os.walk(root, onerror=on_error):
                dirs[:] = sorted(
                    d
                    for d in dirs
                    if not _is_hidden(d) and os.path.realpath(os.path.join(here, d)) != data_dir
                )
                for name in sorted(names):
                    if _is_hidden(name):
                        continue
                    full = os.path.join(here, name)
                    try:
                        fst = os.stat(full)
                    except OSError as exc:
                        report.failed.append(Failure(full, exc.strerror or str(exc)))
                        continue
                    if stat.S_ISREG(fst.st_mode) and admitted(full):
                        files.append((full, fst))
        # A folder that could not be listed keeps its recorded paths (nothing is "gone").
        unreadable = {f.path for f in report.failed}
        seen = {
            p
            for root in folders
            for p in self.catalog.paths_under(root)
            if is_under_any(p, unreadable)
        }
        return files, folders, seen

    def reindex(self) -> dict[str, int]:
        """Rebuild every vector index (and the face index) from the catalog; returns the
        vectors in each."""
        out = {n: len(self.indexes.rebuild(self.descriptor(n))) for n in descriptor_names()}
        out["face"] = len(self.people.index.rebuild(self.people.spec))
        return out

    def remove(self, paths: Iterable[str | Path]) -> int:
        """Forget files, or every file under folders; returns how many paths were removed."""
        targets: list[str] = []
        for given in paths:
            root = os.path.abspath(os.fspath(given))
            found = self.catalog.paths_under(root)
            if not found:
                raise NotFound(f"{given}: not in the catalog")
            targets += found
        self.catalog.remove_paths(targets)
        for name in descriptor_names():
            self.indexes.get(self.descriptor(name))
        return len(targets)

    # -- search -------------------------------------------------------------------------

    def search(
        self, queries: Sequence[Query], *, k: int = 10, descriptor: str | None = None
    ) -> list[SearchResult]:
        """The ``k`` most similar indexed images for each query, best first.

        A query that cannot be decoded gets a result with ``error`` set and no hits.
        """
        if k <= 0:
            raise BadInput(f"k must be a positive number, got {k}")
        desc = self.descriptor(descriptor)
        out: list[SearchResult] = []
        for q in queries:
            label = _label(q)
            try:
                out.append(self.search_one(q, k=k, descriptor=desc.name))
            except ImageError as exc:
                out.append(SearchResult(label, [], {}, error=exc.message))
        return out

    def search_one(
        self, query: Query, *, k: int = 10, descriptor: str | None = None
    ) -> SearchResult:
        """The ``k`` most similar images to one query; raises ImageError if it can't be read."""
        if k <= 0:
            raise BadInput(f"k must be a positive number, got {k}")
        desc = self.descriptor(descriptor)
        t0 = time.perf_counter()
        image = self._query_image(query, desc.input_side)
        t1 = time.perf_counter()
        rows = desc.embed_query(image)
        t2 = time.perf_counter()
        hits = self.search_vectors(rows, k=k, descriptor=desc.name)
        t3 = time.perf_counter()
        timing = {"decode": (t1 - t0) * 1e3, "embed": (t2 - t1) * 1e3, "search": (t3 - t2) * 1e3}
        return SearchResult(_label(query), hits, timing)

    def search_vectors(
        self, rows: np.ndarray, *, k: int = 10, descriptor: str | None = None
    ) -> list[Hit]:
        """Hits for one query given as its descriptor rows (variants; best score per image).

        ``rows``: float32 (m, dim) or packed uint8 codes, as ``embed_query`` returns.
        """
        if k <= 0:
            raise BadInput(f"k must be a positive number, got {k}")
        desc = self.descriptor(descriptor)
        index = self.indexes.get(desc)
        if len(index) == 0 and self.catalog.count_images() > 0:
            # Images exist but none has this descriptor version (the model changed).
            raise NotFound(
                f"no image has {desc.name} vectors of version {desc.version} yet: run "
                "`lookalike index` on your folders again to compute them"
            )
        scores, ids = index.search(rows, k)
        best_ids, best_scores = merge_variants(scores, ids, k)
        info = self.catalog.images(best_ids.tolist())
        # An id can vanish between search and lookup when another process removes it.
        found = [(i, s) for i, s in zip(best_ids.tolist(), best_scores, strict=True) if i in info]
        return [
            Hit(rank, _main_path(info[i]), info[i].sha256, float(s), i)
            for rank, (i, s) in enumerate(found, start=1)
        ]

    def _query_image(self, query: Query, min_side: int) -> Image.Image:
        if isinstance(query, Image.Image):
            return to_rgb(query, min_side=min_side)
        if isinstance(query, bytes):
            data, source = query, "<bytes>"
        else:
            data, source = read_file(Path(query)), os.fspath(query)
        return decode(
            data,
            source,
            min_side=min_side,
            max_pixels=self.settings.max_image_pixels,
            gate=decode_gate(self.settings),
        ).image

    # -- duplicates ---------------------------------------------------------------------

    def duplicates(self, threshold: float | None = None) -> DuplicateReport:
        """Groups of exact duplicates (same bytes) and of near-duplicates."""
        thr = self.settings.duplicate_threshold if threshold is None else threshold
        cnn = self.descriptor("cnn")
        phash = self.descriptor("phash")
        return find_duplicates(
            self.catalog,
            cnn_index=self.indexes.get(cnn),
            cnn=cnn,
            phash=phash,
            threshold=thr,
        )

    def image(self, image_id: int) -> ImageRow:
        found = self.catalog.images([image_id]).get(image_id)
        if found is None:
            raise NotFound(f"image {image_id} not found")
        return found


def merge_variants(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best score per id over the rows of a multi-variant query; ``(ids, scores)`` top ``k``."""
    flat_ids = ids.ravel()
    flat_scores = scores.ravel()
    keep = flat_ids >= 0
    flat_ids, flat_scores = flat_ids[keep], flat_scores[keep]
    if scores.shape[0] == 1:
        return flat_ids[:k], flat_scores[:k]
    order = np.argsort(-flat_scores, kind="stable")
    flat_ids, flat_scores = flat_ids[order], flat_scores[order]
    _, first = np.unique(flat_ids, return_index=True)
    first.sort()
    return flat_ids[first][:k], flat_scores[first][:k]


def report_gone_files(paths: Iterable[str | Path]) -> list[str]:
    """Paths given as files that no longer exist (their records should be dropped)."""
    return [os.path.abspath(os.fspath(p)) for p in paths if not os.path.lexists(os.fspath(p))]


def _main_path(row: ImageRow) -> str:
    return row.paths[0] if row.paths else ""


def _label(query: Query) -> str:
    if isinstance(query, str | Path):
        return os.fspath(query)
    return "<bytes>" if isinstance(query, bytes) else "<image>"


def _reason(exc: LookalikeError) -> str:
    return exc.reason if isinstance(exc, ImageError) else exc.message
