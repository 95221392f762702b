"""dlib's MMOD face detector converted to ONNX (lookalike.models.dlib_mmod) and the pyramid
that runs it (lookalike.faces.mmod), checked against dlib's own detector."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from lookalike.errors import ModelError
from lookalike.faces import mmod
from lookalike.faces import models as face_models
from lookalike.faces.embed import Encoder
from lookalike.models import dlib_mmod, dlib_resnet

from .conftest import sample


@pytest.fixture(scope="module")
def dat() -> bytes:
    return dlib_mmod.weights_path().read_bytes()


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Encoder:
    return Encoder(tmp_path_factory.mktemp("models"), 1)


@pytest.fixture(scope="module")
def dlib_cnn() -> Any:
    with face_models.CNN_DETECTOR.use() as cnn:
        return cnn


def astronaut() -> Image.Image:
    return sample("astronaut")


def test_reads_the_shipped_detector(dat: bytes) -> None:
    net = dlib_mmod.read_net(dat)
    assert net.window == (80, 80)
    assert 0 < net.nms_iou < 1 and net.nms_covered == 1.0
    assert net.mean == pytest.approx((122.782, 117.001, 104.298), abs=1e-3)
    assert (net.stride, net.offset) == (8, 14)
    assert len(net.layers) == 19


def test_scores_are_dlibs_own(encoder: Encoder, dlib_cnn: Any) -> None:
    """Where dlib finds a face on the top level of its pyramid (an 80 px box: the window
    unscaled), the graph run on that level alone, in dlib's black border, gives the same
    score at the cell whose window is dlib's box."""
    image = astronaut().resize((410, 410), Image.Resampling.BILINEAR)  # face ~80 px
    pixels = np.asarray(image)
    top = [d for d in dlib_cnn(pixels, 0) if d.rect.width() == 80]
    assert top, "dlib finds the face on its top level"
    canvas = np.zeros((1, 410 + 2 * mmod.BORDER, 410 + 2 * mmod.BORDER, 3), dtype=np.uint8)
    canvas[0, mmod.BORDER : -mmod.BORDER, mmod.BORDER : -mmod.BORDER] = pixels
    with encoder.detector_session().use() as session:
        (scores,) = session.run(["scores"], {"image": canvas})
    for found in top:
        rect = found.rect
        cx = (rect.left() + rect.right()) / 2 + mmod.BORDER
        cy = (rect.top() + rect.bottom()) / 2 + mmod.BORDER
        col, row = round((cx - 14) / 8), round((cy - 14) / 8)
        assert scores[0, 0, row, col] == pytest.approx(found.confidence, abs=1e-4)


@pytest.mark.parametrize("size", [512, 700, 900])
@pytest.mark.parametrize(("rate", "overlap"), [(5 / 6, 0.7), (mmod.RATE, 0.65)])
def test_detector_finds_what_dlib_finds(
    encoder: Encoder,
    dlib_cnn: Any,
    monkeypatch: pytest.MonkeyPatch,
    size: int,
    rate: float,
    overlap: float,
) -> None:
    """The whole detector (our pyramid, packing, mapping, suppression and box sizing)
    against dlib's with no upsampling: the same faces, scores close, boxes overlapping, with
    dlib's own 5/6 step between levels and with the default's coarser one (a face on the
    top level, with no level above to size it between, keeps the window's size)."""
    monkeypatch.setattr(mmod, "RATE", rate)
    image = astronaut().resize((size, size), Image.Resampling.BILINEAR)
    theirs = [(d.rect, d.confidence) for d in dlib_cnn(np.asarray(image), 0)]
    ours = mmod.detect(
        image,
        min_face=80,
        max_side=size,
        threshold=0.0,
        session=encoder.detector_session(),
    )
    assert len(ours) == len(theirs) == 1
    (box, score), (rect, confidence) = ours[0], theirs[0]
    dlib_box = (rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1)
    assert _iou(box, dlib_box) > overlap
    assert score == pytest.approx(confidence, abs=0.1)


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_pyramid_starts_at_the_smallest_face_and_is_bounded() -> None:
    levels = mmod.plan_levels(1000, 600, min_face=40, max_side=4000)
    assert (levels[0].width, levels[0].height) == (2000, 1200)  # a 40 px face made 80 px
    for upper, lower in itertools.pairwise(levels):
        assert lower.scale == pytest.approx(upper.scale * mmod.RATE)
    assert min(levels[-1].width, levels[-1].height) >= 80  # each level can hold a window
    # The long side is capped: a 100 MP panorama is looked at 1280 px wide.
    capped = mmod.plan_levels(20_000, 5_000, min_face=20, max_side=1280)
    assert (capped[0].width, capped[0].height) == (1280, 320)
    # Packed levels never overlap and keep the gap between them.
    for i, a in enumerate(levels):
        assert a.x >= mmod.BORDER and a.y >= mmod.BORDER
        for b in levels[i + 1 :]:
            apart_x = a.x + a.width + mmod.GAP <= b.x or b.x + b.width + mmod.GAP <= a.x
            apart_y = a.y + a.height + mmod.GAP <= b.y or b.y + b.height + mmod.GAP <= a.y
            assert apart_x or apart_y
    # The packing wastes little: the levels fill most of the canvas.
    width = max(v.x + v.width for v in levels) + mmod.BORDER
    height = max(v.y + v.height for v in levels) + mmod.BORDER
    assert sum(v.width * v.height for v in levels) / (width * height) > 0.7


