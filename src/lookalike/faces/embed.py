"""128-d face embeddings with dlib's ResNet, from aligned chips or from ready-made face crops.

Embeddings are the network's raw output (not re-normalised): the distance threshold
``DEFAULT_THRESHOLD`` is calibrated on them (``bench/faces_lfw.py``); their norm is ~1.4.

The network runs on ONNX Runtime by default (:mod:`lookalike.models.dlib_resnet` converts
dlib's own model file): the same embeddings as dlib's (largest difference 5e-7 over 2,264
real chips, LFW accuracy unchanged) at 1.5-2.2 ms per chip instead of ~60 ms. dlib's
implementation stays available as the reference (``backend="dlib"``) and runs dlib's
jitter, which only it has. Which converted model file and how many threads: an
:class:`Encoder`, made from the settings the caller passes down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from lookalike.decode import to_rgb
from lookalike.errors import BadInput
from lookalike.faces import config, models
from lookalike.faces.config import LandmarkCount
from lookalike.faces.detect import Face, PadMode, locate_face
from lookalike.settings import Settings, default_cache_dir

__all__ = [
    "EMBEDDING_DIM",
    "ENCODER_BACKEND",
    "Encoder",
    "EncoderBackend",
    "crop_face",
    "embed_chips",
    "embed_crop",
    "embed_crops",
    "embed_faces",
    "face_distance",
    "pairwise_distances",
]

EMBEDDING_DIM = 128
# Chips per call of dlib's network: bounds memory; dlib gains little from larger batches.
_BATCH = 32
# Chips per ONNX Runtime call: 1.5 ms per chip at 16 on two cores, 2.2 ms one at a time.
_ONNX_BATCH = 16

EncoderBackend = Literal["onnx", "dlib"]
# Which implementation of the ResNet embed_chips runs when not told: "onnx" (ONNX Runtime on
# the converted model) or "dlib" (dlib's own, the reference). Embeddings agree to ~1e-6, so
# the stored face-model version does not depend on it.
ENCODER_BACKEND: EncoderBackend = "onnx"


@dataclass(frozen=True)
class Encoder:
    """Where the converted face models (the ResNet, the CNN detector) are cached
    (``model_cache_dir``) and how many threads ONNX Runtime runs them on
    (``inference_threads``; 0: one per core).

    The default is the settings' defaults; :meth:`from_settings` takes the user's.
    """

    cache_dir: Path = field(default_factory=default_cache_dir)
    threads: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Encoder:
        """The encoder the settings ask for."""
        return cls(settings.model_cache_dir, settings.inference_threads)

    def session(self) -> models.LazyModel[Any]:
        """This encoder's ONNX Runtime session: one per cache folder and thread count in the
        process, converted and opened on first use (:func:`models.shared_session`)."""
        return models.shared_session(
            f"face encoder (onnx, converted from {models.ENCODER_FILE} into {self.cache_dir})",
            ("resnet", self.cache_dir, self.threads),
            self._open,
        )

    def detector_session(self) -> models.LazyModel[Any]:
        """The converted CNN face detector's session, in the same place (:mod:`.mmod`)."""
        return models.shared_session(
            f"cnn face detector (onnx, converted from {models.CNN_FILE} into {self.cache_dir})",
            ("mmod", self.cache_dir, self.threads),
            self._open_detector,
        )

    def _open_detector(self) -> Any:
        from lookalike.models import dlib_mmod

        return dlib_mmod.create_session(self.cache_dir, self.threads)

    def _open(self) -> Any:
        # Imported here: ONNX Runtime is only needed once a face is embedded.
        from lookalike.models import dlib_resnet

        return dlib_resnet.create_session(self.cache_dir, self.threads)


def _embed_dlib(batch: list[np.ndarray], jitter: int) -> list[np.ndarray]:
    vectors: list[np.ndarray] = []
    with models.ENCODER.use() as net:
        for start in range(0, len(batch), _BATCH):
            part = batch[start : start + _BATCH]
            vectors += [np.asarray(v) for v in net.compute_face_descriptor(part, jitter)]
    return vectors


def _embed_onnx(batch: list[np.ndarray], encoder: Encoder) -> list[np.ndarray]:
    vectors: list[np.ndarray] = []
    with encoder.session().use() as session:
        for start in range(0, len(batch), _ONNX_BATCH):
            part = np.stack(batch[start : start + _ONNX_BATCH])
            (out,) = session.run(["embedding"], {"chips": part})
            vectors += list(out)
    return vectors


def embed_chips(
    chips: Sequence[np.ndarray],
    *,
    encoder: Encoder | None = None,
    jitter: int = 0,
    flip: bool = False,
    backend: EncoderBackend | None = None,
) -> np.ndarray:
    """Embeddings of aligned chips (uint8 RGB, CHIP_SIZE square): float32 (n, 128).

    ``jitter`` > 1 averages that many randomly shifted, zoomed and mirrored copies of each
    chip (dlib's jitter: ~``jitter`` times slower, and not repeatable run to run, since
    dlib's random generator cannot be seeded from Python); it always runs on dlib. ``flip``
    averages each chip with its mirror image: 2x the work, deterministic. ``backend``
    chooses the implementation, "onnx" or "dlib" (default: :data:`ENCODER_BACKEND`);
    ``encoder`` where the ONNX model is cached and its threads (default: ``Encoder()``).
    """
    chosen = ENCODER_BACKEND if backend is None else backend
    if chosen not in ("onnx", "dlib"):
        raise BadInput(f"unknown face encoder backend {chosen!r}: use onnx or dlib")
    if not chips:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    side = config.CHIP_SIZE
    for chip in chips:
        if chip.dtype != np.uint8 or chip.shape != (side, side, 3):
            raise BadInput(
                f"face chips must be uint8 ({side}, {side}, 3), not {chip.dtype} {chip.shape}"
            )
    batch = [np.ascontiguousarray(c) for c in chips]
    if flip:
        batch += [np.ascontiguousarray(c[:, ::-1]) for c in chips]
    if chosen == "dlib" or jitter > 1:
        vectors = _embed_dlib(batch, jitter)
    else:
        vectors = _embed_onnx(batch, encoder or Encoder())
    out = np.asarray(vectors, dtype=np.float32).reshape(len(batch), EMBEDDING_DIM)
    if flip:
        out = (out[: len(chips)] + out[len(chips) :]) / 2.0
    return out


