"""bench/faces_detect.py's scene composer and matcher, on synthetic images (no evaluation
data): pasted faces lie where their truth boxes say, and the scoring counts a perfect
detector as perfect and a shifted one as wrong."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

BENCH = Path(__file__).resolve().parents[1] / "bench"
GROUND, FACE = 40, 255  # grey levels of the background and of the synthetic faces


@pytest.fixture(scope="module")
def fd() -> Iterator[ModuleType]:
    """bench/faces_detect.py, loaded without leaving bench/ on sys.path (its http.py would
    shadow the standard library's) or its helper modules under their plain names."""
    saved = list(sys.path)
    spec = importlib.util.spec_from_file_location("bench_faces_detect", BENCH / "faces_detect.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_faces_detect"] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
        for name in ("common", "sections", "faces_compare"):
            sys.modules.pop(name, None)
    yield module
    sys.modules.pop("bench_faces_detect", None)


def disc_source(fd: ModuleType) -> Any:
    """A source "face": a white disc filling its 100 px box, on black."""
    image = Image.new("RGB", (300, 300), (0, 0, 0))
    ImageDraw.Draw(image).ellipse((100, 100, 199, 199), fill=(FACE, FACE, FACE))
    return fd.source_from("disc", image, (100.0, 100.0, 200.0, 200.0), 1000.0)


def compose(fd: ModuleType, index: int, seed: int) -> Any:
    background = Image.new("RGB", (512, 384), (GROUND, GROUND, GROUND))
    return fd.compose(index, seed, [disc_source(fd)], background, "flat")


def test_pasted_faces_lie_in_their_boxes(fd: ModuleType) -> None:
    """Each truth box holds its pasted face (bright at its core), inside the canvas, clear
    of the others; away from every face the background is untouched."""
    untouched = 0
    for index in range(3):
        scene = compose(fd, index, seed=1)
        pixels = np.asarray(scene.image().convert("L"), dtype=np.float32)
        height, width = pixels.shape
        assert width == fd.CANVAS_WIDTH
        assert 1 <= len(scene.faces) <= fd.FACES_PER_CANVAS[1]
        touched = np.zeros_like(pixels, dtype=bool)
        for face in scene.faces:
            left, top, right, bottom = face.box
            assert left >= 0 and top >= 0 and right <= width and bottom <= height
            assert fd.SMALLEST_FACE <= face.size <= fd.LARGEST_FACE
            assert abs(face.angle) <= fd.MAX_ANGLE
            x0, y0, x1, y1 = (round(v) for v in fd.scaled_box(face.box, 0.5))
            assert pixels[y0:y1, x0:x1].mean() > 200, face
            x0, y0, x1, y1 = (max(0, round(v)) for v in fd.scaled_box(face.box, 2.0))
            touched[y0:y1, x0:x1] = True
        assert np.all(np.abs(pixels[~touched] - GROUND) < 8)
        untouched += int((~touched).sum())
        boxes = [f.box for f in scene.faces]
        assert all(fd.iou(a, b) == 0 for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    assert untouched > 10_000


def test_scenes_are_deterministic(fd: ModuleType) -> None:
    """The same seed and index make the same canvas; another seed, another one."""
    first, again = compose(fd, 2, seed=7), compose(fd, 2, seed=7)
    assert first.jpeg == again.jpeg and first.faces == again.faces
    assert compose(fd, 2, seed=8).jpeg != first.jpeg


def truths(fd: ModuleType) -> list[Any]:
    """Four faces, one per size bucket, in a row."""
    out = []
    x = 0.0
    for size in (30.0, 60.0, 120.0, 250.0):
        out.append(fd.Truth((x, 10.0, x + size, 10.0 + size), 0.0, "t"))
        x += size + 50
    return out


def test_perfect_detector_scores_perfectly(fd: ModuleType) -> None:
    faces = truths(fd)
    score = fd.Score()
    assert score.add(faces, [f.box for f in faces], 0.1) == 4
    assert [score.recall(lo, hi) for lo, hi in fd.BUCKETS] == [1.0] * 4
    assert score.false_per_photo() == 0.0


def test_shifted_and_duplicate_detections_are_false(fd: ModuleType) -> None:
    """A box one face width off finds nothing and counts as a false detection; so does a
    second box on a face already found; a box a quarter width off still finds it."""
    faces = truths(fd)
    shifted = [(f.box[0] + f.size, f.box[1], f.box[2] + f.size, f.box[3]) for f in faces]
    score = fd.Score()
    assert score.add(faces, shifted, 0.1) == 0
    assert score.recall() == 0.0 and score.false == 4
    near = faces[2].box
    quarter = (near[0] + 30, near[1], near[2] + 30, near[3])
    score = fd.Score()
    assert score.add(faces, [near, near, quarter], 0.1) == 1
    assert score.false == 2
    assert fd.match([near], [quarter]) == [True]


def test_one_detection_finds_one_face(fd: ModuleType) -> None:
    """A box straddling two faces matches at most one of them."""
    a, b = (0.0, 0.0, 100.0, 100.0), (60.0, 0.0, 160.0, 100.0)
    between = (30.0, 0.0, 130.0, 100.0)
    assert sorted(fd.match([a, b], [between])) == [False, True]


def test_unknown_detector_is_refused(fd: ModuleType) -> None:
    with pytest.raises(ValueError, match="unknown detector"):
        fd.chosen_detectors("hog,nope", None)
    assert list(fd.chosen_detectors("hog,face_recognition", None)) == ["hog"]


def test_box_cache_keeps_boxes_until_the_file_changes(fd: ModuleType, tmp_path: Path) -> None:
    """Boxes found once are read back by a later run; a changed file is searched again."""
    photo, store = tmp_path / "photo.jpg", tmp_path / "out" / "boxes.json"
    photo.write_bytes(b"one")
    calls: list[int] = []

    def find() -> list[tuple[float, float, float, float]]:
        calls.append(1)
        return [(1.0, 2.0, 3.0, 4.0)]

    first = fd.BoxCache(store)
    assert first.get(photo, "m", find) == [(1.0, 2.0, 3.0, 4.0)]
    first.save()
    again = fd.BoxCache(store)
    assert again.get(photo, "m", find) == [(1.0, 2.0, 3.0, 4.0)] and len(calls) == 1
    again.get(photo, "another method", find)
    photo.write_bytes(b"two, longer")
    again.get(photo, "m", find)
    assert len(calls) == 3