def test_images_too_small_for_a_window_have_no_levels() -> None:
    assert mmod.plan_levels(1, 500, min_face=40, max_side=1280) == []
    assert mmod.plan_levels(30, 30, min_face=80, max_side=1280) == []


def test_suppression_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = [
        ((0.0, 0.0, 80.0, 80.0), 0.5),
        ((4.0, 4.0, 84.0, 84.0), 0.9),
        ((200.0, 0.0, 280.0, 80.0), 0.2),
    ]
    kept = mmod.suppress(boxes, 0.34, 1.0)
    assert kept == [boxes[1], boxes[2]]
    # A small box inside a large one is covered by it entirely: suppressed too.
    nested = [((0.0, 0.0, 200.0, 200.0), 0.9), ((50.0, 50.0, 100.0, 100.0), 0.8)]
    assert mmod.suppress(nested, 0.34, 0.99) == [nested[0]]


def test_other_files_are_refused(dat: bytes) -> None:
    with pytest.raises(ModelError, match="ends early"):
        dlib_mmod.read_net(dat[: len(dat) // 2])
    with pytest.raises(ModelError, match="bytes left"):
        dlib_mmod.read_net(dat + b"\x00")
    with pytest.raises(ModelError, match="loss_mmod_"):
        dlib_mmod.load_net(dlib_resnet.weights_path())
    with pytest.raises(ModelError, match="loss_metric"):
        dlib_resnet.read_net(dat)


def test_a_different_architecture_is_refused(dat: bytes) -> None:
    net = dlib_mmod.read_net(dat)
    shorter = dlib_mmod.MmodNet(
        net.window, net.nms_iou, net.nms_covered, net.mean, net.layers[:3] + net.layers[6:]
    )
    with pytest.raises(ModelError, match="not dlib's MMOD"):
        dlib_mmod.build_onnx(shorter)


def test_converted_model_is_cached(tmp_path: Path) -> None:
    first = dlib_mmod.onnx_model_path(tmp_path)
    assert first.is_file() and first.name.startswith("dlib-mmod-")
    assert dlib_mmod.onnx_model_path(tmp_path) == first
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary left


def test_large_canvases_are_scored_in_bands_with_the_same_scores(encoder: Encoder) -> None:
    """A canvas over the band size is run in bands (bounded memory): the score map equals
    one run over the whole canvas."""
    image = astronaut().resize((300, 700), Image.Resampling.BILINEAR)
    levels = mmod.plan_levels(300, 700, min_face=60, max_side=900)
    canvas = mmod._canvas(image, levels)
    with encoder.detector_session().use() as session:
        whole = mmod.score_canvas(canvas, session, band_pixels=10**9)
        banded = mmod.score_canvas(canvas, session, band_pixels=canvas.shape[2] * 64)
    assert banded.shape == whole.shape
    np.testing.assert_allclose(banded, whole, atol=1e-4)
