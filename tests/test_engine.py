"""The engine end to end on real photos: index, search, duplicates, remove, consistency."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lookalike
from lookalike.answers import SearchAnswer
from lookalike.errors import BadInput, NotFound
from lookalike.search.engine import Lookalike
from lookalike.settings import Settings

from .conftest import sample, variants


def test_index_then_search_finds_itself_first(engine: Lookalike, photo_dir: Path) -> None:
    report = engine.index([photo_dir])
    assert report.indexed == 6 and not report.failed
    (res,) = engine.search([str(photo_dir / "chelsea.png")], k=3)
    assert res.results[0].path == str(photo_dir / "chelsea.png")
    assert res.results[0].score > 0.99
    assert res.results[0].score >= res.results[1].score >= res.results[2].score
    assert set(res.timing_ms) == {"decode", "embed", "search"}


@pytest.mark.parametrize("descriptor", ["cnn", "color", "phash"])
def test_every_descriptor_ranks_a_resized_copy_first(
    engine: Lookalike, photo_dir: Path, tmp_path: Path, descriptor: str
) -> None:
    engine.index([photo_dir])
    query = tmp_path / "query.jpg"
    sample("coffee").resize((200, 133)).save(query, quality=80)
    (res,) = engine.search([query], k=6, descriptor=descriptor)
    assert Path(res.results[0].path).stem == "coffee"
    assert len(res.results) == 6


def test_rotated_and_mirrored_queries_find_their_original(
    engine: Lookalike, photo_dir: Path
) -> None:
    engine.index([photo_dir])
    for kind, image in variants(sample("astronaut")).items():
        (res,) = engine.search([image], k=1)
        assert Path(res.results[0].path).stem == "astronaut", kind


def test_rerun_skips_unchanged_reads_changed_drops_gone(
    engine: Lookalike, photo_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "album"
    shutil.copytree(photo_dir, folder)
    assert engine.index([folder]).indexed == 6
    again = engine.index([folder])
    assert (again.indexed, again.unchanged, again.removed) == (0, 6, 0)
    (folder / "rocket.jpg").unlink()
    sample("camera").save(folder / "chelsea.png")  # same path, new content
    third = engine.index([folder])
    assert (third.indexed, third.unchanged, third.removed) == (1, 4, 1)
    assert engine.catalog.count_images() == 5
    (res,) = engine.search([sample("camera")], k=1)
    assert res.results[0].path == str(folder / "chelsea.png")


def test_exact_duplicates_are_one_image_with_two_paths(
    engine: Lookalike, photo_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "album"
    shutil.copytree(photo_dir, folder)
    shutil.copy(folder / "coffee.png", folder / "coffee copy.png")
    report = engine.index([folder])
    assert (report.indexed, report.duplicates) == (6, 1)
    dups = engine.duplicates()
    assert [sorted(Path(p).name for p in row.paths) for row in dups.exact] == [
        ["coffee copy.png", "coffee.png"]
    ]


def test_near_duplicates_are_grouped_with_their_original(
    engine: Lookalike, photo_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "album"
    shutil.copytree(photo_dir, folder)
    for kind, image in variants(sample("chelsea")).items():
        image.save(folder / f"cat-{kind}.jpg", quality=85)
    engine.index([folder])
    groups = engine.duplicates().near
    assert len(groups) == 1
    names = {Path(r.paths[0]).name for r in groups[0].images}
    assert names == {"chelsea.png"} | {f"cat-{k}.jpg" for k in variants(sample("chelsea"))}


def test_bad_files_are_reported_and_skipped(engine: Lookalike, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    sample("coffee").save(folder / "good.jpg")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("hello, not a picture")
    whole = (folder / "good.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    report = engine.index([folder])
    assert report.indexed == 1
    reasons = {Path(f.path).name: f.error for f in report.failed}
    assert set(reasons) == {"empty.jpg", "text.jpg", "truncated.jpg"}
    assert "empty" in reasons["empty.jpg"]
    assert engine.catalog.count_images() == 1


def test_missing_path_is_reported(engine: Lookalike, tmp_path: Path) -> None:
    report = engine.index([tmp_path / "nope"])
    assert report.failed and "No such file" in report.failed[0].error


def test_remove_drops_from_catalog_and_index(engine: Lookalike, photo_dir: Path) -> None:
    engine.index([photo_dir])
    assert engine.remove([photo_dir / "rocket.jpg"]) == 1
    (res,) = engine.search([str(photo_dir / "rocket.jpg")], k=10)
    assert all(Path(h.path).name != "rocket.jpg" for h in res.results)
    assert len(res.results) == 5
    with pytest.raises(NotFound):
        engine.remove([photo_dir / "rocket.jpg"])


def test_k_must_be_positive(engine: Lookalike) -> None:
    with pytest.raises(BadInput):
        engine.search([sample("coffee")], k=0)


def test_undecodable_query_is_an_error_result(engine: Lookalike, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    (res,) = engine.search([bad], k=3)
    assert res.error is not None and "bad.jpg" in res.error


def test_index_and_catalog_agree_after_reopen(photo_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with lookalike.open(data) as lk:
        lk.index([photo_dir])
    # Simulate a crash between catalog commit and index save: delete the index files.
    for f in (data / "index").iterdir():
        f.unlink()
    with lookalike.open(data) as lk:
        (res,) = lk.search([sample("rocket")], k=1)
        assert Path(res.results[0].path).stem == "rocket"
        counts = lk.reindex()
        assert counts.pop("face") == 1  # the astronaut
        assert counts.pop("cnn-regions") == 6 * 9  # nine regions per image
        assert sorted(counts.values()) == [6, 6, 6]


def test_vectors_are_unit_length(engine: Lookalike, photo_dir: Path) -> None:
    engine.index([photo_dir])
    _ids, raw = engine.catalog.vectors("cnn", engine.descriptor("cnn").version)
    rows = raw.view(np.float32)
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-4)


def test_phash_query_finds_rotated_and_mirrored_copies(engine: Lookalike, photo_dir: Path) -> None:
    engine.index([photo_dir])
    image = sample("chelsea")
    for copy in (
        image.transpose(Image.Transpose.ROTATE_90),
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    ):
        (res,) = engine.search([copy], k=1, descriptor="phash")
        assert Path(res.results[0].path).stem == "chelsea"
        assert res.results[0].score > 0.85


def test_search_after_model_change_says_what_to_do(photo_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with lookalike.open(data) as lk:
        lk.index([photo_dir])
    with lookalike.open(data, cnn_precision="fp32") as lk:  # another cnn version
        with pytest.raises(NotFound, match="run `lookalike index`"):
            lk.search_one(sample("coffee"))
        again = lk.index([photo_dir])  # unchanged files, but their vectors are outdated
        assert (again.indexed, again.unchanged) == (6, 0)
        assert lk.catalog.count_images() == 6
        (res,) = lk.search([sample("coffee")], k=1)
        assert Path(res.results[0].path).stem == "coffee"


def test_within_refuses_files_linked_from_outside_and_the_data_folder_is_skipped(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    sample("coffee").save(outside / "secret.png")
    sample("rocket").save(root / "rocket.jpg")
    (root / "linked.png").symlink_to(outside / "secret.png")
    with lookalike.open(root / "data", faces=False) as lk:  # the data folder inside the root
        report = lk.index([root], progress=False, within=[root])
        assert [Path(f.path).name for f in report.failed] == ["linked.png"]
        assert "outside the allowed folders" in report.failed[0].error
        assert sorted(Path(p).name for p in lk.catalog.all_paths()) == ["rocket.jpg"]
        # Without ``within`` (the CLI), a link is followed as before.
        report = lk.index([root], progress=False)
        assert not report.failed and len(lk.catalog.all_paths()) == 2


@pytest.mark.parametrize("faces", [True, False])
def test_a_query_identical_to_an_indexed_jpeg_scores_one_on_every_descriptor(
    tmp_path: Path, faces: bool
) -> None:
    # Large enough that JPEG draft decoding reduces it, by another factor when faces are
    # looked for (decoded at face_decode_side) than for the descriptors alone.
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = folder / "big.jpg"
    sample("astronaut").resize((1200, 1200)).save(photo, quality=90)
    sample("coffee").save(folder / "other.jpg", quality=90)
    with lookalike.open(tmp_path / "data") as lk:
        lk.index([folder], faces=faces)
        for descriptor in ("cnn", "color", "phash"):
            (res,) = lk.search([photo], k=2, descriptor=descriptor)
            top = res.results[0]
            assert top.path == str(photo)
            assert top.score == pytest.approx(1.0, abs=1e-5), descriptor


def test_file_names_that_are_not_utf8_are_indexed_and_shown_escaped(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    raw = os.fsencode(folder) + b"/caf\xe9-\xff.jpg"  # Latin-1 "café", then a stray byte
    name = os.fsdecode(raw)  # what os.walk gives: the stray bytes as lone surrogates
    sample("chelsea").save(name, format="JPEG", quality=90)
    sample("coffee").save(folder / "ok.jpg", quality=90)
    with lookalike.open(tmp_path / "data") as lk:
        report = lk.index([folder], faces=False)
        assert report.indexed == 2 and not report.failed
        (res,) = lk.search([name], k=1)
        assert res.results[0].path == name
        assert os.fsencode(res.results[0].path) == raw  # stored losslessly
        answer = SearchAnswer.of(res, "cnn").model_dump(mode="json")
        assert answer["results"][0]["path"].endswith("caf\\xe9-\\xff.jpg")
        json.dumps(answer, ensure_ascii=False).encode("utf-8")  # printable as UTF-8
        assert lk.catalog.path_row(name) is not None
        assert set(lk.catalog.paths_under(str(folder))) == {name, str(folder / "ok.jpg")}
        Path(name).unlink()
        assert lk.index([folder], faces=False).removed == 1
        assert lk.catalog.count_images() == 1


def test_measures_and_expansion_rank_the_query_itself_first(
    engine: Lookalike, photo_dir: Path
) -> None:
    engine.index([photo_dir])
    query = str(photo_dir / "chelsea.png")
    cosine = engine.search_one(query, k=6)
    assert (cosine.measure, cosine.expanded) == ("cosine", False)
    order = [h.image_id for h in cosine.results]
    # Euclidean distance of unit vectors ranks as cosine does, nearest first.
    euclid = engine.search_one(query, k=6, measure="euclidean")
    assert [h.image_id for h in euclid.results] == order
    for c, e in zip(cosine.results, euclid.results, strict=True):
        assert e.score == pytest.approx(np.sqrt(max(2 - 2 * c.score, 0)), abs=1e-3)
    pearson = engine.search_one(query, k=6, measure="pearson")
    assert pearson.results[0].image_id == order[0]
    assert pearson.results[0].score == pytest.approx(1.0, abs=1e-4)
    assert sorted(h.image_id for h in pearson.results) == sorted(order)
    expanded = engine.search_one(query, k=6, expand=True)
    assert expanded.expanded and expanded.results[0].image_id == order[0]
    scores = [h.score for h in expanded.results]
    assert scores == sorted(scores, reverse=True)
    # Hash codes compare by Hamming distance only; an unknown measure is named.
    for measure, expand, says in (
        ("euclidean", None, "hamming only"),
        (None, True, "expansion does not apply"),
    ):
        with pytest.raises(BadInput, match=says):
            engine.search_one(query, k=3, descriptor="phash", measure=measure, expand=expand)
    with pytest.raises(BadInput, match="measure must be one of"):
        engine.search_vectors(np.zeros((1, 1280), np.float32), measure="manhattan")
    with pytest.raises(BadInput, match="measure must be one of"):
        engine.search([], measure="manhattan")  # refused even with no query to read


def test_descriptors_run_side_by_side_and_store_what_each_embeds(
    photo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # While indexing, descriptors after the first run in helper threads next to it (the
    # network releases the GIL): the vectors must still be exactly each descriptor's own.
    from lookalike.decode import decode
    from lookalike.describe.phash import PerceptualHash

    threads: list[str] = []
    embed = PerceptualHash.embed

    def spy(self: PerceptualHash, images: Sequence[Image.Image]) -> np.ndarray:
        threads.append(threading.current_thread().name)
        return embed(self, images)

    monkeypatch.setattr(PerceptualHash, "embed", spy)
    with lookalike.open(tmp_path / "data") as lk:
        lk.index([photo_dir], descriptors=["color", "phash"], faces=False, progress=False)
        assert threads and all(name.startswith("describe") for name in threads)
        for name in ("color", "phash"):
            desc = lk.descriptor(name)
            ids, stored = lk.catalog.vectors(name, desc.version)
            assert len(ids) == len(list(photo_dir.iterdir()))
            images = lk.catalog.images([int(i) for i in ids])
            for image_id, row in zip(ids, stored, strict=True):
                path = Path(images[int(image_id)].paths[0])
                decoded = decode(
                    path.read_bytes(),
                    str(path),
                    min_side=lk.describe_side(),
                    max_pixels=lk.settings.max_image_pixels,
                )
                assert row.tobytes() == desc.embed([decoded.image])[0].tobytes()  # raw rows


def test_automatic_expansion_is_on_where_the_index_is_whitened(
    photo_dir: Path, tmp_path: Path
) -> None:
    query = str(photo_dir / "chelsea.png")
    with lookalike.open(tmp_path / "small") as lk:  # below whiten_min_images: raw cosines
        lk.index([photo_dir], faces=False, progress=False)
        plain = lk.search_one(query, k=3)
        assert not plain.expanded and plain.results[0].score == pytest.approx(1.0, abs=1e-4)
    with lookalike.open(tmp_path / "whitened", whiten_min_images=2, whiten_dim=4) as lk:
        lk.index([photo_dir], faces=False, progress=False)
        assert lk.indexes.whitened(lk.descriptor("cnn"))
        assert not lk.search_one(query, k=3, descriptor="color").expanded  # not whitened
    never = Settings(
        data_dir=tmp_path / "whitened", whiten_min_images=2, whiten_dim=4, query_expansion=False
    )
    with Lookalike(never) as lk:
        assert not lk.search_one(query, k=3).expanded
    automatic = Settings(data_dir=tmp_path / "whitened", whiten_min_images=2, whiten_dim=4)
    with Lookalike(automatic) as lk:
        found = lk.search_one(query, k=3)
        assert found.expanded and found.results[0].image_id == plain.results[0].image_id
        assert not lk.search_one(query, k=3, expand=False).expanded  # asked: never
        assert not lk.search_one(query, k=3, descriptor="phash").expanded  # hashes: never
        # A box search compares regions by cosine: the default expansion does not refuse it.
        boxed = lk.search_one(query, k=3, box=(0, 0, 200, 200))
        assert boxed.results and not boxed.expanded
        with pytest.raises(BadInput, match="without expansion"):
            lk.search_one(query, k=3, box=(0, 0, 200, 200), expand=True)
