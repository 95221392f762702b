"""PCA-whitening: what it does to vectors, its file, and the vectors it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.errors import BadArgument
from lookalike.index.whiten import Whitening, WhiteningMismatch


def _sample(n: int = 400, d: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # A strong shared direction plus anisotropic noise, as real descriptors have.
    x = rng.normal(size=(n, d)) * np.linspace(3.0, 0.1, d) + 5.0
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_whitened_rows_are_unit_and_decorrelated() -> None:
    x = _sample()
    w = Whitening.fit(x, 32, source_version="v", shrinkage=0.0)
    out = w.apply(x)
    assert out.shape == (400, 32) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # Before normalising, full whitening leaves unit variance on every kept axis.
    raw = (x - w.mean) @ w.matrix
    np.testing.assert_allclose(raw.var(axis=0, ddof=1), 1.0, rtol=1e-3)


def test_fit_is_deterministic_and_the_tag_follows_the_numbers() -> None:
    x = _sample()
    a = Whitening.fit(x, 16, source_version="v")
    b = Whitening.fit(x.copy(), 16, source_version="v")
    assert a.tag == b.tag and a.tag.startswith("pcaw16-")
    assert Whitening.fit(x[:300], 16, source_version="v").tag != a.tag


def test_round_trip_and_refusals() -> None:
    w = Whitening.fit(_sample(), 8, source_version="cnn/v2")
    back = Whitening.from_bytes(w.to_bytes(), source_version="cnn/v2")
    assert back.tag == w.tag and back.fitted_on == 400
    with pytest.raises(WhiteningMismatch, match="cnn/v2 vectors, not cnn/v3"):
        Whitening.from_bytes(w.to_bytes(), source_version="cnn/v3")
    with pytest.raises(WhiteningMismatch, match="not a whitening file"):
        Whitening.from_bytes(b"garbage", source_version="cnn/v2")
    with pytest.raises(BadArgument):
        Whitening.fit(_sample()[:1], 8, source_version="v")
    with pytest.raises(BadArgument):
        Whitening.fit(_sample(), 65, source_version="v")
