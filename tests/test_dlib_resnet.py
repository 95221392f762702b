"""dlib's face ResNet read from its ``.dat`` and run on ONNX Runtime, against dlib itself.

The oracle is dlib's own ``compute_face_descriptor`` on the same chips: a wrong layer order,
padding, folding or input normalisation shows up as embeddings that differ by far more than
float rounding (on 2,264 real chips the two agree to 5e-7).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lookalike.errors import BadInput, ModelError
from lookalike.faces import analyze, crop_face, embed
from lookalike.faces import models as face_models
from lookalike.models import dlib_resnet
from lookalike.models.dlib_resnet import (
    AddPrev,
    Affine,
    Conv,
    FullyConnected,
    Mark,
    Pool,
    Relu,
)

from .conftest import sample

# Rounding differences only: measured 5e-7 (max abs) on LFW and press photos.
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def dat() -> bytes:
    return dlib_resnet.weights_path().read_bytes()


@pytest.fixture(scope="module")
def net(dat: bytes) -> dlib_resnet.DlibNet:
    return dlib_resnet.read_net(dat)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One converted model for the module (conversion takes ~0.2 s)."""
    path = tmp_path_factory.mktemp("model-cache")
    dlib_resnet.onnx_model_path(path)
    return path


@pytest.fixture(scope="module")
def session(cache_dir: Path) -> Any:
    return dlib_resnet.create_session(cache_dir, threads=0)


@pytest.fixture(scope="module")
def chips() -> np.ndarray:
    """Five 150x150 chips: astronaut's face (detected, and in crop mode), its mirror, a
    shifted copy and a darker one."""
    astronaut = sample("astronaut")
    (face,) = analyze(astronaut)
    cropped = crop_face(astronaut.crop((150, 40, 300, 200)))
    assert face.chip is not None and cropped.chip is not None
    chip = face.chip
    darker = (chip.astype(np.float32) * 0.6).astype(np.uint8)
    return np.stack([chip, cropped.chip, chip[:, ::-1], np.roll(chip, 7, axis=1), darker])


def dlib_embeddings(chips: np.ndarray) -> np.ndarray:
    with face_models.ENCODER.use() as encoder:
        vectors = encoder.compute_face_descriptor(list(chips), 0)
    return np.asarray([np.asarray(v) for v in vectors], dtype=np.float32)


def test_reads_the_shipped_network(net: dlib_resnet.DlibNet) -> None:
    assert net.input_size == (150, 150)
    np.testing.assert_allclose(net.mean, (122.782, 117.001, 104.298), atol=1e-4)
    counts: dict[type, int] = {}
    for layer in net.layers:
        counts[type(layer)] = counts.get(type(layer), 0) + 1
    # 1 stem conv + 14 residual blocks of 2 convs; 4 of the blocks downsample.
    assert counts == {
        Conv: 29,
        Affine: 29,
        Relu: 29,
        AddPrev: 14,
        Mark: 22,
        Pool: 6,
        FullyConnected: 1,
    }
    stem = net.layers[0]
    assert isinstance(stem, Conv)
    assert stem.filters.shape == (32, 3, 7, 7) and stem.stride == (2, 2) and stem.padding == (0, 0)
    fc = net.layers[-1]
    assert isinstance(fc, FullyConnected) and fc.weights.shape == (256, 128)
    for layer in net.layers:
        if isinstance(layer, Conv | Affine | FullyConnected):
            arrays = [getattr(layer, f) for f in layer.__dataclass_fields__]
            arrays = [a for a in arrays if isinstance(a, np.ndarray)]
            assert all(a.dtype == np.float32 and np.isfinite(a).all() for a in arrays)


def test_onnx_matches_dlib(session: Any, chips: np.ndarray) -> None:
    (onnx_out,) = session.run(["embedding"], {"chips": chips})
    reference = dlib_embeddings(chips)
    assert onnx_out.shape == (len(chips), 128) and onnx_out.dtype == np.float32
    np.testing.assert_allclose(onnx_out, reference, atol=TOLERANCE, rtol=0)
    assert float(np.linalg.norm(onnx_out - reference, axis=1).max()) < TOLERANCE
    # The chips really differ: the check above is not comparing one vector five times.
    assert float(np.linalg.norm(reference[0] - reference[4])) > 10 * TOLERANCE


