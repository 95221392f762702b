"""The engine, the front door of a data folder: index folders, search by image, find
duplicates, remove.

Indexing is ``lookalike.ingest`` (walk -> read, hash, decode -> describe -> scan faces ->
commit -> sync); searching decodes the query as indexing decodes files, embeds it and asks
the vector index, which is brought up to the catalog's generation first.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
from PIL import Image

from lookalike import thumbnails
from lookalike.backends import (
    INDEX_DIR,
    catalog_identity,
    open_cache,
    open_catalog,
    open_data_dir,
    open_indexes,
    part_states,
)
from lookalike.cache import ResultCache
from lookalike.cache.results import Part, Ranking
from lookalike.decode import decode, decode_gate, sha256_hex, to_rgb
from lookalike.describe.base import Descriptor, create_descriptor, descriptor_names
from lookalike.describe.cnn import CnnDescriptor
from lookalike.describe.regions import Box, RegionDescriptor
from lookalike.errors import BadArgument, ImageError, NotFound
from lookalike.faces.read import source_bytes
from lookalike.ingest.report import IndexReport
from lookalike.ingest.run import IndexRun, Parts
from lookalike.people.service import FaceService
from lookalike.search import ranking
from lookalike.search.duplicates import DuplicateReport, find_duplicates
from lookalike.search.ranking import SearchOptions
from lookalike.search.regions import RegionSearch, clamp_box, crop_box
from lookalike.search.rerank import Measure
from lookalike.search.status import FolderStatus, folder_size
from lookalike.search.verify import feature_cache
from lookalike.settings import Settings
from lookalike.store.base import ImageRow

Query = str | Path | bytes | Image.Image


@dataclass
class Hit:
    rank: int
    path: str
    sha256: str
    score: float
    image_id: int
    # A box search: the region of this image that matched (l, t, r, b, pixels of its
    # upright original); None when the image matched whole.
    region: Box | None = None
    # With ``region``: the image's upright (width, height), what the region is a box of.
    size: tuple[int, int] | None = None


@dataclass
class SearchResult:
    query: str
    results: list[Hit]
    timing_ms: dict[str, float]
    error: str | None = None
    measure: Measure = "cosine"  # what the scores are (euclidean: a distance, lower is closer)
    expanded: bool = False  # whether query expansion ranked them

    @classmethod
    def ranked(
        cls, query: str, hits: list[Hit], timing: dict[str, float], options: SearchOptions
    ) -> SearchResult:
        """The result of a search ranked with ``options``: it says how."""
        expanded = options.expansion is not None
        return cls(query, hits, timing, measure=options.measure, expanded=expanded)


class Lookalike:
    """An open data folder. Use as a context manager, or call ``close``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        open_data_dir(settings)
        store = open_cache(settings)  # first: a malformed cache URL fails before anything opens
        self.catalog = open_catalog(settings)
        try:
            self.indexes = open_indexes(settings, self.catalog)
            scope = catalog_identity(self.catalog) if settings.cache_url else ""
        except BaseException:
            self.catalog.close()
            raise
        # Query vectors and rankings (lookalike.cache; a no-op one without cache_url).
        self.cache = ResultCache(store, settings, scope=scope)
        # Faces and people (lookalike.people): enrol, identify, cluster, face search.
        self.people = FaceService(
            settings, self.catalog.faces, settings.data_dir / INDEX_DIR, cache=self.cache
        )
        self._descriptors: dict[str, Descriptor] = {}
        self._regions: RegionSearch | None = None
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
        self.cache.store.close()

    def descriptor(self, name: str | None = None) -> Descriptor:
        """The descriptor called ``name`` (default from settings), created once."""
        name = name or self.settings.default_descriptor
        with self._lock:
            if name not in self._descriptors:
                self._descriptors[name] = create_descriptor(name, self.settings)
            return self._descriptors[name]

    def regions(self) -> RegionSearch:
        """The region vectors' descriptor and index (search by a box), created once."""
        cnn = self.descriptor("cnn")
        assert isinstance(cnn, CnnDescriptor)
        with self._lock:
            if self._regions is None:
                index_dir = self.settings.data_dir / INDEX_DIR
                self._regions = RegionSearch(
                    self.settings, self.catalog, index_dir, RegionDescriptor(cnn)
                )
            return self._regions

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
        committed stays, and the next run resumes. The steps are ``lookalike.ingest``'s.
        """
        run = IndexRun(
            self.ingest_parts(descriptors),
            faces=self.settings.faces if faces is None else faces,
            within=within,
            progress=progress,
            on_progress=on_progress,
        )
        report = run.run(paths)
        if any(d.name == "cnn" for d in run.parts.descriptors):  # the regions' host ran
            self._sync_regions()
        return report

    def ingest_parts(self, descriptors: Sequence[str] | None = None) -> Parts:
        """What an indexing run of this data folder works with (all descriptors by default)."""
        return Parts(
            settings=self.settings,
            catalog=self.catalog,
            indexes=self.indexes,
            people=self.people,
            descriptors=[self.descriptor(n) for n in (descriptors or descriptor_names())],
            describe_side=self.describe_side(),
            riders=[self.regions().regions] if self.settings.regions else [],
        )

    def describe_side(self) -> int:
        """The shorter side images are decoded at for the descriptors, indexing and queries
        alike (JPEGs are reduced in draft mode): the largest any descriptor needs, so that a
        query identical to an indexed file gets the indexed vectors exactly."""
        return max(self.descriptor(n).input_side for n in descriptor_names())

    def reindex(self) -> dict[str, int]:
        """Rebuild every vector index (and the face index) from the catalog; returns the
        vectors in each."""
        out = {n: len(self.indexes.rebuild(self.descriptor(n))) for n in descriptor_names()}
        regions = self.regions()
        out[regions.regions.name] = len(regions.index.rebuild(regions.regions))
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
        thumbnails.prune(self.settings, self.catalog.known_sha256)
        for name in descriptor_names():
            self.indexes.get(self.descriptor(name))
        self._sync_regions()
        return len(targets)

    def _sync_regions(self) -> None:
        """Bring the region index up to the catalog (when regions are indexed)."""
        if self.settings.regions:
            regions = self.regions()
            regions.index.get(regions.regions)

    # -- search -------------------------------------------------------------------------

    def search(
        self,
        queries: Sequence[Query],
        *,
        k: int = 10,
        descriptor: str | None = None,
        measure: str | None = None,
        expand: bool | None = None,
        box: Box | None = None,
    ) -> list[SearchResult]:
        """The ``k`` most similar indexed images for each query, best first (``box``: of
        what is inside that box of each query, see :meth:`search_one`).

        A query that cannot be decoded gets a result with ``error`` set and no hits.
        ``measure`` and ``expand``: as :meth:`search_vectors`.
        """
        if k <= 0:
            raise BadArgument(f"k must be a positive number, got {k}")
        desc = self.descriptor(descriptor)
        self.search_options(desc.name, measure, expand)  # refused before any query is read
        out: list[SearchResult] = []
        for q in queries:
            label = _label(q)
            try:
                out.append(
                    self.search_one(
                        q, k=k, descriptor=desc.name, measure=measure, expand=expand, box=box
                    )
                )
            except ImageError as exc:
                out.append(SearchResult(label, [], {}, error=exc.message))
        return out

    def search_one(
        self,
        query: Query,
        *,
        k: int = 10,
        descriptor: str | None = None,
        measure: str | None = None,
        expand: bool | None = None,
        box: Box | None = None,
    ) -> SearchResult:
        """The ``k`` most similar images to one query; raises ImageError if it can't be read.

        With a result cache, a query given as bytes or a file is looked up by its SHA-256:
        its ranking (at the catalog's current generation and these options), else its
        descriptor rows. ``measure`` and ``expand``: as :meth:`search_vectors`.
        ``box`` (l, t, r, b in pixels of the upright query): the images that hold what is
        inside it, searched among the indexed images' regions (cnn, cosine, no expansion);
        each hit names its matching region."""
        if k <= 0:
            raise BadArgument(f"k must be a positive number, got {k}")
        desc = self.descriptor(descriptor)
        if box is not None:
            if measure not in (None, "cosine") or expand:
                raise BadArgument("a box search compares regions by cosine, without expansion")
            return self._search_box(query, box, k, desc)
        options = self.search_options(desc.name, measure, expand)
        if self.cache.enabled and not isinstance(query, Image.Image):
            return self._search_cached(query, k, desc, options)
        t0 = time.perf_counter()
        image = self._query_image(query, self.describe_side())
        t1 = time.perf_counter()
        rows = desc.embed_query(image)
        t2 = time.perf_counter()
        hits = self._hits(rows, k, desc, options)
        t3 = time.perf_counter()
        timing = {"decode": (t1 - t0) * 1e3, "embed": (t2 - t1) * 1e3, "search": (t3 - t2) * 1e3}
        return SearchResult.ranked(_label(query), hits, timing, options)

    def _search_cached(
        self, query: str | Path | bytes, k: int, desc: Descriptor, options: SearchOptions
    ) -> SearchResult:
        """:meth:`search_one` through the result cache; ``timing_ms`` has ``cache`` (the
        lookups) and the steps that ran."""
        t0 = time.perf_counter()
        named = source_bytes(query)
        side = self.describe_side()
        vector_parts: list[Part] = [sha256_hex(named.data), desc.name, desc.version, side]
        # Read before searching: a ranking stored under it is never older than it says.
        answer_parts = [*vector_parts, self.catalog.generation(desc.name), k, *options.key]
        found = self.cache.answer("search", answer_parts, Ranking, self._cached_hits)
        if found is not None:
            took = {"cache": (time.perf_counter() - t0) * 1e3}
            return SearchResult.ranked(_label(query), found, took, options)
        timing: dict[str, float] = {}

        def compute() -> np.ndarray:
            t1 = time.perf_counter()
            image = self._decode(named.data, named.name, side)
            t2 = time.perf_counter()
            rows = desc.embed_query(image)
            timing.update(decode=(t2 - t1) * 1e3, embed=(time.perf_counter() - t2) * 1e3)
            return rows

        rows = self.cache.rows(vector_parts, compute, functools.partial(_fits, desc))
        t3 = time.perf_counter()
        hits = self._hits(rows, k, desc, options)
        t4 = time.perf_counter()
        ranking = Ranking(hits=[(h.image_id, h.sha256, h.score) for h in hits])
        self.cache.keep("search", answer_parts, ranking)
        lookups = (t3 - t0) * 1e3 - timing.get("decode", 0.0) - timing.get("embed", 0.0)
        timing.update(cache=lookups, search=(t4 - t3) * 1e3)
        return SearchResult.ranked(_label(query), hits, timing, options)

    def _search_box(self, query: Query, box: Box, k: int, desc: Descriptor) -> SearchResult:
        """:meth:`search_one` of what is inside ``box`` of the query."""
        if desc.name != "cnn":
            raise BadArgument(f"a box search uses the cnn descriptor, not {desc.name}")
        t0 = time.perf_counter()
        image, width, height, sha = self._box_query(query)
        clamped = clamp_box(box, width, height)
        crop = crop_box(image, clamped, width, height)
        t1 = time.perf_counter()
        if sha is None:
            rows = desc.embed_query(crop)
        else:
            parts: list[Part] = [sha, desc.name, desc.version, "box", *clamped]
            compute = functools.partial(desc.embed_query, crop)
            rows = self.cache.rows(parts, compute, functools.partial(_fits, desc))
        t2 = time.perf_counter()
        hits = self.search_regions(rows, k=k)
        timing = {"decode": (t1 - t0) * 1e3, "embed": (t2 - t1) * 1e3}
        timing["search"] = (time.perf_counter() - t2) * 1e3
        return SearchResult(_label(query), hits, timing)

    def _box_query(self, query: Query) -> tuple[Image.Image, int, int, str | None]:
        """The query for a box search decoded whole (the box may be small): (image, upright
        width, height, SHA-256 of its bytes; None for an image given decoded)."""
        if isinstance(query, Image.Image):
            image = to_rgb(query)
            return image, image.width, image.height, None
        named = source_bytes(query)
        decoded = decode(
            named.data,
            named.name,
            min_side=None,
            max_pixels=self.settings.max_image_pixels,
            gate=decode_gate(self.settings),
        )
        return decoded.image, decoded.width, decoded.height, sha256_hex(named.data)

    def search_regions(self, rows: np.ndarray, *, k: int = 10) -> list[Hit]:
        """Hits for cnn query rows among the indexed images' regions (and, with the
        ``regions_with_global`` setting, their whole images: the better score counts; a hit
        names its best region among the regions found, if any)."""
        regions = self.regions()
        matches = regions.search(rows, k)
        if (
            not matches
            and self.catalog.count_images() > 0
            and len(regions.index.get(regions.regions)) == 0
        ):
            raise NotFound(
                f"no image has {regions.regions.name} vectors of version "
                f"{regions.regions.version} yet: run `lookalike index` on your folders again"
            )
        best: dict[int, tuple[float, int | None]] = {
            m.image_id: (m.score, m.region) for m in matches
        }
        if self.settings.regions_with_global:
            for hit in self.search_vectors(rows, k=k, descriptor="cnn"):
                score, region = best.get(hit.image_id, (-np.inf, None))
                if hit.score > score:  # its best region, if it has one, still shows where
                    best[hit.image_id] = (hit.score, region)
        ranked = sorted(best.items(), key=lambda item: (-item[1][0], item[0]))[:k]
        info = self.catalog.images([i for i, _ in ranked])
        hits: list[Hit] = []
        for i, (score, region) in ranked:
            row = info.get(i)
            if row is None:  # removed by another process meanwhile
                continue
            where = (
                regions.regions.boxes(row.width, row.height)[region] if region is not None else None
            )
            size = None if where is None else (row.width, row.height)
            hits.append(Hit(len(hits) + 1, _main_path(row), row.sha256, score, i, where, size))
        return hits

    def _cached_hits(self, ranking: Ranking) -> list[Hit] | None:
        """The hits of a cached ranking with the catalog's paths now; None if one of its
        images is gone or is other bytes now (a catalog made anew)."""
        info = self.catalog.images([i for i, _, _ in ranking.hits])
        hits: list[Hit] = []
        for rank, (i, sha, score) in enumerate(ranking.hits, start=1):
            row = info.get(i)
            if row is None or row.sha256 != sha:
                return None
            hits.append(Hit(rank, _main_path(row), sha, score, i))
        return hits

    def search_vectors(
        self,
        rows: np.ndarray,
        *,
        k: int = 10,
        descriptor: str | None = None,
        measure: str | None = None,
        expand: bool | None = None,
    ) -> list[Hit]:
        """Hits for one query given as its descriptor rows (variants; best score per image).

        ``rows``: float32 (m, dim) or packed uint8 codes, as ``embed_query`` returns.
        ``measure``: "cosine" (the default for float descriptors), "euclidean" (a distance:
        lower is closer) or "pearson"; hash codes compare by "hamming" only. ``expand``:
        alpha-query expansion (None: the ``query_expansion`` setting, for cosine and
        Euclidean searches of float descriptors). BadArgument for a measure or an
        expansion the descriptor cannot take.
        """
        if k <= 0:
            raise BadArgument(f"k must be a positive number, got {k}")
        desc = self.descriptor(descriptor)
        return self._hits(rows, k, desc, self.search_options(desc.name, measure, expand))

    def search_options(
        self, descriptor: str | None = None, measure: str | None = None, expand: bool | None = None
    ) -> SearchOptions:
        """The measure and expansion a search with these arguments uses (BadArgument if the
        descriptor cannot take them)."""
        desc = self.descriptor(descriptor)
        auto = expand is None and self.settings.query_expansion is None and desc.kind == "float"
        whitened = auto and self.indexes.whitened(desc)
        return SearchOptions.of(desc, self.settings, measure, expand, whitened=whitened)

    def _hits(
        self, rows: np.ndarray, k: int, desc: Descriptor, options: SearchOptions
    ) -> list[Hit]:
        index = self.indexes.get(desc)
        if len(index) == 0 and self.catalog.count_images() > 0:
            # Images exist but none has this descriptor version (the model changed).
            raise NotFound(
                f"no image has {desc.name} vectors of version {desc.version} yet: run "
                "`lookalike index` on your folders again to compute them"
            )
        best_ids, best_scores = ranking.rank(index, self.catalog, desc, rows, k, options)
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
        named = source_bytes(query)
        return self._decode(named.data, named.name, min_side)

    def _decode(self, data: bytes, source: str, min_side: int) -> Image.Image:
        return decode(
            data,
            source,
            min_side=min_side,
            max_pixels=self.settings.max_image_pixels,
            gate=decode_gate(self.settings),
        ).image

    # -- duplicates ---------------------------------------------------------------------

    def duplicates(
        self,
        threshold: float | None = None,
        *,
        verify: bool | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> DuplicateReport:
        """Groups of exact duplicates (same bytes), of edited copies of one photo (``near``),
        of other shots of one scene (``scenes``) and of pairs whose files could not be read
        to verify them (``unverified``).

        ``verify``: check candidate pairs on the pixels (default: the ``duplicate_verify``
        setting); False: every pair passing the vector test is in ``near``, nothing is read.
        ``on_progress(done, total)`` is called per verified pair.
        """
        s = self.settings
        thr = s.duplicate_threshold if threshold is None else threshold
        cnn = self.descriptor("cnn")
        phash = self.descriptor("phash")
        checking = s.duplicate_verify if verify is None else verify
        return find_duplicates(
            self.catalog,
            cnn_index=self.indexes.get(cnn),
            cnn=cnn,
            phash=phash,
            threshold=thr,
            features=feature_cache(s) if checking else None,
            candidate_threshold=s.duplicate_candidate_threshold,
            pairs_per_image=s.duplicate_pairs_per_image,
            progress=on_progress,
        )

    def status(self) -> FolderStatus:
        """What this data folder holds: images, faces, people, clusters, schema version,
        size, and whether each index file reflects the catalog (read from its header)."""
        indexes = [self.indexes.state(self.descriptor(n)) for n in descriptor_names()]
        regions = self.regions()
        indexes.append(regions.index.state(regions.regions))
        indexes.append(self.people.index.state(self.people.spec))
        return FolderStatus(
            data_dir=str(self.settings.data_dir),
            schema_version=self.catalog.schema_version(),
            images=self.catalog.count_images(),
            paths=self.catalog.count_paths(),
            faces=self.people.stats(),
            indexes=indexes,
            size=folder_size(self.settings.data_dir),
            parts=part_states(self.settings, self.catalog, self.cache.store),
        )

    def image(self, image_id: int) -> ImageRow:
        found = self.catalog.images([image_id]).get(image_id)
        if found is None:
            raise NotFound(f"image {image_id} not found")
        return found


def _fits(desc: Descriptor, rows: np.ndarray) -> bool:
    """Whether ``rows`` can be ``desc``'s query rows (a cached entry is checked so)."""
    width = desc.dim // 8 if desc.kind == "binary" else desc.dim
    dtype = np.uint8 if desc.kind == "binary" else np.float32
    return rows.dtype == dtype and rows.ndim == 2 and len(rows) > 0 and rows.shape[1] == width


def _main_path(row: ImageRow) -> str:
    return row.paths[0] if row.paths else ""


def _label(query: Query) -> str:
    if isinstance(query, str | Path):
        return os.fspath(query)
    return "<bytes>" if isinstance(query, bytes) else "<image>"
