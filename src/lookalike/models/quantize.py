"""INT8 EfficientNet-Lite0: static quantization whose integer sums are exact on every x86 CPU.

EfficientNet-Lite was designed for 8-bit inference (ReLU6, no squeeze-excite). Calibration
needs images; rather than ship any, we synthesise them: seeded colour fields with the 1/f
power spectrum of natural photos. Being seeded, it makes the same model on every machine.

Arithmetic. ONNX Runtime's usual x86 INT8 kernels multiply uint8 activations by int8
weights (u8s8). On CPUs with AVX2 or AVX-512 but without VNNI they use ``vpmaddubsw``, which
adds two such products into a *saturating* int16: 2 * 255 * 127 = 64770 does not fit in
32767, so large sums are clipped, and only there: VNNI, AMX and the plain SSE kernels sum
exactly. The same photo then gave other vectors on such a CPU (descriptor cosine to float
0.87-0.95 on scikit-image's photos, Holidays mAP 0.815 against 0.843 in float). Here the int8
weights are stored as uint8 with zero point 128 (``w + 128``: the same products exactly), so
ONNX Runtime runs its u8u8 kernels, which widen both operands to 16 bits and add in int32 on
every x86 CPU (SSE, AVX2, AVX-512, AVX-VNNI-INT8): no sum is ever clipped. This is ONNX
Runtime's own remedy (the ``session.x64quantprecision`` option rewrites weights the same way
when a session opens), written into the model so that no session can run without it.

Measured on an AVX2 CPU without VNNI (AMD EPYC; cosine of the cnn descriptor to the float
one on 4 scikit-image photos, Holidays mAP with rotated queries, float32 CPU time per image
over INT8's on one thread, the range of several runs on a busy machine):

    scheme                                 cosine       Holidays mAP   speed-up
    float32                                1            0.843          1
    u8s8, 8-bit weights (before)           0.87-0.95    0.815          1.4-1.5x  sums clipped
    u8s8, 7-bit weights (reduce_range)     0.956-0.976  0.836          1.4x      exact
    u8s8, 7-bit except depthwise           0.946-0.973  0.839          1.3x      exact
    u8u8, per-channel zero points          0.971-0.988  0.848          0.2x      no fast kernel
    u8u8, zero point 128 (this)            0.975-0.981  0.844          1.0-1.2x  exact

Only full 8-bit weights keep the descriptor within 0.97 of the float one, so this scheme is
the one, although on such a CPU it is barely faster than float32 (the u8u8 kernels widen
to 16 bits before multiplying, the u8s8 ones do not); the model is 4x smaller. On CPUs with
VNNI the earlier u8s8 model was faster, but it computed other vectors than CPUs without.
Each built model is still checked against the float network (:func:`agreement`). Figures:
``bench/holidays.py``; vectors on emulated CPUs: ``bench/int8_kernels.py``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lookalike.errors import ModelError
from lookalike.models.onnx_io import open_session

if TYPE_CHECKING:
    import onnx

# Bump when the calibration, the quantization options or the check change: cached files
# (the model, or the verdict that it is not close enough) are keyed by it.
QUANTIZER_VERSION = "int8-qdq-u8u8-pink16/2"
# How the arithmetic is named in descriptor versions, so vectors of two schemes never mix.
SCHEME = "int8u8"
CALIBRATION_IMAGES = 16
CALIBRATION_SIZE = (320, 256)  # width, height: a common 5:4 photo shape at the cnn's side
# Images the built model is checked on: the calibration's kind, other seeds.
CHECK_SEEDS = tuple(range(1000, 1008))
# Mean cosine (GeM-pooled features, float vs INT8) below which the INT8 model is not used:
# 0.990 with this scheme, 0.949 with clipped u8s8 sums and 0.946 with 7-bit weights.
MIN_AGREEMENT = 0.98


def pink_noise_image(seed: int, size: tuple[int, int] = CALIBRATION_SIZE) -> np.ndarray:
    """A uint8 (h, w, 3) RGB image of 1/f^a noise with correlated channels, from ``seed``."""
    rng = np.random.default_rng(seed)
    w, h = size
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    freq = np.sqrt(fx**2 + fy**2)
    freq[0, 0] = 1.0
    channels = []
    for _ in range(3):
        spectrum = rng.normal(size=freq.shape) + 1j * rng.normal(size=freq.shape)
        channels.append(np.fft.irfft2(spectrum / freq ** rng.uniform(0.9, 1.4), s=(h, w)))
    # Mix the channels so colours are correlated, as in photos, not three independent greys.
    mix = rng.normal(size=(3, 3)) * 0.5 + np.eye(3)
    x = np.tensordot(mix, np.stack(channels), axes=1)
    x = (x - x.min()) / max(float(x.max() - x.min()), 1e-9) * 255.0
    return np.asarray(x.transpose(1, 2, 0), dtype=np.uint8)


def _network_input(
    seed: int, mean: tuple[float, float, float], std: tuple[float, float, float]
) -> np.ndarray:
    """The pink-noise image of ``seed`` as a normalised float32 (1, 3, h, w) network input."""
    pixels = pink_noise_image(seed).astype(np.float32) / 255.0
    x = (pixels - np.array(mean, np.float32)) / np.array(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def _calibration_batches(
    mean: tuple[float, float, float], std: tuple[float, float, float]
) -> Iterator[dict[str, np.ndarray]]:
    for seed in range(CALIBRATION_IMAGES):
        yield {"image": _network_input(seed, mean, std)}


def quantize_int8(
    fp32_model: Path,
    *,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> onnx.ModelProto:
    """The INT8 (QDQ, per-channel uint8 weights with zero point 128) version of ``fp32_model``.

    Returns the model, not yet checked (:func:`agreement`) nor saved; raises
    :class:`ModelError` if quantization fails.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._batches = _calibration_batches(mean, std)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    root = logging.getLogger()
    level = root.level
    try:
        # The quantizer logs advice about pre-processing on the root logger; not for users.
        root.setLevel(logging.ERROR)
        with tempfile.TemporaryDirectory(prefix="lookalike-quantize-") as tmp:
            # The quantizer writes a "-inferred" file beside its input and deletes it: on a
            # private copy, so that two processes quantizing at once (the first start of
            # `serve --workers 2`) do not delete each other's.
            source = Path(tmp) / "fp32.onnx"
            shutil.copyfile(fp32_model, source)
            target = Path(tmp) / "int8.onnx"
            quantize_static(
                str(source),
                str(target),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
            model = onnx.load(str(target))
    except Exception as exc:  # the quantizer raises whatever its steps raise
        raise ModelError(f"cannot quantize {fp32_model.name} to INT8: {exc}") from exc
    finally:
        root.setLevel(level)
    weights_to_uint8(model)
    return model


def weights_to_uint8(model: onnx.ModelProto) -> int:
    """Rewrite ``model``'s int8 weights (symmetric: zero point 0) as uint8 ``w + 128`` with
    zero point 128, in place; returns how many tensors were rewritten.

    The dequantized values, and every product, stay exactly the same; only the kernels ONNX
    Runtime picks change (u8u8, which cannot saturate, instead of u8s8).
    """
    from onnx import numpy_helper

    initializers = {t.name: t for t in model.graph.initializer}
    rewritten = 0
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 3:
            continue
        weight, zero_point = initializers.get(node.input[0]), initializers.get(node.input[2])
        if weight is None or zero_point is None:
            continue  # an activation: quantized at run time, already uint8
        w = numpy_helper.to_array(weight)
        zp = numpy_helper.to_array(zero_point)
        if w.dtype != np.int8:
            continue  # the int32 biases
        if zp.any():
            raise ModelError(f"weights {weight.name} are not symmetric (zero point not 0)")
        shifted = (w.astype(np.int16) + 128).astype(np.uint8)
        weight.CopyFrom(numpy_helper.from_array(shifted, weight.name))
        zero_point.CopyFrom(
            numpy_helper.from_array(np.full_like(zp, 128, np.uint8), zero_point.name)
        )
        rewritten += 1
    return rewritten


def agreement(
    reference: Path,
    candidate: bytes,
    *,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> float:
    """How closely ``candidate`` (a serialised model) follows the float model ``reference``.

    Both run on the :data:`CHECK_SEEDS` pink-noise images; their ``features`` are GeM-pooled
    (p = 3, as the cnn descriptor pools) and compared by cosine. Returns the mean cosine
    (1.0: identical). Raises :class:`ModelError` if either model cannot run.
    """
    float_session, int8_session = open_session(reference, threads=1), open_session(candidate, 1)
    cosines = []
    for seed in CHECK_SEEDS:
        feed = {"image": _network_input(seed, mean, std)}
        try:
            (a,) = float_session.run(["features"], feed)
            (b,) = int8_session.run(["features"], feed)
        except Exception as exc:  # ORT raises its own untyped exception classes
            raise ModelError(f"cannot run the model being checked: {exc}") from exc
        pa, pb = _gem(a), _gem(b)
        cosines.append(float(pa @ pb) / max(float(np.linalg.norm(pa) * np.linalg.norm(pb)), 1e-12))
    return float(np.mean(cosines))


def _gem(features: np.ndarray) -> np.ndarray:
    """GeM (p = 3) of one image's feature maps (1, C, h, w): float64 (C,)."""
    x = np.maximum(features[0].astype(np.float64), 0.0)
    return np.asarray(np.cbrt((x**3).mean(axis=(1, 2))))
