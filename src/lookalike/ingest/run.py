"""An indexing run as an object with named steps.

walk -> plan (skip unchanged files) -> read (decoder threads: read, hash, decode, detect
faces) -> describe (batched embedding of the descriptors an image lacks) -> scan faces
(embed the faces found) -> commit (one catalog transaction per ``commit_every`` images)
-> drop gone paths -> sync (vector indexes caught up, new faces grouped).

``Lookalike.index`` runs them all (:meth:`IndexRun.run`). A queued job splits them
(``lookalike.queue``): :meth:`IndexRun.survey` walks and drops gone paths where the job is
made; each worker runs ``walk`` (of its chunk's files), ``plan``, :meth:`IndexRun.ingest` and
:meth:`IndexRun.group_faces` on one chunk. Vector indexes are caught up by the nodes that
search, from the catalog's generation, as always.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Never, TypeVar

import numpy as np
from PIL import Image
from tqdm import tqdm

from lookalike import thumbnails
from lookalike.blas import single_threaded_blas
from lookalike.decode import Decoded, decode, decode_gate, read_file, sha256_hex
from lookalike.describe.base import Descriptor, Rider
from lookalike.errors import ImageError, LookalikeError
from lookalike.faces import Face
from lookalike.files import is_under_any
from lookalike.index.manager import IndexManager
from lookalike.ingest.report import Failure, IndexInterrupted, IndexReport
from lookalike.ingest.walk import FileStat, Walked, gone_files, walk
from lookalike.people.service import FaceService
from lookalike.settings import Settings
from lookalike.store.base import Catalog, NewImage

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class Parts:
    """What an indexing run works with (the engine's stores, models and settings)."""

    settings: Settings
    catalog: Catalog
    indexes: IndexManager
    people: FaceService
    # The descriptors to compute, and the shorter side every descriptor's input is decoded
    # at (the same for indexing and for queries, so identical files get identical vectors).
    descriptors: Sequence[Descriptor]
    describe_side: int
    # Outputs pooled from a descriptor's network pass (the cnn's regions): computed with it.
    riders: Sequence[Rider] = ()


@dataclass
class Prepared:
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


class IndexRun:
    """One indexing run over ``Parts``; its ``report`` says what it did so far."""

    def __init__(
        self,
        parts: Parts,
        *,
        faces: bool,
        within: Sequence[str | Path] | None = None,
        progress: bool | None = None,
        on_progress: ProgressFn | None = None,
    ) -> None:
        self.parts = parts
        self.with_faces = faces
        self.within = within
        self.report = IndexReport(faces=0 if faces else None)
        self.wanted = {d.name: d.version for d in parts.descriptors}
        self.wanted |= {r.name: r.version for r in self._riders()}
        self._progress = _Progress(progress, on_progress)
        # Recorded paths this run saw (or must keep): anything else under a walked folder
        # is gone.
        self._seen: set[str] = set()
        # Recorded paths whose file changed since: their old content may leave the catalog.
        self.rewritten = 0
        self._pending: list[NewImage] = []
        self._to_embed: list[tuple[NewImage, Prepared]] = []
        self._run_shas: set[str] = set()
        # Threads for the descriptors after the first while ``ingest`` runs (see describe).
        self._describers: ThreadPoolExecutor | None = None
        # Large images take turns for the decode slots (indexing waits rather than fails).
        self._gate = decode_gate(parts.settings).queueing()

    # -- the whole run ------------------------------------------------------------------

    def run(self, paths: Iterable[str | Path]) -> IndexReport:
        """Index ``paths``: every step in order. Returns the report; on Ctrl-C raises
        :class:`IndexInterrupted` with what was committed."""
        paths = list(paths)
        walked = self.walk(paths)
        self.ingest(self.plan(walked.files), total=len(walked.files))
        self.drop_gone(paths, walked)
        self.sync()
        if self.rewritten and not self.report.removed:  # (drop_gone prunes after removals)
            self.prune_thumbnails()
        return self.report

    def walk(self, paths: Iterable[str | Path]) -> Walked:
        """The files under ``paths``; failures go into the report."""
        walked = walk(paths, data_dir=self.parts.settings.data_dir, within=self.within)
        self.report.failed += walked.failed
        # A folder that could not be listed keeps its recorded paths (nothing is "gone").
        unreadable = {f.path for f in walked.failed}
        catalog = self.parts.catalog
        self._seen |= {
            p
            for root in walked.folders
            for p in catalog.paths_under(root)
            if is_under_any(p, unreadable)
        }
        return walked

    def plan(self, files: Sequence[FileStat]) -> list[FileStat]:
        """The files to read: those whose path, size or mtime changed, or whose image lacks
        a descriptor or a face scan. The others count as unchanged."""
        todo: list[FileStat] = []
        for path, st in files:
            row = self.parts.catalog.path_row(path)
            same = row is not None and (row.size, row.mtime_ns) == (st.st_size, st.st_mtime_ns)
            if same and row is not None and self._needs(row.image_id) == ([], False):
                self.report.unchanged += 1
                self._seen.add(path)
            else:
                todo.append((path, st))
                self.rewritten += row is not None and not same
        return todo

    # -- one chunk: read, describe, scan faces, commit ------------------------------------

    def ingest(self, files: Sequence[FileStat], *, total: int | None = None) -> None:
        """Read, describe, scan and commit ``files`` (``total``: files in the whole run, for
        progress; default this chunk plus what the report counts as unchanged)."""
        settings = self.parts.settings
        self._progress.start(len(files), self.report.unchanged, total)
        helpers = max(1, len(self.parts.descriptors) - 1)
        try:
            with (
                single_threaded_blas(),  # out of ONNX Runtime's way (lookalike.blas)
                ThreadPoolExecutor(settings.decode_threads) as pool,
                ThreadPoolExecutor(helpers, thread_name_prefix="describe") as describers,
            ):
                self._describers = describers
                ahead = max(2 * settings.batch_size, 4)
                futures = _ordered_map(pool, self.read, files, ahead)
                for future, (path, _) in zip(futures, files, strict=True):
                    self._take(path, future)
                    self._progress.advance()
                self.commit()
        except KeyboardInterrupt:
            self._progress.close()
            self._uncount_pending()
            raise IndexInterrupted(self.report) from None
        finally:
            self._describers = None
        self._progress.close()

    def read(self, job: FileStat) -> Prepared:
        """Read, hash and decode one file and detect its faces (runs in decoder threads:
        Pillow and dlib's HOG release the GIL)."""
        path, st = job
        data = read_file(Path(path))
        sha = sha256_hex(data)
        known = self.parts.catalog.image_by_sha(sha)
        if known is None:
            missing, scan = list(self.wanted), self.with_faces
        else:
            missing, scan = self._needs(known.id)
        if not missing and not scan:
            return Prepared(path, len(data), st.st_mtime_ns, sha, None)
        settings = self.parts.settings
        side = self.parts.describe_side if missing else settings.face_decode_side
        decoded = self._decode(data, path, side)
        found = self.parts.people.detect(self._for_faces(data, path, decoded)) if scan else []
        return Prepared(path, len(data), st.st_mtime_ns, sha, decoded, missing, scan, found)

    def describe(self) -> None:
        """Embed the descriptors the images waiting for it lack, in batches.

        During :meth:`ingest` the descriptors run side by side, the first in this thread and
        the others in helper threads: the network's calls release the GIL, so the light
        descriptors use the cores it leaves idle between its calls.
        """
        wanted = [desc for desc in self.parts.descriptors if self._jobs(desc)]
        helpers = self._describers
        if helpers is None or len(wanted) < 2:
            for desc in wanted:
                self._embed(desc)
            return
        futures = [helpers.submit(self._embed, desc) for desc in wanted[1:]]
        try:
            self._embed(wanted[0])
        finally:
            for future in futures:
                future.result()

    def _embed(self, desc: Descriptor) -> None:
        """Embed ``desc`` for the waiting images that lack it, ``batch_size`` at a time."""
        batch = self.parts.settings.batch_size
        riders = self._riders(desc.name)
        jobs = self._jobs(desc)
        for start in range(0, len(jobs), batch):
            chunk = jobs[start : start + batch]
            images = [p.decoded.image for _, p in chunk if p.decoded]
            outputs = _embed_outputs(desc, riders, images)
            for j, (item, p) in enumerate(chunk):
                for name, (version, rows) in outputs.items():
                    if name in p.missing:
                        item.vectors[name] = (version, rows[j])

    def _jobs(self, desc: Descriptor) -> list[tuple[NewImage, Prepared]]:
        """The waiting images that lack ``desc`` or one of the outputs riding on its pass."""
        names = {desc.name, *(r.name for r in self._riders(desc.name))}
        return [(item, p) for item, p in self._to_embed if names & set(p.missing)]

    def scan_faces(self) -> None:
        """Embed the faces detected in the images waiting for it."""
        scanned = [(item, p) for item, p in self._to_embed if p.faces]
        scans = self.parts.people.scans([p.found for _, p in scanned])
        for (item, _), scan in zip(scanned, scans, strict=True):
            item.faces = scan
            self.report.faces = (self.report.faces or 0) + len(scan.faces)

    def commit(self) -> None:
        """Describe and scan what waits, then record the pending images in one transaction."""
        self.describe()
        self.scan_faces()
        self._to_embed.clear()
        if not self._pending:
            return
        self.parts.catalog.record(self._pending)
        for item in self._pending:
            self._seen.add(item.path)
            if item.created:
                self.report.added.add(item.sha256)
        self._pending.clear()

    # -- after the files ----------------------------------------------------------------

    def drop_gone(self, paths: Sequence[str | Path], walked: Walked) -> None:
        """Forget recorded paths under the walked folders that were not seen, and files
        given by name that no longer exist."""
        catalog = self.parts.catalog
        gone = [p for root in walked.folders for p in catalog.paths_under(root)]
        gone = [p for p in gone if p not in self._seen]
        gone += [p for p in gone_files(paths) if catalog.path_row(p) is not None]
        if gone:
            catalog.remove_paths(gone)
            self.report.removed = len(gone)
            self.prune_thumbnails()

    def prune_thumbnails(self) -> None:
        """Delete the kept thumbnails of images no longer in the catalog."""
        thumbnails.prune(self.parts.settings, self.parts.catalog.known_sha256)

    def sync(self) -> None:
        """Bring the vector indexes up to the catalog and group the new faces."""
        for desc in self.parts.descriptors:
            self.parts.indexes.get(desc)
        self.group_faces()

    def group_faces(self) -> None:
        """Recognise and group the new faces (when faces are indexed and grouping at index
        time is on); what it did goes into the report."""
        if self.with_faces and self.parts.settings.face_cluster_on_index:
            self.report.people = self.parts.people.cluster()

    def survey(self, paths: Sequence[str | Path]) -> Walked:
        """Walk ``paths`` and forget recorded paths under them that are gone (a queued run,
        whose files are read elsewhere, chunk by chunk); returns what the walk found."""
        walked = self.walk(paths)
        self._seen |= {path for path, _ in walked.files}
        self.drop_gone(paths, walked)
        return walked

    # -- internals ------------------------------------------------------------------------

    def _riders(self, host: str | None = None) -> list[Rider]:
        """The riders whose host this run computes (of ``host`` only, when given)."""
        hosts = {d.name for d in self.parts.descriptors}
        return [r for r in self.parts.riders if r.host in hosts and host in (None, r.host)]

    def _needs(self, image_id: int) -> tuple[list[str], bool]:
        """Descriptor names the stored image lacks, and whether its faces are to be found."""
        missing = self.parts.catalog.missing_vectors(image_id, self.wanted)
        version = self.parts.people.version
        return missing, self.with_faces and not self.parts.catalog.faces.face_scanned(
            image_id, version
        )

    def _for_faces(self, data: bytes, path: str, decoded: Decoded) -> Decoded:
        """The image as face detection wants it: decoded again at ``face_decode_side`` when
        the descriptors' decode was reduced below it."""
        side = self.parts.settings.face_decode_side
        image = decoded.image
        reduced = image.width * image.height < decoded.width * decoded.height
        if not reduced or min(image.size) >= side:
            return decoded
        return self._decode(data, path, side)

    def _decode(self, data: bytes, path: str, side: int) -> Decoded:
        """``data`` decoded with its shorter side reduced to no less than ``side``."""
        max_pixels = self.parts.settings.max_image_pixels
        return decode(data, path, min_side=side, max_pixels=max_pixels, gate=self._gate)

    def _take(self, path: str, future: Future[Prepared]) -> None:
        """File the result of ``read``: a failure, a duplicate, or an image to embed."""
        try:
            prep = future.result()
        except LookalikeError as exc:
            self.report.failed.append(Failure(path, _reason(exc)))
            return
        except OSError as exc:
            self.report.failed.append(Failure(path, exc.strerror or str(exc)))
            return
        item = NewImage(prep.sha256, prep.path, prep.size, prep.mtime_ns)
        if prep.decoded is None or prep.sha256 in self._run_shas:
            self.report.duplicates += 1
        else:
            item.width, item.height = prep.decoded.width, prep.decoded.height
            item.format = prep.decoded.format
            self._to_embed.append((item, prep))
            self._run_shas.add(prep.sha256)
            self.report.indexed += 1
        self._pending.append(item)
        settings = self.parts.settings
        if len(self._to_embed) >= settings.batch_size:
            self.describe()
            self.scan_faces()
            self._to_embed.clear()
        if len(self._pending) >= settings.commit_every:
            self.commit()

    def _uncount_pending(self) -> None:
        """Take what was not committed out of the report (the run was interrupted)."""
        report = self.report
        pending = self._pending
        report.indexed -= sum(1 for item in pending if item.vectors or item.width)
        if report.faces is not None:
            report.faces -= sum(len(item.faces.faces) for item in pending if item.faces)
        report.interrupted = True


class _Progress:
    """The progress bar (on a terminal by default) and the ``on_progress`` callback."""

    def __init__(self, shown: bool | None, callback: ProgressFn | None) -> None:
        self._shown = shown
        self._callback = callback
        self._bar: tqdm[Never] | None = None
        self._done = 0
        self._total = 0

    def start(self, todo: int, done: int, total: int | None) -> None:
        self._done = done
        self._total = todo + done if total is None else total
        self._bar = tqdm(
            total=todo,
            unit="img",
            desc="indexing",
            disable=None if self._shown is None else not self._shown,  # None: a terminal
            file=sys.stderr,
        )
        if self._callback is not None:
            self._callback(self._done, self._total)

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.update()
        self._done += 1
        if self._callback is not None:
            self._callback(self._done, self._total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


T = TypeVar("T")
R = TypeVar("R")


def _ordered_map(
    pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Sequence[T], ahead: int
) -> Iterator[Future[R]]:
    """Futures of ``fn(item)`` in input order, at most ``ahead`` in flight."""
    pending: deque[Future[R]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= ahead:
                yield pending.popleft()
        while pending:
            yield pending.popleft()
    finally:
        for f in pending:
            f.cancel()


def _embed_outputs(
    desc: Descriptor, riders: Sequence[Rider], images: Sequence[Image.Image]
) -> dict[str, tuple[str, np.ndarray]]:
    """name -> (version, rows) of ``desc`` and its riders for ``images``: the first rider
    shares the host's pass (there is one rider today, the cnn's regions)."""
    if not riders:
        return {desc.name: (desc.version, desc.embed(images))}
    host_rows, own = riders[0].embed_with_host(images)
    out = {desc.name: (desc.version, host_rows), riders[0].name: (riders[0].version, own)}
    for rider in riders[1:]:
        out[rider.name] = (rider.version, rider.embed_with_host(images)[1])
    return out


def _reason(exc: LookalikeError) -> str:
    return exc.reason if isinstance(exc, ImageError) else exc.message
