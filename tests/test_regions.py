"""Search by a region: region vectors (shape, version, storage), their index, box checks, and
the engine, CLI and API finding a small object inside a larger photo."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image

import lookalike
from lookalike.cli.main import cli
from lookalike.describe.cnn import CnnDescriptor
from lookalike.describe.regions import RegionDescriptor, region_cells
from lookalike.errors import BadArgument, BadInput
from lookalike.search.engine import Lookalike
from lookalike.search.regions import RegionRows, clamp_box, crop_box, parse_box
from lookalike.serve.app import create_app
from lookalike.serve.keys import create_key
from lookalike.settings import get_settings

from .conftest import sample

# Where the cat's head lies in scikit-image's chelsea (451 x 300): the query's box.
CAT_BOX = (100, 20, 300, 220)
# The backgrounds of the scenes; the cat is pasted, small, into the first.
SCENES = ("coffee", "rocket", "astronaut", "motorcycle_left", "camera", "hubble_deep_field")
# Where, and how large, the cat goes in its scene (1200 x 800): ~9% of the photo's area.
PASTE_AT, PASTE_SIDE = (760, 420), 300


def _scene(name: str, with_cat: bool) -> Image.Image:
    """A 1200 x 800 photo of ``name``; with the cat's head pasted in (small) if asked."""
    scene = sample(name).convert("RGB").resize((1200, 800))
    if with_cat:
        cat = sample("chelsea").crop(CAT_BOX).resize((PASTE_SIDE, PASTE_SIDE))
        scene.paste(cat, PASTE_AT)
    return scene


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scenes as JPEG files; only ``coffee.jpg`` holds the (small) cat."""
    folder = tmp_path_factory.mktemp("scenes")
    for i, name in enumerate(SCENES):
        _scene(name, with_cat=i == 0).save(folder / f"{name}.jpg", quality=90)
    return folder


@pytest.fixture(scope="module")
def indexed(scenes: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lookalike]:
    """An engine with the scenes indexed (no faces), shared by the read-only tests."""
    with lookalike.open(tmp_path_factory.mktemp("data"), faces=False) as lk:
        report = lk.index([scenes])
        assert report.indexed == len(SCENES) and not report.failed
        yield lk


@pytest.fixture(scope="module")
def cat_query(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole chelsea photo as the query file (the box picks the cat's head)."""
    path = tmp_path_factory.mktemp("query") / "chelsea.jpg"
    sample("chelsea").save(path, quality=92)
    return path


# -- the region layout and descriptor ---------------------------------------------------


def test_region_cells_are_a_fixed_count_inside_the_map() -> None:
    for h, w in [(8, 8), (8, 12), (8, 20), (12, 8), (1, 1), (2, 3)]:
        cells = region_cells(h, w, (3,))
        assert len(cells) == 9
        assert all(0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w for y0, y1, x0, x1 in cells)
        # The corners of the map are covered by the first and last region.
        assert cells[0][0] == 0 and cells[0][2] == 0 and cells[-1][1] == h and cells[-1][3] == w
    assert len(region_cells(8, 12, (2, 3))) == 13


def test_region_descriptor_shape_version_and_boxes(tmp_path: Path) -> None:
    cnn = CnnDescriptor(get_settings(data_dir=tmp_path, cnn_precision="fp32"))
    regions = RegionDescriptor(cnn)
    assert regions.count == 9 and regions.blob_bytes == 9 * 1280
    assert regions.version == f"{cnn.version}/g3-gem3/u8/v1"
    assert RegionDescriptor(cnn, (2, 3)).version != regions.version
    with pytest.raises(BadArgument):
        RegionDescriptor(cnn, (0,))
    boxes = regions.boxes(1200, 800)
    assert len(boxes) == 9 and boxes[0][:2] == (0, 0) and boxes[-1][2:] == (1200, 800)
    images = [sample("chelsea"), sample("coffee").resize((300, 700))]
    rows, blobs = regions.embed_with_host(images)
    # The global rows are the cnn's own, from the same pass.
    np.testing.assert_allclose(rows, cnn.embed(images), atol=1e-5)
    assert blobs.dtype == np.uint8 and blobs.shape == (2, 9 * 1280)
    region_rows = regions.rows(blobs)
    assert region_rows.shape == (18, 1280)
    np.testing.assert_allclose(np.linalg.norm(region_rows, axis=1), 1.0, atol=1e-5)
    # uint8 codes keep the float regions' directions (cosine > 0.999).
    fmap = cnn.feature_maps(images[:1])[0][None]
    h, w = fmap.shape[2:]
    y0, y1, x0, x1 = region_cells(h, w, (3,))[4]
    exact = fmap[:, :, y0:y1, x0:x1] ** 3
    exact_row = exact.mean(axis=(2, 3)) ** (1 / 3)
    exact_row /= np.linalg.norm(exact_row)
    assert float(exact_row[0] @ region_rows[4]) > 0.999


