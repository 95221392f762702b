"""Settings, read once, in one place: environment (``LOOKALIKE_*``) then explicit overrides."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from lookalike.errors import BadArgument


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/lookalike``, falling back to ``~/.local/share/lookalike``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "lookalike"


def default_cache_dir() -> Path:
    """Where derived model files live (``$XDG_CACHE_HOME/lookalike``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lookalike"


class Settings(BaseSettings):
    """Every tunable of lookalike. Environment variables use the ``LOOKALIKE_`` prefix."""

    model_config = SettingsConfigDict(env_prefix="LOOKALIKE_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    # Derived model files (the ONNX graph converted from the shipped weights).
    model_cache_dir: Path = Field(default_factory=default_cache_dir)
    default_descriptor: str = "cnn"
    # The cnn network's arithmetic: "int8" (default; same Holidays mAP, a 4x smaller model,
    # ~1.1-1.2x faster on an AVX2 CPU) or "fp32". Vectors of the two are kept apart by the
    # descriptor version (an INT8 model that fails its check runs, and is named, as fp32).
    cnn_precision: Literal["int8", "fp32"] = "int8"
    # Guard against decompression bombs: images with more pixels are refused.
    max_image_pixels: int = 100_000_000
    # Above this many vectors a descriptor's index becomes approximate (IVF).
    ann_threshold: int = 50_000
    # IVF lists probed per query: recall@10 against exact search 0.972 at 50k vectors and
    # 0.991 at 1M (BENCHMARKS.md, speed-ann); 48 gave 0.941 at 50k.
    ann_nprobe: int = 64
    # -- compact (issue 11): whitening and the compact index (lookalike.index) ------------
    # Float descriptors whose index compares PCA-whitened, reduced rows (index/whiten.py),
    # learned on the collection's own vectors and refitted when their count has doubled.
    whiten_descriptors: list[str] = Field(default_factory=lambda: ["cnn"])
    # Width of the whitened rows (0: no whitening). Holidays mAP (bench/holidays.py,
    # ablation): 128 -> 0.852-0.854, 256 -> 0.8545, 512 -> 0.764-0.851, none 0.8436.
    whiten_dim: int = Field(default=256, ge=0)
    # Fewer vectors than this: no whitening (too few to learn the axes from). Fitted on N
    # random Holidays images it lost mAP up to N = 300 and gained from 500 (+0.0075).
    whiten_min_images: int = Field(default=500, ge=2)
    # Each axis divided by its variance to this power (0.5: full whitening)...
    whiten_power: float = Field(default=0.5, ge=0.0, le=1.0)
    # ...after this share of the mean eigenvalue is added to every one: with 0.1 instead of
    # 1.0 the weak axes' noise is blown up (256 axes: 0.8481 against 0.8545).
    whiten_shrinkage: float = Field(default=1.0, ge=0.0)
    # Database-side augmentation of a whitened exact index (below ann_threshold vectors):
    # each row summed with its dba_k nearest, weighted by similarity ** dba_alpha, once
    # the index is built (rows added later: with their neighbours at the time). Holidays:
    # whitened 0.8545 -> 0.8723 (k 3); approximate indexes are not augmented, since every
    # rebuild would cost a search per image. 0: none.
    dba_k: int = Field(default=3, ge=0, le=50)
    dba_alpha: float = Field(default=3.0, ge=0.0, le=100.0)
    # From this many vectors an inner-product index is compact (index/compact.py): PQ codes
    # in RAM for a shortlist, re-ranked exactly from float16 rows memory-mapped from disk.
    # 1M: there IVF-flat holds 2 kB of whitened float32 per image (2 GB; 5 GB unwhitened)
    # and its one-row query slows past the compact one's, while the compact index keeps
    # recall@10 >= 0.95 in ~50 B of RAM per image (BENCHMARKS.md, compact-candidates).
    compact_threshold: int = Field(default=1_000_000, ge=1)
    # Cosine similarity above which two images are near-duplicates (cnn descriptor).
    # 0.84: pairwise precision 0.99 and recall 0.99 on the near-duplicate benchmark, counting
    # burst shots of one scene as near-duplicates (BENCHMARKS.md, neardup).
    duplicate_threshold: float = 0.84
    # Images embedded per ONNX Runtime call while indexing.
    batch_size: int = 16
    # Decoder threads while indexing (Pillow releases the GIL while decoding).
    decode_threads: int = Field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))
    # Inference threads for ONNX Runtime (0: one per core).
    inference_threads: int = 0
    # Catalog commits every this many images, so an interrupted run loses little.
    commit_every: int = 64

    # -- dups (issue 11): near-duplicates verified on the pixels (search/verify.py) -------
    # Verify candidate pairs with local features + RANSAC, so that `near` holds edited
    # copies of one photo only and other shots of one scene go to `scenes`.
    duplicate_verify: bool = True
    # cnn cosine from which two images are a candidate pair to verify (a copy can be less
    # alike than ``duplicate_threshold`` to the cnn: crops, captions).
    duplicate_candidate_threshold: float = Field(default=0.74, ge=0.0, le=1.0)
    # Candidate pairs verified per image at most (the best scored first): bounds the work.
    duplicate_pairs_per_image: int = Field(default=16, ge=1, le=256)
    # Longer side (pixels) of the grey copy local features are found on.
    duplicate_verify_side: int = Field(default=640, ge=64, le=4096)
    # Local features per image at most (ORB).
    duplicate_verify_features: int = Field(default=1000, ge=50, le=10_000)

    # -- large images (lookalike.decode) --------------------------------------------------
    # A decode whose pixel buffers (estimated from the header: width x height x bytes per
    # pixel, after any reduced decoding) exceed this many bytes is "large"...
    decode_large_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    # ...and at most this many large decodes run at once in a process (the others wait).
    decode_slots: int = Field(default=2, ge=1)
    # Seconds a query (search, faces, an upload's check) waits for a slot before failing
    # with Busy (the server: 503 with Retry-After); indexing always waits its turn.
    decode_wait_s: float = Field(default=2.0, ge=0.0)

    # -- faces (lookalike.faces, lookalike.people) ---------------------------------------
    # The one source of the face pipeline's tunable values: lookalike.faces.config names
    # their defaults for its functions, everything else passes these settings down.
    # Measured in bench/faces_lfw.py (verification on LFW crops), faces_speed.py (press
    # photos) and faces_cluster.py; BENCHMARKS.md has the figures.
    # Find, embed and group faces when indexing (``lookalike index --no-faces`` turns it off).
    faces: bool = True
    # Face detector: dlib's MMOD CNN run in ONNX Runtime over an image pyramid ("cnn",
    # default: finds small, turned and blurred faces HOG misses) or dlib's HOG detector
    # ("hog": the fast option, frontal faces of ~80 px and more in its copy of the photo).
    face_detector: Literal["hog", "cnn"] = "cnn"
    # Euclidean distance between 128-d embeddings at or below which two faces are one person:
    # verification, identification and recognition at index time. dlib's published value,
    # confirmed on the LFW pairs: the thresholds that maximise accuracy are 0.60 (detector)
    # to 0.61 (crop mode), 0.58-0.64 per CV fold; accuracy at 0.6 is 98.2% (detector) /
    # 98.0% (crop), the best any threshold reaches 98.3% (faces-lfw).
    face_threshold: float = 0.6
    # Mean distance to a cluster's faces under which an unknown face joins it. Stricter
    # than face_threshold: a wrong join mixes two people in one cluster (BENCHMARKS.md,
    # faces-cluster: pairwise F1 best at 0.5 on LFW identities).
    face_cluster_threshold: float = 0.5
    # The smallest face looked for, in pixels of the original image: the CNN's pyramid starts
    # where such a face is its 80 px window (so it reports no narrower face); faces HOG finds
    # narrower than this are stored but flagged "small" and not usable (the 150 px chip of a
    # smaller face is mostly interpolation).
    face_min_size: int = 40
    # Faces of lower quality (0-1: size x sharpness x pose) are flagged "low_quality" and
    # not usable: left out of enrolment and clustering. A judgement call checked on the
    # press photos, not tuned.
    face_min_quality: float = 0.25
    # Photos are decoded with a shorter side of at least this for face detection (JPEG
    # draft decoding); all 62 press photos' faces are found at 1024 (faces-speed).
    face_decode_side: int = 1024
    # The HOG detector runs on a copy shrunk to this longer side. Faces narrower than ~80 px
    # in that copy are missed: at 1280 a 4000 px photo keeps faces from ~250 px; raise it
    # for group photos (cost grows with the square: median 31 ms at 800, 49 at 1024, 76 at
    # 1280, 169 at 2048 per photo on a shared 2-core machine, faces-speed).
    face_detect_max_side: int = 1280
    # The CNN detector looks at the photo scaled so that a face_min_size face is 80 px wide
    # (its window), but at most this long side: the bound on its time and memory (~3,700
    # multiply-adds per pixel of a pyramid of ~2x the top level's pixels). At 2048 a 1024 px
    # photo is searched down to 40 px faces, a 4000 px one down to ~4% of its width; 1280
    # halves the time but misses a third of the 40-80 px faces of the crowd set (faces-detect).
    # Raise it (and lower face_min_size) for crowds; the time grows with its square.
    face_cnn_max_side: int = 2048
    # Group new unknown faces into clusters at the end of ``index`` (incremental, cheap).
    face_cluster_on_index: bool = True

    # -- regions (issue 11) ----------------------------------------------------------------
    # Keep cnn region vectors of every image while indexing (from the same network pass, 9 x
    # 1280 bytes per image), for search by a region of a photo (``search --box``).
    regions: bool = True
    # A box search also asks the global cnn index and keeps each image's better score. Off:
    # with the region index whitened, crops of 50% / 25% / 10% of a photo found it first
    # 0.988 / 0.976 / 0.738 of the time among regions alone, 0.988 / 0.964 / 0.607 with
    # global scores too (which run higher) and for the crop searched whole (887 images;
    # BENCHMARKS.md, regions).
    regions_with_global: bool = False

    # -- the server (lookalike serve) -----------------------------------------------------
    # Largest accepted upload per file, and files per request.
    upload_max_bytes: int = 25 * 1024 * 1024
    upload_max_files: int = 32
    # Folders a job may index (``POST /v1/jobs``); none by default. A JSON list in the
    # environment: LOOKALIKE_ALLOWED_ROOTS='["/srv/photos"]'.
    allowed_roots: list[Path] = Field(default_factory=list)
    # Host names the server answers to besides the loopback ones (localhost, 127.0.0.1,
    # [::1]), e.g. '["photos.lan"]'. A server on a loopback address, or without API keys,
    # always checks the Host header (a DNS-rebinding page sends its own name); one on
    # another address checks it only when this list is not empty.
    allowed_hosts: list[str] = Field(default_factory=list)

    # -- scale-out (none set: everything embedded in the data folder) ----------------------
    # The shared catalog: postgresql://user:password@host:port/dbname (psycopg's conninfo
    # URLs). Unset: the SQLite file in the data folder.
    catalog_url: str | None = None
    # A node on a shared catalog asks it for an index's generation (has anything changed?)
    # at most this often, in seconds, instead of before every search (a round trip, a
    # tenth of a search): what other nodes add is found within this time (issue target 1 s).
    catalog_poll_s: float = Field(default=0.25, ge=0.0, le=1.0)
    # The result cache: redis://[:password@]host:port/db, rediss://... (TLS), or a Redis
    # Cluster as redis+cluster://[:password@]host1:port1,host2:port2 (any of its nodes;
    # rediss+cluster:// for TLS). Unset: no cache, nothing of Redis imported. It holds query
    # images' vectors and faces (by the SHA-256 of their bytes and the model versions) and
    # search/identify rankings (also by the catalog's generation counters, so a change to
    # the collection is never answered from it).
    cache_url: str | None = None
    # Seconds an entry lives. The memory Redis may use is Redis's own setting: give it a
    # `maxmemory` and `maxmemory-policy allkeys-lru` so that the least used entries go.
    cache_ttl_s: int = Field(default=24 * 3600, ge=1)
    # Entries larger than this many bytes are not stored (a k=1000 ranking is ~80 kB).
    cache_max_bytes: int = Field(default=1024 * 1024, ge=1)
    # Prefix of every key, so that several installations can share one Redis.
    cache_prefix: str = Field(default="lookalike", min_length=1, max_length=100)
    # Seconds to connect to Redis and to wait for an answer: a slow cache costs at most
    # about this much per request before the answer is computed locally.
    cache_timeout_s: float = Field(default=0.1, gt=0.0, le=10.0)
    # After Redis failed, seconds during which it is not asked again (answers are computed
    # locally meanwhile); then the next request tries it again.
    cache_retry_s: float = Field(default=2.0, ge=0.0)
    # The Celery broker for distributed indexing: redis://host:port/db. Unset: indexing runs
    # in the process that asks for it.
    broker_url: str | None = None
    # Files per chunk of a queued index job: one task, done by one worker in one go (and
    # done again whole if its worker dies).
    queue_chunk_files: int = Field(default=64, ge=1, le=10_000)
    # Seconds after which a chunk a worker took but never acknowledged (the worker was
    # killed, or its machine lost) is handed to another worker: the Redis transport's
    # visibility timeout. Keep it above the longest a chunk takes, or a slow chunk is done
    # twice (harmless: writes are idempotent, but wasted).
    queue_redelivery_s: int = Field(default=600, ge=1)
    # Seconds to wait for the broker to answer before giving up with an error.
    broker_timeout_s: float = Field(default=5.0, gt=0.0)
    # Where the server stores uploaded images (default: <data_dir>/uploads). With queued
    # indexing, a folder every worker sees at the same path.
    uploads_dir: Path | None = None

    # -- rerank (issue 11) ----------------------------------------------------------------
    # alpha-query expansion of cnn/color searches by cosine or Euclidean distance (per
    # search: ``--expand``/``expand=``): the best-matching query row plus its
    # ``query_expansion_n`` nearest images, weighted by similarity ** ``query_expansion_alpha``,
    # searched again; scores are then similarities to that expanded query, after images equal
    # to the query. None (default): on where the index compares whitened rows
    # (``whiten_min_images`` and more), off elsewhere: it gains only on whitened vectors and
    # loses on raw ones (BENCHMARKS.md, holidays). n 2 and alpha 1 measured best through the
    # engine on Holidays (mAP 0.8816; alpha 0.5 / 2 / 3: 0.8804 / 0.8805 / 0.8790).
    query_expansion: bool | None = None
    query_expansion_n: int = Field(default=2, ge=1, le=100)
    query_expansion_alpha: float = Field(default=1.0, ge=0.0, le=100.0)
    # Pearson correlation is computed exactly on this many times k cosine candidates (at
    # least 100): the coarse-to-fine shortlist.
    pearson_shortlist: int = Field(default=10, ge=1, le=1000)


@lru_cache(maxsize=1)
def _env_settings() -> Settings:
    return Settings()


def clear_settings_cache() -> None:
    """Forget the settings read from the environment (the next call reads it again)."""
    _env_settings.cache_clear()


def get_settings(**overrides: Any) -> Settings:
    """The settings from the environment, with explicit (non-None) overrides applied.

    Overrides are validated as the environment's values are: an unknown name or a value of
    the wrong kind raises :class:`~lookalike.errors.BadArgument`.
    """
    base = _env_settings()
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return base
    unknown = sorted(set(given) - set(Settings.model_fields))
    if unknown:
        raise BadArgument(f"unknown setting(s): {', '.join(unknown)}")
    try:
        return Settings.model_validate({**base.model_dump(), **given})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise BadArgument(f"invalid setting(s): {problems}") from None
