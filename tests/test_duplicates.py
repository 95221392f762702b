"""Near-duplicates verified on the pixels: edited copies of one photo (``near``) apart from
other shots of one scene (``scenes``); files that cannot be read; bounded work."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance

import lookalike
from lookalike.decode import sha256_hex
from lookalike.search.duplicates import Candidates, DuplicateGroup, bounded, verify_all
from lookalike.search.engine import Lookalike
from lookalike.search.verify import (
    FeatureCache,
    Kind,
    VerifyConfig,
    grey_copy,
    image_features,
    match_points,
    mirrored,
    verify_pair,
)
from lookalike.store.base import ImageRow

from .conftest import sample

CONFIG = VerifyConfig()


def _caption(image: Image.Image) -> Image.Image:
    out = image.copy()
    bar = round(0.15 * image.height)
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, image.height - bar, image.width, image.height), fill=(0, 0, 0))
    draw.text((8, image.height - bar + 4), "(c) 2024 Photo News", fill=(255, 255, 255))
    return out


def edited_copies(image: Image.Image) -> dict[str, Image.Image]:
    """Copies of ``image`` that are the same photo: the edits ``near`` must keep."""
    w, h = image.size
    return {
        "crop": image.crop((w * 15 // 100, h * 15 // 100, w * 85 // 100, h * 85 // 100)),
        "recolour": ImageEnhance.Contrast(ImageEnhance.Brightness(image).enhance(1.3)).enhance(0.6),
        "caption": _caption(image),
        "rotate90": image.transpose(Image.Transpose.ROTATE_90),
        "mirror": image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "small": image.resize((w // 2, h // 2), Image.Resampling.LANCZOS),
        # Resized to another aspect ratio (a thumbnail squeezed to a fixed box).
        "stretched": image.resize((w * 2 // 5, h * 3 // 5), Image.Resampling.BILINEAR),
    }


def another_shot(image: Image.Image) -> Image.Image:
    """The scene of ``image`` seen from a little to the side, with one thing moved: the
    camera turned (a perspective change, not a similarity) and a patch moved elsewhere."""
    pixels = np.asarray(image)
    h, w = pixels.shape[:2]
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    moved = np.float32([[0.04 * w, 0.02 * h], [0.97 * w, 0.06 * h], [w, 0.93 * h], [0.02 * w, h]])
    turned = cv2.warpPerspective(
        pixels, cv2.getPerspectiveTransform(corners, moved), (w, h), borderMode=cv2.BORDER_REFLECT
    )
    # Someone walked: a block of the scene now stands somewhere else.
    bh, bw = h // 4, w // 4
    block = turned[h // 8 : h // 8 + bh, w // 8 : w // 8 + bw].copy()
    turned[h // 2 : h // 2 + bh, w // 2 : w // 2 + bw] = block
    return Image.fromarray(turned)


def _fit(grey: np.ndarray) -> np.ndarray:
    h, w = grey.shape
    scale = CONFIG.side / max(h, w)
    size = (round(w * scale), round(h * scale))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def _verdict(a: Image.Image, b: Image.Image) -> Kind:
    fa = image_features(_fit(np.asarray(a.convert("L"))), CONFIG)
    fb = image_features(_fit(np.asarray(b.convert("L"))), CONFIG)
    return verify_pair(fa, fb, lambda: mirrored(fb, CONFIG), CONFIG).kind


@pytest.mark.parametrize("edit", sorted(edited_copies(sample("coffee"))))
def test_an_edited_copy_is_a_copy(edit: str) -> None:
    photo = sample("coffee")
    assert _verdict(photo, edited_copies(photo)[edit]) is Kind.COPY


def test_binary_features_match_as_opencvs_matcher_with_the_ratio_test() -> None:
    photo = sample("astronaut")
    fa = image_features(_fit(np.asarray(photo.convert("L"))), CONFIG)
    fb = image_features(_fit(np.asarray(another_shot(photo).convert("L"))), CONFIG)
    knn = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(fa.descriptors, fb.descriptors, 2)
    good = [m for m, n in knn if m.distance < CONFIG.ratio * n.distance]
    pa, pb = match_points(fa, fb, CONFIG.ratio)
    assert len(good) > 50
    assert np.array_equal(pa, fa.points[[m.queryIdx for m in good]])
    assert np.array_equal(pb, fb.points[[m.trainIdx for m in good]])


@pytest.mark.parametrize("name", ["coffee", "astronaut", "chelsea"])
def test_another_shot_of_the_scene_is_not_a_copy(name: str) -> None:
    photo = sample(name)
    assert _verdict(photo, another_shot(photo)) is Kind.SCENE


def test_a_stereo_pair_is_not_a_copy() -> None:
    """scikit-image's motorcycle, seen by the left and the right camera: real parallax."""
    assert _verdict(sample("motorcycle_left"), sample("motorcycle_right")) is Kind.SCENE


# -- the engine: near, scenes, unverified ------------------------------------------------


@pytest.fixture(scope="module")
def album(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lookalike]:
    """A photo with its edited copies, another shot of its scene and an unrelated photo,
    indexed (the tests only read it)."""
    folder = tmp_path_factory.mktemp("album")
    photo = sample("coffee")
    photo.save(folder / "coffee.png")
    for edit, image in edited_copies(photo).items():
        image.save(folder / f"coffee-{edit}.png")
    another_shot(photo).save(folder / "coffee-other-shot.png")
    sample("rocket").save(folder / "rocket.jpg")
    with lookalike.open(tmp_path_factory.mktemp("album-data")) as lk:
        lk.index([folder], faces=False)
        yield lk


