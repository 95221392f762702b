"""dlib's serialized networks, read with numpy, and the ONNX graph pieces they map to.

dlib saves a network (``dlib::serialize(net)``) in its own binary format. :func:`read_layers`
reads the layers of any network built from the layer kinds below (``con_``, ``affine_``,
``bn_con`` read as the affine it is at inference, ``relu_``, pooling, ``add_prev_``, ``fc_``),
after the caller has read the loss layer's header; :class:`GraphBuilder` writes them as ONNX
nodes. The converters of particular networks (:mod:`~lookalike.models.dlib_resnet`,
:mod:`~lookalike.models.dlib_mmod`) check the architecture and build the graph.

The file format, as dlib writes it (``dlib/serialize.h``, ``dlib/dnn/core.h``, ``layers.h``,
``input.h``, ``loss.h``, ``tensor.h``):

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

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from lookalike.errors import ModelError

if TYPE_CHECKING:
    import onnx

__all__ = [
    "LOSS_LAYER_VERSION",
    "AddPrev",
    "Affine",
    "Conv",
    "FullyConnected",
    "GraphBuilder",
    "InputLayer",
    "Layer",
    "Mark",
    "Pool",
    "Reader",
    "Relu",
    "read_layers",
    "read_weights",
]

# Versions dlib writes for the layer wrappers (core.h): add_layer, the lowest add_layer (the
# one holding the input layer; 2 in older dlib), tag/skip layers, the loss layer.
_ADD_LAYER: Final = 2
_INPUT_ADD_LAYER: Final = (2, 3)
_TAG_OR_SKIP: Final = 1
LOSS_LAYER_VERSION: Final = 1
_TENSOR_VERSION: Final = 2
_ALIAS_VERSION: Final = 1
# float_details' exponents for infinities and NaN (float_details.h).
_SPECIAL_EXPONENTS: Final = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
# No layer of any dlib network nests deeper than this; bounds the scan of the version run.
_MAX_LAYERS: Final = 10_000
# Input layers read: a fixed-size RGB image (mean, rows, cols); an RGB image pyramid (mean;
# the version without padding settings, which dlib then takes as 10 and 11 pixels).
_INPUT_LAYERS: Final = ("input_rgb_image_sized", "input_rgb_image_pyramid")


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
    apart; the network's definition says which."""


Layer = Conv | Affine | Relu | AddPrev | Pool | FullyConnected | Mark


@dataclass(frozen=True)
class InputLayer:
    """The input layer: its name, the per-channel means (R, G, B) subtracted before the
    division by 256, and its fixed size (rows, cols) where it has one."""

    name: str
    mean: tuple[float, float, float]
    size: tuple[int, int] | None


# --------------------------------------------------------------------------- reading


class Reader:
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


def _params(r: Reader, params: np.ndarray, *views: tuple[int, int, int, int]) -> list[np.ndarray]:
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


def _conv(r: Reader) -> Conv:
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


def _affine(r: Reader) -> Affine:
    params = r.tensor()
    gamma_view, beta_view = r.alias(), r.alias()
    mode = r.int_()
    if mode != 0 or gamma_view != beta_view or gamma_view[0] != 1 or gamma_view[2:] != (1, 1):
        # FC mode (one value per element, not per channel) does not occur in this network.
        raise r.fail(f"affine_ in mode {mode} with gamma {gamma_view}: only conv mode is read")
    gamma, beta = _params(r, params, gamma_view, beta_view)
    return Affine(gamma.reshape(-1), beta.reshape(-1))


def _pool(r: Reader, kind: str) -> Pool:
    rows, cols, stride_y, stride_x, pad_y, pad_x = (r.count("pooling size") for _ in range(6))
    if min(stride_y, stride_x) < 1:
        raise r.fail(f"{kind}_pool stride ({stride_y}, {stride_x})")
    return Pool(kind, (rows, cols), (stride_y, stride_x), (pad_y, pad_x))


def _fc(r: Reader) -> FullyConnected:
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


def _details(r: Reader) -> Layer:
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
    if name == "bn_con2":
        return _batch_norm(r)
    raise r.fail(f"layer {name!r} is not a kind this reader knows")


def _batch_norm(r: Reader) -> Affine:
    """``bn_con2`` as the affine it is at inference (how dlib's ``affine_`` reads one):
    gamma / sqrt(running variance + eps), and beta - running mean * that."""
    params = r.tensor()
    gamma_view, beta_view = r.alias(), r.alias()
    r.tensor(), r.tensor()  # the last batch's means and inverse deviations: training state
    means, variances = r.tensor(), r.tensor()  # the running statistics inference uses
    r.int_(), r.int_()  # number of updates, running-statistics window: training state
    r.multipliers(4)
    eps = r.float_()
    if gamma_view != beta_view or gamma_view[0] != 1 or gamma_view[2:] != (1, 1):
        raise r.fail(f"bn_con2 with gamma {gamma_view}: only conv mode is read")
    views = _params(r, params, gamma_view, beta_view)
    gamma, beta = (v.reshape(-1).astype(np.float64) for v in views)
    if means.size != gamma.size or variances.size != gamma.size or eps <= 0:
        raise r.fail(f"bn_con2 statistics of {means.size} for {gamma.size} channels")
    scale = gamma / np.sqrt(variances.reshape(-1).astype(np.float64) + eps)
    shift = beta - means.reshape(-1).astype(np.float64) * scale
    return Affine(scale.astype(np.float32), shift.astype(np.float32))


def _layer_state(r: Reader, version: int) -> None:
    # add_layer's working state: this_layer_setup_called, gradient_input_is_stale,
    # get_output_and_gradient_input_disabled, then x_grad, cached_output and params_grad
    # (grad_final for the lowest layer), and for version 3 the sample expansion factor.
    for _ in range(3):
        r.bool_()
    for _ in range(3):
        r.tensor()
    if version == 3:
        r.int_()


def _input_layer(r: Reader) -> InputLayer:
    name = r.string()
    if name not in _INPUT_LAYERS:
        raise r.fail(f"input layer {name!r} is not one this reader knows")
    mean = (r.float_(), r.float_(), r.float_())
    size = None
    if name == "input_rgb_image_sized":
        size = (r.count("input rows"), r.count("input cols"))
    return InputLayer(name, mean, size)


def _is_input_next(r: Reader) -> bool:
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


def read_weights(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a model file; ModelError naming it if it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model weights {path}: {exc}") from exc


def read_layers(r: Reader) -> tuple[InputLayer, tuple[Layer, ...]]:
    """The input layer and the layers (input to output) of the network at ``r``'s position,
    just after the loss layer's details; the whole buffer must be consumed.

    Raises :class:`ModelError` naming the byte offset on anything that is not dlib's format.
    """
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
    source = _input_layer(r)
    layers: list[Layer] = [_details(r)]
    _layer_state(r, version)
    for wrapper in reversed(wrappers):
        if wrapper == _TAG_OR_SKIP:
            layers.append(Mark())
        else:
            layers.append(_details(r))
            _layer_state(r, wrapper)
    if r.pos != len(r.data):
        raise r.fail(f"{len(r.data) - r.pos} bytes left after the network")
    return source, tuple(layers)


# --------------------------------------------------------------------------- graph


class GraphBuilder:
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