def test_batches_match_single_chips(session: Any, chips: np.ndarray) -> None:
    (batch,) = session.run(["embedding"], {"chips": chips})
    singles = np.concatenate([session.run(["embedding"], {"chips": c[None]})[0] for c in chips])
    np.testing.assert_allclose(batch, singles, atol=1e-5, rtol=0)


def test_embed_chips_runs_onnx_by_default_and_dlib_on_request(chips: np.ndarray) -> None:
    assert embed.ENCODER_BACKEND == "onnx"
    default = embed.embed_chips(list(chips))
    reference = embed.embed_chips(list(chips), backend="dlib")
    assert embed.Encoder().session().loaded
    np.testing.assert_allclose(default, reference, atol=TOLERANCE, rtol=0)
    flipped = embed.embed_chips(list(chips[:2]), flip=True)
    mirrored = embed.embed_chips([c[:, ::-1] for c in chips[:2]])
    np.testing.assert_allclose(flipped, (default[:2] + mirrored) / 2, atol=1e-5, rtol=0)


def test_embed_chips_checks_its_input(chips: np.ndarray) -> None:
    with pytest.raises(BadInput, match="backend"):
        embed.embed_chips(list(chips), backend="torch")  # type: ignore[arg-type]
    with pytest.raises(BadInput, match=r"\(150, 150, 3\)"):
        embed.embed_chips([chips[0][:100, :100]])


def test_converted_model_is_cached(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = dlib_resnet.onnx_model_path(cache_dir)
    stamp = first.stat().st_mtime_ns
    assert dlib_resnet.onnx_model_path(cache_dir) == first
    assert first.stat().st_mtime_ns == stamp
    assert not list(cache_dir.glob("*.tmp"))
    # A new converter never reuses an old graph.
    monkeypatch.setattr(dlib_resnet, "CONVERTER_VERSION", "dlib-face-resnet-onnx/test")
    monkeypatch.setattr(dlib_resnet, "build_onnx", lambda net: pytest.fail("built again"))
    with pytest.raises(pytest.fail.Exception, match="built again"):
        dlib_resnet.onnx_model_path(cache_dir)


def test_truncated_or_padded_files_are_refused(dat: bytes) -> None:
    with pytest.raises(ModelError, match="ends early"):
        dlib_resnet.read_net(dat[: len(dat) // 2])
    with pytest.raises(ModelError, match="left after"):
        dlib_resnet.read_net(dat + b"\x00")
    with pytest.raises(ModelError):
        dlib_resnet.read_net(b"")


def test_other_dlib_models_are_refused() -> None:
    # The landmark predictor is dlib-serialized too, but not a network.
    with pytest.raises(ModelError):
        dlib_resnet.load_net(face_models.model_file(face_models.SHAPE_5_FILE))
    # The MMOD detector is a dlib network, with another loss and input layer.
    with pytest.raises(ModelError, match="loss"):
        dlib_resnet.load_net(face_models.model_file(face_models.CNN_FILE))
    with pytest.raises(ModelError, match="cannot read"):
        dlib_resnet.load_net("/nonexistent/model.dat")


def test_a_different_architecture_is_refused(net: dlib_resnet.DlibNet) -> None:
    # Drop one residual block's worth of layers: every layer parses, the network is wrong.
    shorter = dlib_resnet.DlibNet(net.mean, net.input_size, net.layers[:4] + net.layers[12:])
    with pytest.raises(ModelError, match="layers"):
        dlib_resnet.build_onnx(shorter)
    swapped = list(net.layers)
    swapped[1], swapped[2] = swapped[2], swapped[1]  # relu before affine
    with pytest.raises(ModelError, match="layer 1"):
        dlib_resnet.build_onnx(dlib_resnet.DlibNet(net.mean, net.input_size, tuple(swapped)))