def embed_faces(
    faces: Sequence[Face], *, encoder: Encoder | None = None, jitter: int = 0, flip: bool = False
) -> np.ndarray:
    """Embed each face's chip (all faces in one batch), store it in ``face.embedding`` and
    return them as float32 (n, 128) in the order given (``encoder``: see
    :func:`embed_chips`)."""
    missing = [i for i, f in enumerate(faces) if f.chip is None]
    if missing:
        raise BadInput(f"faces {missing} have no aligned chip to embed")
    chips = [f.chip for f in faces if f.chip is not None]
    out = embed_chips(chips, encoder=encoder, jitter=jitter, flip=flip)
    for face, vector in zip(faces, out, strict=True):
        face.embedding = vector
    return out


def crop_face(
    image: Image.Image,
    *,
    landmarks: LandmarkCount = config.DEFAULT_LANDMARKS,
    inset: float = config.CROP_INSET,
    min_face: int = config.MIN_FACE_SIZE,
    pad: PadMode = config.CROP_PAD,
) -> Face:
    """The face of an image that is already a face crop (no detector), as a Face.

    The landmark predictor runs in the whole frame, inset by ``inset`` of each side (where
    a detector would have put the box); the face is aligned from those landmarks. ``pad``
    (see :func:`~lookalike.faces.detect.locate_face`) fills what the chip needs beyond the
    frame. Returns a Face with box = that rectangle and score 1.0, without embedding.
    """
    if not 0.0 <= inset < 0.5:
        raise BadInput(f"crop inset must be in [0, 0.5), not {inset}")
    rgb = to_rgb(image)
    if rgb.width < 1 or rgb.height < 1:
        raise BadInput(f"image has no pixels ({rgb.width}x{rgb.height})")
    dx, dy = inset * rgb.width, inset * rgb.height
    box = (dx, dy, rgb.width - dx, rgb.height - dy)
    return locate_face(rgb, box, 1.0, landmarks=landmarks, min_face=min_face, pad=pad)


def embed_crops(
    images: Sequence[Image.Image],
    *,
    encoder: Encoder | None = None,
    jitter: int = 0,
    flip: bool = False,
    inset: float = config.CROP_INSET,
) -> np.ndarray:
    """Embeddings of images that are face crops (see :func:`crop_face`): float32 (n, 128)."""
    faces = [crop_face(im, inset=inset) for im in images]
    return embed_faces(faces, encoder=encoder, jitter=jitter, flip=flip)


def embed_crop(
    image: Image.Image,
    *,
    encoder: Encoder | None = None,
    jitter: int = 0,
    flip: bool = False,
    inset: float = config.CROP_INSET,
) -> np.ndarray:
    """The embedding of one face crop: float32 (128,)."""
    found = embed_crops([image], encoder=encoder, jitter=jitter, flip=flip, inset=inset)
    out: np.ndarray = found[0]
    return out


def face_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance between embeddings along the last axis, numpy broadcasting.

    Two (128,) vectors give a 0-d array (use ``float()``); (n, 128) against (128,) gives (n,).
    For all pairs of two sets use :func:`pairwise_distances`.
    """
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if a.shape[-1] != b.shape[-1]:
        raise BadInput(f"embedding sizes differ: {a.shape} and {b.shape}")
    out: np.ndarray = np.linalg.norm(a - b, axis=-1)
    return out


# Pairs of rows whose differences ``pairwise_distances`` holds at once: (pairs, d) float32,
# 32 MB for 128-d embeddings.
PAIRS_PER_BLOCK = 65_536


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between every row of ``a`` (n, d) and of ``b`` (m, d): (n, m).

    The answer is n * m floats: for large sets, call it on blocks of rows (as
    :meth:`lookalike.people.recognise.Recogniser.identify_vectors` does).
    """
    a = np.atleast_2d(np.asarray(a, dtype=np.float32))
    b = np.atleast_2d(np.asarray(b, dtype=np.float32))
    if a.shape[1] != b.shape[1]:
        raise BadInput(f"embedding sizes differ: {a.shape} and {b.shape}")
    out = np.zeros((len(a), len(b)), dtype=np.float32)
    step = max(1, PAIRS_PER_BLOCK // max(1, len(b)))
    # Difference form (not the |a|^2 + |b|^2 - 2ab expansion): exact; rows of ``a`` in
    # blocks, so the (rows, m, d) differences stay bounded.
    for start in range(0, len(a), step):
        out[start : start + step] = np.linalg.norm(
            a[start : start + step, None, :] - b[None, :, :], axis=2
        )
    return out
