"""The INT8 model: deterministic calibration, and agreement with the float network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lookalike.describe.cnn import CnnDescriptor
from lookalike.models import effnet
from lookalike.models.quantize import pink_noise_image
from lookalike.settings import get_settings

from .conftest import sample


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("int8-cache")


def test_calibration_images_are_seeded_and_photo_like() -> None:
    a, b = pink_noise_image(3), pink_noise_image(3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, pink_noise_image(4))
    assert a.shape == (256, 320, 3) and a.dtype == np.uint8
    assert a.std() > 20  # a full range of tones, not a flat field


def test_int8_model_is_cached_and_reused(cache_dir: Path) -> None:
    first = effnet.int8_model_path(cache_dir)
    stamp = first.stat().st_mtime_ns
    assert effnet.int8_model_path(cache_dir) == first
    assert first.stat().st_mtime_ns == stamp
    assert "int8" in first.name and not list(cache_dir.glob("*.tmp"))


def _logits(session: Any, name: str) -> np.ndarray:
    image = sample(name).resize((224, 224))
    x = (np.asarray(image, np.float32) / 255 - effnet.MEAN) / effnet.STD
    (logits,) = session.run(["logits"], {"image": x.transpose(2, 0, 1)[None].astype(np.float32)})
    return np.asarray(logits[0])


def test_int8_network_agrees_with_float(cache_dir: Path) -> None:
    fp32 = effnet.create_session(cache_dir, precision="fp32")
    int8 = effnet.create_session(cache_dir, precision="int8")
    for name in ("chelsea", "coffee", "rocket"):
        a, b = _logits(fp32, name), _logits(int8, name)
        assert int(np.argmax(a)) in set(np.argsort(-b)[:3].tolist()), name
    cat = np.argsort(-_logits(int8, "chelsea"))[:3]
    assert set(cat.tolist()) <= {281, 282, 283, 284, 285}  # the cat classes


def test_int8_descriptor_matches_float_descriptor(cache_dir: Path) -> None:
    images = [sample(n) for n in ("astronaut", "chelsea", "coffee", "rocket")]
    vectors = {}
    for precision in ("fp32", "int8"):
        settings = get_settings(model_cache_dir=cache_dir, cnn_precision=precision)
        desc = CnnDescriptor(settings)
        vectors[precision] = desc.embed(images)
        assert ("int8" in desc.version) == (precision == "int8")
    cosines = (vectors["fp32"] * vectors["int8"]).sum(axis=1)
    assert cosines.min() > 0.97
    # And the ranking among different photos is kept: each int8 vector is nearest its fp32 twin.
    assert (np.argmax(vectors["int8"] @ vectors["fp32"].T, axis=1) == np.arange(4)).all()
