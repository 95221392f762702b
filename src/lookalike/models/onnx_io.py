"""What every converted model shares: finishing the graph, caching it, opening a session.

The converters (``effnet``, ``dlib_resnet``) build their graphs; this module turns a graph
into a checked model, writes it atomically to the cache and opens ONNX Runtime on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lookalike.errors import ModelError
from lookalike.files import atomic_write

if TYPE_CHECKING:
    import onnx
    import onnxruntime


def finish_model(graph: onnx.GraphProto, version: str, what: str) -> onnx.ModelProto:
    """``graph`` as a checked model; ModelError naming ``what`` if it is invalid."""
    import onnx
    from onnx import helper

    # Opset 13 and IR 8: old enough for every onnxruntime the project supports.
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 13)],
        producer_name="lookalike",
        producer_version=version,
    )
    model.ir_version = 8
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"converted {what} graph is invalid: {exc}") from exc
    return model


def save_model(model: onnx.ModelProto, target: Path) -> Path:
    """Write ``model`` to ``target`` through a temporary file renamed into place, so that
    concurrent first runs each see nothing or a complete file; returns ``target``."""
    try:
        atomic_write(target, model.SerializeToString())
    except OSError as exc:
        raise ModelError(f"cannot write the converted model to {target.parent}: {exc}") from exc
    return target


def cached_conversion(
    cache_dir: Path, weights: Path, prefix: str, version: str, build: Callable[[], onnx.ModelProto]
) -> Path:
    """The model converted from ``weights`` in ``cache_dir``, built by ``build`` on first use.

    The file is named ``prefix`` and a hash of the converter ``version`` and the weights
    file's size and mtime (they stand in for its content: hashing tens of MB on every start
    would cost more than it guards against), and written atomically (:func:`save_model`).
    ModelError if the weights cannot be read.
    """
    try:
        stat = weights.stat()
    except OSError as exc:
        raise ModelError(f"cannot read model weights {weights}: {exc}") from exc
    key = f"{version}|{stat.st_size}|{stat.st_mtime_ns}".encode()
    target = Path(cache_dir) / f"{prefix}-{hashlib.sha256(key).hexdigest()[:16]}.onnx"
    if target.is_file():
        return target
    return save_model(build(), target)


def open_session(model: Path | bytes, threads: int = 0) -> onnxruntime.InferenceSession:
    """An ONNX Runtime CPU session on ``model`` (a file, or a serialised model not yet
    saved); ``threads`` intra-op threads (0: one per core). ModelError if it cannot be
    loaded."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 0:
        options.intra_op_num_threads = threads
    # One call runs one graph; inter-op parallelism only adds thread overhead here.
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    source = str(model) if isinstance(model, Path) else model
    try:
        return ort.InferenceSession(
            source, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # ORT raises its own untyped exception classes
        where = f" {model}" if isinstance(model, Path) else ""
        raise ModelError(f"cannot load the converted model{where}: {exc}") from exc
