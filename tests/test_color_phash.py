"""Tests for the ``color`` and ``phash`` descriptors (used directly, not via the registry)."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from lookalike.describe.color import ColorHistogram
from lookalike.describe.phash import (
    PerceptualHash,
    _dct_matrix,
    dihedral_variants,
    hamming,
)
from lookalike.settings import Settings

# Photos that have nothing to do with each other.
UNRELATED = ["astronaut", "camera", "coffee", "chelsea", "rocket", "hubble_deep_field", "coins"]


def photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(skdata, name)()).convert("RGB")


def reencode(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    return {name: photo(name) for name in UNRELATED}


# -- protocol ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [ColorHistogram, PerceptualHash])
def test_descriptor_attributes(cls: type[ColorHistogram] | type[PerceptualHash]) -> None:
    desc = cls(Settings())
    assert isinstance(desc.name, str) and desc.name in ("color", "phash")
    assert isinstance(desc.version, str) and desc.version
    assert desc.dim > 0
    assert desc.kind in ("float", "binary")
    assert desc.input_side > 0
    cls()  # settings are optional


def test_registered() -> None:
    from lookalike.describe.base import _REGISTRY

    assert isinstance(_REGISTRY["color"](Settings()), ColorHistogram)
    assert isinstance(_REGISTRY["phash"](Settings()), PerceptualHash)


# -- phash ---------------------------------------------------------------------------------


def test_dct_matrix_is_orthonormal_dct_ii() -> None:
    n = 32
    c = _dct_matrix(n)
    assert np.allclose(c @ c.T, np.eye(n), atol=1e-12)
    x = np.random.default_rng(0).random(n)
    naive = np.array(
        [sum(x[i] * np.cos(np.pi * (2 * i + 1) * k / (2 * n)) for i in range(n)) for k in range(n)]
    )
    naive *= np.sqrt(2.0 / n)
    naive[0] /= np.sqrt(2.0)
    assert np.allclose(c @ x, naive)


def test_phash_shape_and_type(photos: dict[str, Image.Image]) -> None:
    ph = PerceptualHash()
    codes = ph.embed(list(photos.values()))
    assert codes.dtype == np.uint8
    assert codes.shape == (len(photos), 8)
    assert ph.embed([]).shape == (0, 8)
    # Batched and one-by-one agree.
    for row, image in zip(codes, photos.values(), strict=True):
        assert np.array_equal(row, ph.embed([image])[0])
        assert np.array_equal(row, ph.embed_query(image)[0])


def test_phash_survives_reencoding_and_resizing(photos: dict[str, Image.Image]) -> None:
    ph = PerceptualHash()
    for name, image in photos.items():
        h = ph.embed([image])[0]
        assert hamming(h, ph.embed([reencode(image, 90)])[0]) <= 6, name
        small = image.resize((image.width * 2 // 5, image.height * 2 // 5))
        assert hamming(h, ph.embed([reencode(small, 80)])[0]) <= 6, name


def test_phash_separates_unrelated_photos(photos: dict[str, Image.Image]) -> None:
    ph = PerceptualHash()
    codes = {name: ph.embed([image])[0] for name, image in photos.items()}
    for a, b in itertools.combinations(codes, 2):
        assert hamming(codes[a], codes[b]) > 20, (a, b)


def test_phash_bits_are_balanced(photos: dict[str, Image.Image]) -> None:
    codes = PerceptualHash().embed(list(photos.values()))
    ones = np.unpackbits(codes, axis=1).sum(axis=1)
    assert np.all((ones > 16) & (ones < 48))


@pytest.mark.parametrize("name", ["astronaut", "coffee", "rocket"])
def test_dihedral_variants_match_transformed_images(name: str) -> None:
    ph = PerceptualHash()
    image = photo(name)
    codes = ph.embed([image])
    variants = dihedral_variants(codes)
    assert len(variants) == 8
    assert np.array_equal(variants[0], codes)
    assert all(v.shape == codes.shape and v.dtype == np.uint8 for v in variants)
    for op in Image.Transpose:
        turned = ph.embed([reencode(image.transpose(op), 90)])[0]
        assert min(hamming(turned, v[0]) for v in variants) <= 4, op
    # ...while an unrelated photo stays far from every variant.
    other = ph.embed([photo("camera")])[0]
    assert min(hamming(other, v[0]) for v in variants) > 12


def test_dihedral_variants_of_many_rows(photos: dict[str, Image.Image]) -> None:
    codes = PerceptualHash().embed(list(photos.values()))
    for v in dihedral_variants(codes):
        assert v.shape == codes.shape
    assert dihedral_variants(codes[:0])[0].shape == (0, 8)


def test_hamming() -> None:
    a = np.zeros(8, np.uint8)
    b = np.array([0xFF, 0, 1, 0, 0, 0, 0, 0x80], np.uint8)
    assert hamming(a, a) == 0
    assert hamming(a, b) == 10
    assert hamming(b, a) == 10
    with pytest.raises(ValueError):
        hamming(a, b[:4])


# -- color ---------------------------------------------------------------------------------


def test_color_rows_are_unit_float32(photos: dict[str, Image.Image]) -> None:
    co = ColorHistogram()
    rows = co.embed(list(photos.values()))
    assert rows.dtype == np.float32
    assert rows.shape == (len(photos), co.dim)
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    assert np.all(rows >= 0)
    assert np.array_equal(co.embed_query(photos["coffee"]), co.embed([photos["coffee"]]))


def test_color_resized_copy_is_similar(photos: dict[str, Image.Image]) -> None:
    co = ColorHistogram()
    for name, image in photos.items():
        small = reencode(image.resize((image.width // 3, image.height // 3)), 85)
        a, b = co.embed([image, small])
        assert float(a @ b) > 0.95, name


def test_color_red_vs_blue() -> None:
    co = ColorHistogram()
    red = Image.new("RGB", (64, 64), (220, 20, 20))
    blue = Image.new("RGB", (64, 64), (20, 20, 220))
    a, b = co.embed([red, blue])
    assert float(a @ b) < 0.1
    # Reds either side of 0 degrees of hue fall together.
    pink_red = Image.new("RGB", (64, 64), (220, 20, 35))
    orange_red = Image.new("RGB", (64, 64), (220, 35, 20))
    c, d = co.embed([pink_red, orange_red])
    assert float(c @ d) > 0.9


def test_color_greys_ignore_hue_noise() -> None:
    co = ColorHistogram()
    # Near-greys with slightly different tints have random hues but are all grey.
    a = Image.new("RGB", (32, 32), (130, 128, 128))
    b = Image.new("RGB", (32, 32), (128, 128, 131))
    white = Image.new("RGB", (32, 32), (255, 255, 255))
    black = Image.new("RGB", (32, 32), (0, 0, 0))
    rows = co.embed([a, b, white, black])
    assert float(rows[0] @ rows[1]) > 0.99
    assert float(rows[2] @ rows[3]) < 0.1


def test_color_accepts_other_modes() -> None:
    co = ColorHistogram()
    rgba = Image.new("RGBA", (10, 10), (0, 200, 0, 255))
    grey = Image.new("L", (10, 10), 50)
    rows = co.embed([rgba, grey, Image.new("RGB", (1, 1), (0, 200, 0))])
    assert rows.shape == (3, co.dim)
    assert float(rows[0] @ rows[2]) > 0.99


def test_color_separates_different_palettes(photos: dict[str, Image.Image]) -> None:
    co = ColorHistogram()
    coffee, rocket, astronaut = co.embed([photos["coffee"], photos["rocket"], photos["astronaut"]])
    assert float(coffee @ rocket) < 0.8
    assert float(coffee @ astronaut) < float(coffee @ coffee) - 0.1