# -- box checks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["", "1,2,3", "1,2,3,4,5", "a,b,c,d", "1.5,2,3,4", "10,10,5,20", "10,10,20,10"]
)
def test_malformed_inverted_or_empty_boxes_are_refused(text: str) -> None:
    with pytest.raises(BadInput, match="box"):
        parse_box(text)


def test_boxes_are_clamped_a_little_and_refused_outside() -> None:
    assert parse_box(" 1, 2 ,30,40") == (1, 2, 30, 40)
    assert clamp_box((-2, -1, 102, 100), 100, 100) == (0, 0, 100, 100)
    with pytest.raises(BadInput, match="outside"):
        clamp_box((0, 0, 150, 50), 100, 100)
    with pytest.raises(BadInput, match="outside"):
        clamp_box((200, 200, 300, 300), 100, 100)
    with pytest.raises(BadInput, match="no area"):
        clamp_box((100, 10, 101, 20), 100, 100)  # only the slack beyond the right edge


def test_crop_maps_original_pixels_onto_a_reduced_decode() -> None:
    reduced = Image.new("RGB", (100, 50))
    assert crop_box(reduced, (100, 40, 300, 100), 400, 200).size == (50, 15)


# -- storage, the region index ------------------------------------------------------------


def test_index_stores_regions_from_the_same_network_pass(
    scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    passes: list[int] = []
    original = CnnDescriptor._batches

    def counted(self: CnnDescriptor, images: Any) -> Any:
        passes.append(len(images))
        return original(self, images)

    monkeypatch.setattr(CnnDescriptor, "_batches", counted)
    with lookalike.open(tmp_path / "data", faces=False) as lk:
        lk.index([scenes])
        assert passes == [len(SCENES)]  # one pass for the global and the region vectors
        regions = lk.regions().regions
        ids, raw = lk.catalog.vectors(regions.name, regions.version)
        assert len(ids) == len(SCENES) and raw.shape == (len(SCENES), regions.blob_bytes)
        # An index run with regions off stores none; turning them on fills in the others'.
    with lookalike.open(tmp_path / "off", faces=False, regions=False) as lk:
        lk.index([scenes])
        assert len(lk.catalog.vector_ids(regions.name, regions.version)) == 0
    with lookalike.open(tmp_path / "off", faces=False) as lk:
        report = lk.index([scenes])
        assert report.unchanged == 0 and not report.failed
        assert len(lk.catalog.vector_ids(regions.name, regions.version)) == len(SCENES)


def test_region_rows_expand_blobs_under_their_own_ids(indexed: Lookalike) -> None:
    regions = indexed.regions().regions
    source = RegionRows(indexed.catalog, regions)
    image_ids = indexed.catalog.vector_ids(regions.name, regions.version)
    row_ids = source.vector_ids(regions.name, regions.version)
    assert len(row_ids) == 9 * len(image_ids)
    assert set((row_ids // 9).tolist()) == set(image_ids.tolist())
    wanted = [int(image_ids[1]) * 9 + 4, int(image_ids[2]) * 9]
    got_ids, raw = source.vectors_for(regions.name, regions.version, wanted)
    assert sorted(got_ids.tolist()) == sorted(wanted)
    rows = raw.view(np.float32)
    assert rows.shape == (2, 1280)
    batches = list(source.vector_batches(regions.name, regions.version, 20))
    assert sum(len(ids) for ids, _ in batches) == len(row_ids)
    index = indexed.regions().index.get(regions)
    assert len(index) == len(row_ids)


# -- the engine, the CLI, the API -------------------------------------------------------


def test_a_small_object_is_found_inside_a_larger_photo(
    indexed: Lookalike, scenes: Path, cat_query: Path
) -> None:
    res = indexed.search_one(cat_query, k=3, box=CAT_BOX)
    top = res.results[0]
    assert Path(top.path).name == "coffee.jpg"
    assert top.region is not None
    # The matched region holds most of the pasted cat.
    left, top_, right, bottom = top.region
    px, py = PASTE_AT
    overlap_w = min(right, px + PASTE_SIDE) - max(left, px)
    overlap_h = min(bottom, py + PASTE_SIDE) - max(top_, py)
    assert overlap_w * overlap_h > 0.5 * PASTE_SIDE**2
    assert set(res.timing_ms) == {"decode", "embed", "search"}


def test_global_scores_count_and_hits_keep_their_best_region(
    indexed: Lookalike, cat_query: Path
) -> None:
    alone = indexed.search_one(cat_query, k=3, box=CAT_BOX)  # the default: regions alone
    indexed.settings.regions_with_global = True
    try:
        both = indexed.search_one(cat_query, k=3, box=CAT_BOX)
    finally:
        indexed.settings.regions_with_global = False
    by_id = {hit.image_id: hit for hit in alone.results}
    shared = [hit for hit in both.results if hit.image_id in by_id]
    assert shared
    for hit in shared:
        assert hit.score >= by_id[hit.image_id].score - 1e-6  # the better of the two
        assert hit.region == by_id[hit.image_id].region  # still where it matched


@pytest.mark.parametrize("whitened", [True, False])
def test_the_region_index_is_whitened_as_the_cnn_index_is(
    scenes: Path, cat_query: Path, tmp_path: Path, whitened: bool
) -> None:
    # Six scenes give 54 region rows: whitened to 16-d from 5 images (45 rows) on.
    names = ["cnn"] if whitened else []
    with lookalike.open(
        tmp_path, faces=False, whiten_min_images=5, whiten_dim=16, whiten_descriptors=names
    ) as lk:
        lk.index([scenes])
        search = lk.regions()
        assert search.index.whitened(search.regions) is whitened
        width = search.index.get(search.regions).to_space(np.zeros((1, 1280), np.float32))
        assert width.shape == (1, 16 if whitened else 1280)
        top = lk.search_one(cat_query, k=1, box=CAT_BOX).results[0]
        assert Path(top.path).name == "coffee.jpg" and top.region is not None


def test_regions_are_whitened_from_as_many_images_as_the_cnn(scenes: Path, tmp_path: Path) -> None:
    # 54 region rows of six images: more rows than whiten_min_images, too few images.
    with lookalike.open(tmp_path, faces=False, whiten_min_images=7, whiten_dim=16) as lk:
        lk.index([scenes])
        search = lk.regions()
        assert not search.index.whitened(search.regions)


def test_box_errors_are_clear(indexed: Lookalike, cat_query: Path) -> None:
    with pytest.raises(BadInput, match="outside"):
        indexed.search_one(cat_query, box=(500, 0, 600, 100))  # chelsea is 451 wide
    with pytest.raises(BadInput, match="no area"):
        indexed.search_one(cat_query, box=(10, 10, 10, 50))
    with pytest.raises(BadArgument, match="cnn"):
        indexed.search_one(cat_query, box=CAT_BOX, descriptor="color")


def test_cli_search_with_a_box(indexed: Lookalike, cat_query: Path) -> None:
    data = str(indexed.settings.data_dir)
    box = ",".join(map(str, CAT_BOX))
    result = CliRunner().invoke(
        cli, ["search", str(cat_query), "--box", box, "-k", "2", "--json", "--data-dir", data]
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert Path(answer["results"][0]["path"]).name == "coffee.jpg"
    assert len(answer["results"][0]["region"]) == 4
    bad = CliRunner().invoke(
        cli, ["search", str(cat_query), "--box", "3,3,1,1", "--data-dir", data]
    )
    assert bad.exit_code == 2 and "no area" in bad.stderr
    outside = CliRunner().invoke(
        cli, ["search", str(cat_query), "--box", "900,0,1000,10", "--data-dir", data]
    )
    assert outside.exit_code != 0 and "outside" in outside.stderr


@pytest.fixture(scope="module")
def client(indexed: Lookalike) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The API over the indexed data folder, with a read key."""
    app = create_app(get_settings(data_dir=indexed.settings.data_dir, faces=False))
    with TestClient(app) as c:
        store = c.app.state.engine.catalog.service  # type: ignore[attr-defined]
        yield c, {"X-API-Key": create_key(store, "read", "read")[0]}


def _post(client: tuple[TestClient, dict[str, str]], data: bytes, **form: str) -> Any:
    c, headers = client
    files = {"file": ("chelsea.jpg", data, "image/jpeg")}
    return c.post("/v1/search", files=files, data=form, headers=headers)


def test_api_search_with_a_box(client: tuple[TestClient, dict[str, str]], cat_query: Path) -> None:
    data = cat_query.read_bytes()
    r = _post(client, data, box=",".join(map(str, CAT_BOX)), k="2")
    assert r.status_code == 200, r.text
    first = r.json()["results"][0]
    assert Path(first["path"]).name == "coffee.jpg" and len(first["region"]) == 4
    plain = _post(client, data, k="2").json()["results"][0]
    assert plain["region"] is None
    for box in ("1,2,3", "a,b,c,d", "5,5,1,1", "0,0,0,0", "900,0,1000,10"):
        r = _post(client, data, box=box)
        assert r.status_code == 422, (box, r.text)


@pytest.mark.redis
def test_box_searches_of_one_query_are_cached_apart(
    tmp_path: Path, scenes: Path, cat_query: Path, redis_url: str
) -> None:
    with lookalike.open(tmp_path / "data", faces=False, cache_url=redis_url) as lk:
        lk.index([scenes])
        data = cat_query.read_bytes()
        first = lk.search_one(data, k=2, box=CAT_BOX)
        other = lk.search_one(data, k=2, box=(0, 0, 451, 300))
        again = lk.search_one(data, k=2, box=CAT_BOX)
    assert [h.image_id for h in first.results] == [h.image_id for h in again.results]
    assert first.results[0].score != other.results[0].score


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def test_the_box_is_in_upright_pixels_of_an_exif_rotated_query(
    indexed: Lookalike, tmp_path: Path
) -> None:
    # The file is stored sideways with orientation 6 (turn 90 degrees clockwise to view):
    # the box is given in the upright photo's pixels.
    upright = sample("chelsea")
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "sideways.jpg"
    stored.save(path, quality=92, exif=exif)
    res = indexed.search_one(path, k=1, box=CAT_BOX)
    assert Path(res.results[0].path).name == "coffee.jpg"
    with pytest.raises(BadInput, match="outside"):
        indexed.search_one(path, box=(0, 0, 300, 451))  # the stored file's sides


@pytest.mark.postgres
def test_regions_are_stored_and_searched_on_a_shared_catalog(
    postgres_catalog_url: str, scenes: Path, cat_query: Path, tmp_path: Path
) -> None:
    with lookalike.open(tmp_path / "data", faces=False, catalog_url=postgres_catalog_url) as lk:
        lk.index([scenes])
        regions = lk.regions().regions
        _, raw = lk.catalog.vectors(regions.name, regions.version)
        assert raw.shape == (len(SCENES), regions.blob_bytes)
        res = lk.search_one(cat_query, k=1, box=CAT_BOX)
    assert Path(res.results[0].path).name == "coffee.jpg" and res.results[0].region is not None