def _names(groups: list[DuplicateGroup]) -> list[set[str]]:
    return [{Path(r.paths[0]).name for r in g.images} for g in groups]


def test_copies_are_near_and_another_shot_is_a_scene(album: Lookalike) -> None:
    report = album.duplicates(threshold=0.5)
    copies = {"coffee.png"} | {f"coffee-{e}.png" for e in edited_copies(sample("coffee"))}
    assert _names(report.near) == [copies]
    assert any("coffee-other-shot.png" in g for g in _names(report.scenes))
    assert all("rocket.jpg" not in g for g in _names(report.near) + _names(report.scenes))
    assert report.unverified == []
    # Features were computed once per image read, however many pairs it was in.
    assert report.images_read <= len(copies) + 2 < report.pairs_verified


def test_without_verification_everything_alike_is_near(album: Lookalike) -> None:
    report = album.duplicates(threshold=0.5, verify=False)
    assert report.scenes == [] and report.pairs_verified == 0 and report.images_read == 0
    assert any({"coffee.png", "coffee-other-shot.png"} <= g for g in _names(report.near))


def test_a_file_gone_or_changed_is_unverified_not_near(engine: Lookalike, tmp_path: Path) -> None:
    folder = tmp_path / "album"
    folder.mkdir()
    photo = sample("chelsea")
    photo.save(folder / "cat.png")
    edited_copies(photo)["crop"].save(folder / "cat-crop.png")
    edited_copies(photo)["caption"].save(folder / "cat-caption.png")
    engine.index([folder], faces=False)
    (folder / "cat-crop.png").unlink()
    # Other bytes under the same name: not the image the catalog knows.
    sample("coffee").save(folder / "cat-caption.png")
    report = engine.duplicates(threshold=0.5)
    assert report.near == []
    assert _names(report.unverified) == [{"cat.png", "cat-crop.png", "cat-caption.png"}]


def test_work_is_bounded_per_image() -> None:
    # Image 1 is alike to five others; at most two pairs each, the best scored kept.
    scores = {(1, k): 0.9 - k / 100 for k in range(2, 7)} | {(2, 3): 0.95}
    kept = bounded(Candidates(scores, set(scores)), per_image=2)
    assert kept == [(1, 2), (1, 3), (2, 3)]
    assert max(Counter(i for pair in kept for i in pair).values()) <= 2


def _sample_rows(tmp_path: Path, names: tuple[str, ...]) -> dict[int, ImageRow]:
    rows = {}
    for i, name in enumerate(names, start=1):
        path = tmp_path / f"{name}.png"
        sample(name).save(path)
        data = path.read_bytes()
        rows[i] = ImageRow(i, sha256_hex(data), 1, 1, "PNG", len(data), (str(path),))
    return rows


def test_at_most_capacity_images_are_held_and_a_dropped_one_is_read_again(
    tmp_path: Path,
) -> None:
    rows = _sample_rows(tmp_path, ("coffee", "chelsea", "rocket"))
    pairs = [(1, 2), (1, 3), (2, 3)]
    everything = verify_all(pairs, rows, FeatureCache(CONFIG, max_pixels=10**8))
    small = FeatureCache(CONFIG, max_pixels=10**8, capacity=1)
    assert verify_all(pairs, rows, small) == everything
    assert small.computed > 3  # 1 was dropped for 2, then read again for (1, 3)
    first = small.get(rows[1])
    assert small.get(rows[2]) is not None and small.held == 1
    again = small.get(rows[1])
    assert again is not first and again is not None and first is not None
    assert np.array_equal(again.descriptors, first.descriptors)


def test_features_are_read_once_and_released(tmp_path: Path) -> None:
    rows = _sample_rows(tmp_path, ("coffee", "chelsea", "rocket"))
    cache = FeatureCache(CONFIG, max_pixels=10**8)
    verdicts = verify_all([(1, 2), (1, 3), (2, 3)], rows, cache)
    assert cache.computed == 3 and cache.held == 0
    assert {v.kind for v in verdicts.values()} == {Kind.SCENE}


def test_threads_verify_as_one_does_reading_each_image_once(tmp_path: Path) -> None:
    rows = _sample_rows(tmp_path, ("coffee", "chelsea", "rocket", "astronaut"))
    # Image 5 is a caption-edited copy of image 1: one pair of the six is a copy.
    copy = tmp_path / "copy.png"
    _caption(sample("coffee")).save(copy)
    data = copy.read_bytes()
    rows[5] = ImageRow(5, sha256_hex(data), 1, 1, "PNG", len(data), (str(copy),))
    pairs = [(a, b) for a in rows for b in rows if a < b]
    alone = verify_all(pairs, rows, FeatureCache(CONFIG, max_pixels=10**8))
    shared = FeatureCache(CONFIG, max_pixels=10**8, workers=4)
    together = verify_all(pairs, rows, shared)
    assert together == alone
    assert [p for p, v in together.items() if v.kind is Kind.COPY] == [(1, 5)]
    assert shared.computed == len(rows) and shared.held == 0


def test_a_large_image_is_read_at_a_bounded_size(tmp_path: Path) -> None:
    big = sample("coffee").resize((6000, 4000))
    path = tmp_path / "big.jpg"
    big.save(path, quality=80)
    grey = grey_copy(path.read_bytes(), str(path), 640, max_pixels=10**8, gate=None)
    assert max(grey.shape) == 640
