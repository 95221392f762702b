"""The torch-free EfficientNet-Lite0 conversion, and the ``cnn`` descriptor built on it.

The converted network is checked against ImageNet labels on scikit-image's sample photos:
a wrong padding, normalisation or weight layout shows up as wrong classes.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from lookalike.describe.cnn import (
    CnnDescriptor,
    input_size,
    preprocess,
    region_grid,
    regional_gem,
)
from lookalike.errors import ModelError
from lookalike.models import effnet
from lookalike.settings import get_settings

skdata = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One converted model for the whole module (conversion takes a few seconds)."""
    path = tmp_path_factory.mktemp("model-cache")
    effnet.onnx_model_path(path)
    return path


@pytest.fixture(scope="module")
def session(cache_dir: Path) -> Any:
    return effnet.create_session(cache_dir, threads=0)


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return effnet.load_state_dict(effnet.weights_path())


def _classify_input(rgb: np.ndarray) -> np.ndarray:
    # The usual ImageNet evaluation crop: shorter side to 256, centre 224 x 224.
    image = Image.fromarray(rgb).convert("RGB")
    scale = 256 / min(image.size)
    image = image.resize(
        (round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC
    )
    left, top = (image.width - 224) // 2, (image.height - 224) // 2
    image = image.crop((left, top, left + 224, top + 224))
    x = (np.asarray(image, dtype=np.float32) / 255 - effnet.MEAN) / effnet.STD
    return x.transpose(2, 0, 1)[None].astype(np.float32)


def _top5(session: Any, rgb: np.ndarray) -> list[int]:
    (logits,) = session.run(["logits"], {"image": _classify_input(rgb)})
    return [int(i) for i in np.argsort(-logits[0])[:5]]


# ---------------------------------------------------------------- weights


def test_state_dict_has_lite0_tensors(state: dict[str, np.ndarray]) -> None:
    # 16 blocks; block 0 has no expansion; 49 BatchNorms with 5 tensors each; stem, head, fc.
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_fc.bias"].shape == (1000,)
    assert "_blocks.0._expand_conv.weight" not in state
    assert state["_blocks.1._expand_conv.weight"].shape == (96, 16, 1, 1)
    assert state["_blocks.3._depthwise_conv.weight"].shape == (144, 1, 5, 5)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert "_blocks.16._depthwise_conv.weight" not in state
    assert not any("_se_" in k for k in state)  # Lite: no squeeze-excite
    assert state["_bn0.running_var"].dtype == np.float32
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    assert all(v.flags.c_contiguous for v in state.values())


def _write_legacy_checkpoint(
    path: Path,
    tensors: dict[str, tuple[np.ndarray, int, tuple[int, ...], tuple[int, ...]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Write a legacy torch checkpoint by hand: (storage, offset, size, stride) per tensor."""

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args: Any) -> None:
        raise AssertionError("never called while writing")

    # pickle records globals by module and name and checks they import: fake the modules.
    torch_mod = types.ModuleType("torch")
    utils_mod = types.ModuleType("torch._utils")
    FloatStorage.__module__ = "torch"
    FloatStorage.__qualname__ = "FloatStorage"
    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch_mod.FloatStorage = FloatStorage  # type: ignore[attr-defined]
    utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch_mod)
    monkeypatch.setitem(sys.modules, "torch._utils", utils_mod)

    class Ref:
        def __init__(self, key: str, numel: int) -> None:
            self.key, self.numel = key, numel

    class Tensor:
        def __init__(
            self, ref: Ref, offset: int, size: tuple[int, ...], stride: tuple[int, ...]
        ) -> None:
            self.args = (ref, offset, size, stride, False, OrderedDict())

        def __reduce__(self) -> Any:
            return (_rebuild_tensor_v2, self.args)

    class Writer(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            if isinstance(obj, Ref):
                return ("storage", FloatStorage, obj.key, "cpu", obj.numel)
            return None

    storages: dict[str, np.ndarray] = {}
    state: OrderedDict[str, Tensor] = OrderedDict()
    for i, (name, (data, offset, size, stride)) in enumerate(tensors.items()):
        key = str(1000 + i)
        storages[key] = data.astype("<f4")
        state[name] = Tensor(Ref(key, data.size), offset, size, stride)
    with open(path, "wb") as fh:
        pickle.dump(effnet._LEGACY_MAGIC, fh, protocol=2)
        pickle.dump(effnet._LEGACY_PROTOCOL, fh, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True}, fh, protocol=2)
        Writer(fh, protocol=2).dump(state)
        pickle.dump(list(storages), fh, protocol=2)
        for data in storages.values():
            fh.write(struct.pack("<q", data.size))
            fh.write(data.tobytes())


def test_load_state_dict_honours_offset_and_stride(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = np.arange(20, dtype=np.float32)
    path = tmp_path / "tiny.pth"
    _write_legacy_checkpoint(
        path,
        {
            "plain": (base, 0, (4, 5), (5, 1)),
            "transposed": (base, 0, (5, 4), (1, 5)),  # a .t() view
            "offset": (base, 7, (3,), (2,)),  # storage[7], [9], [11]
        },
        monkeypatch,
    )
    monkeypatch.delitem(sys.modules, "torch")  # loading must not need torch
    state = effnet.load_state_dict(path)
    np.testing.assert_array_equal(state["plain"], base.reshape(4, 5))
    np.testing.assert_array_equal(state["transposed"], base.reshape(4, 5).T)
    np.testing.assert_array_equal(state["offset"], [7, 9, 11])


class _Evil:
    """Pickles as a call of ``os.system``: running it creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("position", range(5))
def test_load_state_dict_refuses_other_globals_in_every_pickle(
    tmp_path: Path, position: int
) -> None:
    # A legacy checkpoint is five pickles (magic, protocol, system info, state dict, storage
    # keys); a forbidden global in any of them is refused without being called.
    marker = tmp_path / "pwned"
    pickles: list[Any] = [
        effnet._LEGACY_MAGIC,
        effnet._LEGACY_PROTOCOL,
        {"little_endian": True},
        {"x": 1},
        [],
    ]
    pickles[position] = _Evil(marker) if position != 3 else {"x": _Evil(marker)}
    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        for item in pickles:
            pickle.dump(item, fh, protocol=2)
    with pytest.raises(ModelError, match=r"\.system, which is not allowed"):
        effnet.load_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("offset", "size", "stride"),
    [(4, (3,), (1,)), (0, (2, 3), (3, 2)), (0, (1000,), (0,))],
    ids=["past the end", "stride past the end", "repeated beyond its size"],
)
def test_load_state_dict_refuses_tensors_outside_their_storage(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
) -> None:
    path = tmp_path / "bad.pth"
    base = np.arange(6, dtype=np.float32)
    _write_legacy_checkpoint(path, {"w": (base, offset, size, stride)}, monkeypatch)
    with pytest.raises(ModelError, match="storage"):
        effnet.load_state_dict(path)


def test_load_state_dict_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read"):
        effnet.load_state_dict(tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x80\x02K\x05.")  # a pickled 5, not the magic number
    with pytest.raises(ModelError, match="magic"):
        effnet.load_state_dict(garbage)
    zipped = tmp_path / "new.pth"
    zipped.write_bytes(b"PK\x03\x04rest")
    with pytest.raises(ModelError, match="zip"):
        effnet.load_state_dict(zipped)


def test_build_onnx_rejects_wrong_weights(state: dict[str, np.ndarray]) -> None:
    broken = dict(state)
    del broken["_blocks.4._project_conv.weight"]
    with pytest.raises(ModelError, match=r"_blocks\.4\._project_conv\.weight"):
        effnet.build_onnx(broken)


# ---------------------------------------------------------------- the network


def test_tabby_cat(session: Any) -> None:
    top5 = _top5(session, skdata.chelsea())
    # 281 tabby, 282 tiger cat, 285 Egyptian cat; 283 Persian, 284 Siamese.
    assert top5[0] in {281, 282, 285}
    assert {281, 282, 285} <= set(top5)


def test_coffee(session: Any) -> None:
    top5 = _top5(session, skdata.coffee())
    assert set(top5[:2]) == {967, 968}  # espresso, cup


def test_rocket(session: Any) -> None:
    top5 = _top5(session, skdata.rocket())
    assert top5[0] == 657  # missile
    assert 744 in top5[:3]  # projectile
    assert 812 in top5  # space shuttle


def test_dynamic_batch_and_size(session: Any) -> None:
    x = np.zeros((2, 3, 256, 320), dtype=np.float32)
    features, logits = session.run(["features", "logits"], {"image": x})
    assert features.shape == (2, 1280, 8, 10)
    assert logits.shape == (2, 1000)
    assert features.min() >= 0.0 and features.max() <= 6.0  # ReLU6


def test_cache_is_reused(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = effnet.onnx_model_path(cache_dir)
    stamp = first.stat().st_mtime_ns

    def no_rebuild(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("converted again although the cache holds the model")

    monkeypatch.setattr(effnet, "build_onnx", no_rebuild)
    second = effnet.onnx_model_path(cache_dir)
    assert second == first
    assert second.stat().st_mtime_ns == stamp
    assert [p.name for p in cache_dir.iterdir()] == [first.name]  # no temp files left
    assert "efficientnet-lite0" in first.name


def test_unwritable_cache_is_a_model_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ModelError, match="cannot write"):
        effnet.onnx_model_path(blocker / "cache")


# ---------------------------------------------------------------- the cnn descriptor


@pytest.fixture(scope="module")
def cnn(cache_dir: Path) -> CnnDescriptor:
    return CnnDescriptor(get_settings(model_cache_dir=cache_dir, batch_size=4))


def test_input_size_keeps_aspect_on_the_stride_grid() -> None:
    assert input_size(325, 243, 288) == (384, 288)
    assert input_size(243, 325, 288) == (288, 384)
    assert input_size(4000, 3000, 288) == (384, 288)
    assert input_size(1000, 100, 288) == (704, 64)  # capped panorama: shorter side shrinks
    assert input_size(10, 10, 224) == (224, 224)


def test_preprocess_normalises_as_the_weights_expect() -> None:
    cat = Image.fromarray(skdata.chelsea())
    width, height = input_size(cat.width, cat.height, 256)
    resized = np.asarray(cat.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)
    expected = ((resized / 255 - effnet.MEAN) / effnet.STD).transpose(2, 0, 1)
    x = preprocess(cat, 256)
    assert x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_allclose(x, expected, atol=1e-5)
    np.testing.assert_array_equal(
        preprocess(cat.convert("L"), 256)[0], preprocess(cat.convert("L"), 256)[2]
    )


def test_region_grid_covers_the_map() -> None:
    regions = region_grid(9, 12, 3)
    covered = np.zeros((9, 12), dtype=bool)
    for y0, y1, x0, x1 in regions:
        assert y1 - y0 == x1 - x0  # squares
        assert 0 <= y0 < y1 <= 9 and 0 <= x0 < x1 <= 12
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    assert region_grid(9, 12, 0) == []


def test_regional_gem_matches_a_direct_computation() -> None:
    rng = np.random.default_rng(0)
    fmap = np.maximum(rng.normal(size=(2, 8, 5, 7)), 0).astype(np.float32)
    p = 3.0

    def gem(x: np.ndarray) -> np.ndarray:
        v = (x.astype(np.float64) ** p).mean(axis=(2, 3)) ** (1 / p)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    summed = sum(gem(fmap[:, :, y0:y1, x0:x1]) for y0, y1, x0, x1 in region_grid(5, 7, 2))
    expected = summed / np.linalg.norm(summed, axis=1, keepdims=True) + gem(fmap)
    np.testing.assert_allclose(regional_gem(fmap, p, 2), expected, rtol=1e-5, atol=1e-6)


def test_cnn_embeds_mixed_sizes(cnn: CnnDescriptor) -> None:
    cat = Image.fromarray(skdata.chelsea())
    coffee = Image.fromarray(skdata.coffee())
    images = [cat, coffee, cat.resize((cat.width // 2, cat.height // 2)), coffee.convert("L")]
    vectors = cnn.embed(images)
    assert vectors.shape == (4, cnn.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 2] > 0.9  # the same photo at half size
    assert sims[0, 2] > sims[0, 1] + 0.2  # a cat is not a coffee cup
    assert cnn.embed([]).shape == (0, cnn.dim)


def test_cnn_query_rows_find_rotated_copies(cnn: CnnDescriptor) -> None:
    cat = Image.fromarray(skdata.chelsea())
    rows = cnn.embed_query(cat)
    assert rows.shape == (4, cnn.dim)
    rotated = cnn.embed([cat.transpose(Image.Transpose.ROTATE_90)])[0]
    upright = cnn.embed([cat])[0]
    np.testing.assert_allclose(rows[0], upright, atol=1e-5)
    assert float((rows @ rotated).max()) > 0.99
    assert float((rows @ rotated).max()) > float(upright @ rotated)


def test_cnn_describes_itself(cnn: CnnDescriptor) -> None:
    assert cnn.kind == "float" and cnn.dim == 1280
    assert cnn.input_side == cnn.side
    assert str(cnn.side) in cnn.version and "effnet-lite0" in cnn.version
    other = CnnDescriptor(get_settings(), side=224, levels=0)
    assert other.version != cnn.version
    assert not other._model.loaded  # nothing is loaded before the first embed
