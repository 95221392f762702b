"""``lookalike people ...``, the face commands over the data folder, ``index --faces``.

Real photos only: scikit-image's astronaut (one face), a mirrored and shrunk copy of her
(the same person), coffee and rocket (no face), and a photo holding her twice (two faces
of one person in one photo: never one cluster).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.routing import APIRoute
from PIL import Image
from pydantic import BaseModel

from lookalike.cli.main import cli
from lookalike.serve import routers

from .conftest import sample


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def run(data: Path, *args: str) -> tuple[int, str, str]:
    """``lookalike ARGS --data-dir DATA``: exit code, stdout, stderr."""
    return invoke(*args, "--data-dir", str(data))


def run_json(data: Path, *args: str) -> Any:
    code, out, err = run(data, *args, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """astronaut.png, mirror.jpg (her again), pair.jpg (her twice), coffee, rocket, broken."""
    folder = tmp_path_factory.mktemp("faces")
    astronaut = sample("astronaut")
    astronaut.save(folder / "astronaut.png")
    mirrored = astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    mirrored.resize((400, 400), Image.Resampling.LANCZOS).save(folder / "mirror.jpg", quality=85)
    pair = Image.new("RGB", (2 * astronaut.width, astronaut.height))
    pair.paste(astronaut, (0, 0))
    pair.paste(mirrored, (astronaut.width, 0))
    pair.save(folder / "pair.jpg", quality=90)
    sample("coffee").save(folder / "coffee.png")
    sample("rocket").save(folder / "rocket.jpg", quality=90)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder


def make_album(photos: Path, folder: Path) -> Path:
    """A folder to index: the astronaut, the photo of her twice, and coffee (no face)."""
    folder.mkdir()
    for name in ("astronaut.png", "pair.jpg", "coffee.png"):
        shutil.copy(photos / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def indexed(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A data folder with the album indexed (faces found and clustered); its JSON summary.

    Read-only for the tests that use it.
    """
    root = tmp_path_factory.mktemp("indexed")
    album = make_album(photos, root / "album")
    data = root / "data"
    return data, run_json(data, "index", str(album))


def clusters_of(data: Path) -> dict[int, set[str]]:
    """Cluster id -> names of the photos of its faces."""
    out: dict[int, set[str]] = {}
    for row in run_json(data, "faces", "clusters")["clusters"]:
        shown = run_json(data, "faces", "cluster-show", str(row["cluster_id"]))
        assert shown["face_count"] == row["face_count"] == len(shown["faces"])
        out[row["cluster_id"]] = {Path(f["path"]).name for f in shown["faces"]}
    return out


def face_ids(data: Path, cluster: int) -> list[int]:
    faces = run_json(data, "faces", "cluster-show", str(cluster))["faces"]
    return [f["face_id"] for f in faces]


def is_png_of_size(path: Path, size: tuple[int, int]) -> bool:
    with Image.open(path) as image:
        return image.format == "PNG" and image.size == size


# -- people add / list / show / rename / merge / remove -----------------------------------


def test_add_list_show(photos: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    added = run_json(data, "people", "add", "Eileen", str(photos / "astronaut.png"))
    assert added == {
        "person_id": 1,
        "name": "Eileen",
        "example_count": 1,
        "face_count": 0,
        "example_ids": added["example_ids"],
    }
    assert len(added["example_ids"]) == 1
    code, out, err = run(data, "people", "add", "eileen", str(photos / "mirror.jpg"))
    assert code == 0, err
    assert out.strip() == "Eileen: 1 example added (2 examples, 0 faces)"  # names ignore case

    assert run_json(data, "people", "list") == {
        "people": [{"person_id": 1, "name": "Eileen", "example_count": 2, "face_count": 0}]
    }
    code, out, _ = run(data, "people", "list")
    assert out.strip() == "Eileen: 2 examples, 0 faces"

    sheet = tmp_path / "eileen.png"
    code, out, err = run(data, "people", "show", "Eileen", "--sheet", str(sheet))
    assert code == 0, err
    assert "mirror.jpg" in out and "contact sheet" in err
    with Image.open(sheet) as image:
        assert image.format == "PNG" and image.width > 150
    shown = run_json(data, "people", "show", "EILEEN")
    assert shown["name"] == "Eileen" and shown["faces"] == []
    sources = [Path(e["source"]) for e in shown["examples"]]
    assert sources == [photos / "astronaut.png", photos / "mirror.jpg"]
    first = shown["examples"][0]
    assert set(first) == {"example_id", "source", "sha256", "face_index", "box", "quality"}
    assert first["face_index"] == 0 and len(first["sha256"]) == 64
    left, top, right, bottom = first["box"]
    assert 150 < left < 200 and 60 < top < 100 and 240 < right < 290 and 150 < bottom < 190

    code, _, err = run(data, "people", "show", "Nobody")
    assert code == 1 and "no person named 'Nobody'" in err


def test_add_refuses_no_face_and_several_faces(photos: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, _, err = run(data, "people", "add", "Eileen", str(photos / "coffee.png"))
    assert code == 1 and "lookalike: error:" in err and "no face found" in err
    code, _, err = run(data, "people", "add", "Eileen", str(photos / "pair.jpg"))
    assert code == 1 and "2 faces found" in err and "--face" in err
    code, _, err = run(data, "people", "add", "Eileen", str(photos / "broken.jpg"))
    assert code == 1 and "broken.jpg" in err
    # One bad image in a batch: nothing is stored, not even the person.
    both = [str(photos / "astronaut.png"), str(photos / "rocket.jpg")]
    code, _, err = run(data, "people", "add", "Eileen", *both)
    assert code == 1 and "rocket.jpg: no face found" in err
    assert run_json(data, "people", "list") == {"people": []}

    code, _, err = run(data, "people", "add", "Eileen", str(photos / "pair.jpg"), "--face", "5")
    assert code == 1 and "2 face(s) found" in err
    added = run_json(data, "people", "add", "Eileen", str(photos / "pair.jpg"), "--face", "1")
    (example,) = run_json(data, "people", "show", "Eileen")["examples"]
    assert example["example_id"] == added["example_ids"][0] and example["face_index"] == 1
    detected = json.loads(invoke("faces", "detect", str(photos / "pair.jpg"), "--json")[1])
    assert example["box"] == detected["faces"][1]["box"]


def test_rename_merge_remove(photos: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    for name, photo in (("Eileen", "astronaut.png"), ("Collins", "mirror.jpg")):
        assert run(data, "people", "add", name, str(photos / photo))[0] == 0

    code, _, err = run(data, "people", "rename", "Eileen", "collins")
    assert code == 1 and "exists already" in err and "people merge" in err
    code, out, _ = run(data, "people", "rename", "Eileen", "Eileen Collin")
    assert code == 0 and "renamed Eileen to Eileen Collin" in out
    renamed = run_json(data, "people", "rename", "eileen collin", "Eileen Collins")
    assert renamed["name"] == "Eileen Collins" and renamed["example_count"] == 1
    merged = run_json(data, "people", "merge", "Collins", "--into", "Eileen Collins")
    assert merged["person_id"] == renamed["person_id"] and merged["example_count"] == 2
    (person,) = run_json(data, "people", "list")["people"]
    assert person == merged
    code, _, err = run(data, "people", "merge", "Nobody", "--into", "Eileen Collins")
    assert code == 1 and "no person named 'Nobody'" in err

    first, second = (
        e["example_id"] for e in run_json(data, "people", "show", "Eileen Collins")["examples"]
    )
    code, out, _ = run(data, "people", "remove", "Eileen Collins", "--example", str(first))
    assert code == 0 and f"removed example {first}" in out
    (left,) = run_json(data, "people", "show", "Eileen Collins")["examples"]
    assert left["example_id"] == second
    code, _, err = run(data, "people", "remove", "Eileen Collins", "--example", str(first))
    assert code == 1 and "no example" in err
    assert run(data, "people", "remove", "Eileen Collins")[0] == 0
    assert run_json(data, "people", "list") == {"people": []}
    code, _, err = run(data, "people", "remove", "Eileen Collins")
    assert code == 1 and "no person named" in err


# -- faces identify ---------------------------------------------------------------------


def test_identify_unknown_then_known(photos: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (face,) = run_json(data, "faces", "identify", str(photos / "mirror.jpg"))["faces"]
    assert face["person"] is None and face["distance"] is None and face["candidates"] == []
    code, out, _ = run(data, "faces", "identify", str(photos / "mirror.jpg"))
    assert code == 0 and "unknown" in out

    assert run(data, "people", "add", "Eileen", str(photos / "astronaut.png"))[0] == 0
    queries = [photos / n for n in ("mirror.jpg", "pair.jpg", "coffee.png", "broken.jpg")]
    code, out, err = run(data, "faces", "identify", *map(str, queries), "--json")
    assert code == 1  # one of four could not be read (the others are reported)
    mirror, pair, coffee, broken = (json.loads(x) for x in out.splitlines())
    assert [line["query"] for line in (mirror, pair, coffee, broken)] == list(map(str, queries))
    (face,) = mirror["faces"]
    assert set(face) == {
        "face_index",
        "box",
        "quality",
        "usable",
        "person",
        "distance",
        "candidates",
    }
    assert face["person"] == "Eileen" and face["distance"] < 0.4 and face["candidates"] == []
    # One person appears once per photo: the closer face is her, the other a candidate.
    assert sorted(f["person"] or "" for f in pair["faces"]) == ["", "Eileen"]
    (other,) = (f for f in pair["faces"] if f["person"] is None)
    assert [c["person"] for c in other["candidates"]] == ["Eileen"]
    assert coffee["faces"] == []  # no face is an empty list
    assert broken["error"]["code"] == "bad_image" and "broken.jpg" in broken["error"]["message"]
    assert "faces" not in broken and "broken.jpg" in err

    # Strict enough, she is unknown; the nearest person is still named.
    code, out, _ = run(data, "faces", "identify", str(photos / "mirror.jpg"), "--threshold", "0.01")
    assert code == 0 and "unknown; nearest: Eileen 0." in out
    code, _, _ = run(data, "faces", "identify", str(photos / "broken.jpg"))
    assert code == 1


def test_identify_and_detect_annotate(photos: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    run(data, "people", "add", "Eileen", str(photos / "astronaut.png"))
    out = tmp_path / "out" / "pair.png"
    code, _, err = run(data, "faces", "identify", str(photos / "pair.jpg"), "--annotate", str(out))
    assert code == 0, err
    assert is_png_of_size(out, (1024, 512))
    with Image.open(out) as drawn, Image.open(photos / "pair.jpg") as photo:
        # Something is drawn on the copy around the faces; the photo itself is untouched.
        assert drawn.convert("RGB").tobytes() != photo.convert("RGB").tobytes()
    folder = tmp_path / "many"
    images = [str(photos / n) for n in ("mirror.jpg", "coffee.png")]
    code, _, err = run(data, "faces", "identify", *images, "--annotate", str(folder))
    assert code == 0, err
    assert is_png_of_size(folder / "mirror.png", (400, 400))
    assert is_png_of_size(folder / "coffee.png", sample("coffee").size)

    detected = tmp_path / "detect.png"
    code, _, err = invoke(
        "faces", "detect", str(photos / "astronaut.png"), "--annotate", str(detected)
    )
    assert code == 0, err
    assert is_png_of_size(detected, (512, 512))


# -- index with faces, clusters, face search -----------------------------------------------


def test_index_finds_and_clusters_faces(indexed: tuple[Path, Any]) -> None:
    data, summary = indexed
    assert summary["indexed"] == 3 and summary["faces"] == 3
    report = summary["people"]
    assert report["faces"] == 3 and report["recognised"] == 0
    # Two clusters started; the third face joined one of them.
    assert report["started"] == 2 and report["joined"] == 1 and report["clusters"] == 2
    stats = run_json(data, "faces", "stats")
    assert stats["face_count"] == 3 and stats["clustered_count"] == 3
    assert stats["unprocessed_count"] == 0 and stats["usable_count"] == 3
    assert stats["named_count"] == stats["person_count"] == 0 and stats["cluster_count"] == 2
    code, out, _ = run(data, "faces", "stats")
    assert code == 0 and "faces: 3" in out.splitlines()


def test_two_faces_of_one_photo_never_share_a_cluster(indexed: tuple[Path, Any]) -> None:
    data, _ = indexed
    groups = sorted(clusters_of(data).values(), key=len)
    # Four photos of one person, but pair.jpg holds her twice: it is split over two clusters.
    assert groups == [{"pair.jpg"}, {"astronaut.png", "pair.jpg"}]
    listed = run_json(data, "faces", "clusters", "--min-size", "2")["clusters"]
    assert [c["face_count"] for c in listed] == [2]


def test_cluster_again_is_incremental(indexed: tuple[Path, Any]) -> None:
    data, _ = indexed
    before = run_json(data, "faces", "clusters")["clusters"]
    assert set(before[0]) == {"cluster_id", "face_count", "sample_face_ids"}
    again = run_json(data, "faces", "cluster")
    assert again["faces"] == 0  # every face was grouped during index
    assert again["started"] == again["joined"] == 0 and again["clusters"] == 2
    assert run_json(data, "faces", "clusters")["clusters"] == before
    code, out, _ = run(data, "faces", "cluster")
    assert code == 0 and out.splitlines()[0] == "no new unknown faces; 2 clusters in all"


def test_face_search(indexed: tuple[Path, Any], photos: Path, tmp_path: Path) -> None:
    data, _ = indexed
    sheet = tmp_path / "search.png"
    query = str(photos / "mirror.jpg")
    found = run_json(data, "faces", "search", query, "--sheet", str(sheet))
    assert found["query"] == query and len(found["box"]) == 4
    hits = found["results"]
    assert sorted(Path(h["path"]).name for h in hits) == ["astronaut.png", "pair.jpg", "pair.jpg"]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    distances = [h["distance"] for h in hits]
    assert distances == sorted(distances) and distances[-1] < 0.6
    assert hits[0]["face_id"] >= 1 and hits[0]["cluster_id"] >= 1  # the shape: test below
    with Image.open(sheet) as image:
        assert image.format == "PNG"

    assert len(run_json(data, "faces", "search", query, "-k", "1")["results"]) == 1
    assert run_json(data, "faces", "search", query, "--max-distance", "0.001")["results"] == []
    code, out, _ = run(data, "faces", "search", query)
    assert code == 0 and "pair.jpg" in out and "cluster" in out
    code, _, err = run(data, "faces", "search", str(photos / "coffee.png"))
    assert code == 1 and "no face found" in err
    code, _, err = run(data, "faces", "search", query, "-k", "0")
    assert code == 1 and "k must be" in err


def test_cluster_show_sheet_and_unknown_cluster(indexed: tuple[Path, Any], tmp_path: Path) -> None:
    data, _ = indexed
    (big,) = run_json(data, "faces", "clusters", "--min-size", "2")["clusters"]
    sheet = tmp_path / "cluster.png"
    big_id = str(big["cluster_id"])
    code, out, err = run(data, "faces", "cluster-show", big_id, "--sheet", str(sheet))
    assert code == 0, err
    assert out.startswith(f"cluster {big_id}: 2 faces")
    with Image.open(sheet) as image:
        assert image.format == "PNG" and image.width > 300  # two tiles side by side
    code, _, err = run(data, "faces", "cluster-show", "999")
    assert code == 1 and "cluster 999 not found" in err


# -- naming, editing clusters, recognising later photos -------------------------------------


def test_name_cluster_then_later_photos_are_recognised(photos: Path, tmp_path: Path) -> None:
    album = make_album(photos, tmp_path / "album")
    data = tmp_path / "data"
    run_json(data, "index", str(album))
    groups = clusters_of(data)
    (big,) = [c for c, names in groups.items() if len(names) == 2]
    (small,) = [c for c in groups if c != big]

    named = run_json(data, "people", "name-cluster", str(big), "Eileen")
    assert named["name"] == "Eileen" and named["face_count"] == 2
    code, _, err = run(data, "people", "name-cluster", str(small), "eileen")
    assert code == 1 and "exists already" in err and "--merge" in err
    assert run_json(data, "faces", "stats")["cluster_count"] == 1  # nothing changed
    code, out, err = run(data, "people", "name-cluster", str(small), "eileen", "--merge")
    assert code == 0 and "is now Eileen (0 examples, 3 faces)" in out
    assert run_json(data, "faces", "clusters") == {"clusters": []}

    shutil.copy(photos / "mirror.jpg", album / "later.jpg")
    code, out, err = run(data, "index", str(album))
    assert code == 0, err
    assert "1 indexed, 3 unchanged" in out
    assert "faces: 1 found; 1 unknown face: 1 recognised (Eileen 1)" in out
    shown = run_json(data, "people", "show", "Eileen")
    later = [f for f in shown["faces"] if Path(f["path"]).name == "later.jpg"]
    assert len(later) == 1 and later[0]["person"] == "Eileen"
    assert later[0]["confirmed"] is False and later[0]["cluster_id"] is None
    confirmed = [f["confirmed"] for f in shown["faces"]]
    assert sorted(confirmed) == [False, True, True, True]
    sheet = tmp_path / "eileen.png"
    assert run(data, "people", "show", "Eileen", "--sheet", str(sheet))[0] == 0
    assert sheet.is_file()
    hits = run_json(data, "faces", "search", str(photos / "astronaut.png"))["results"]
    assert {h["person"] for h in hits} == {"Eileen"}


def test_merge_move_assign(photos: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    run_json(data, "index", str(make_album(photos, tmp_path / "album")))
    groups = clusters_of(data)
    (big,) = [c for c, names in groups.items() if len(names) == 2]
    (small,) = [c for c in groups if c != big]

    moved = run_json(data, "faces", "merge-clusters", str(big), str(small))
    assert moved == {"cluster_id": big, "merged_cluster_ids": [small], "faces_moved": 1}
    assert [c["cluster_id"] for c in run_json(data, "faces", "clusters")["clusters"]] == [big]
    code, _, err = run(data, "faces", "merge-clusters", str(big), "999")
    assert code == 1 and "cluster 999 not found" in err
    code, _, err = run(data, "faces", "merge-clusters", str(big))
    assert code == 1 and "at least two clusters" in err

    first, *rest = face_ids(data, big)
    fresh = run_json(data, "faces", "move", str(first), "--new")
    assert fresh["face_ids"] == [first] and fresh["cluster_id"] not in (big, small)
    assert face_ids(data, fresh["cluster_id"]) == [first]
    back = run_json(data, "faces", "move", str(first), "--to", str(big))
    assert back["cluster_id"] == big and len(face_ids(data, big)) == 3
    code, _, err = run(data, "faces", "move", str(first))
    assert code == 2 and "exactly one of --to CLUSTER and --new" in err
    code, _, err = run(data, "faces", "move", "999", "--new")
    assert code == 1 and "face 999 not found" in err
    code, _, err = run(data, "faces", "move", str(first), "--to", "999")
    assert code == 1 and "cluster 999 not found" in err

    person = run_json(data, "people", "assign", "Eileen", str(first))
    assert person["name"] == "Eileen" and person["face_count"] == 1
    (face,) = run_json(data, "people", "show", "Eileen")["faces"]
    assert face["face_id"] == first and face["confirmed"] is True and face["cluster_id"] is None
    assert face["person"] == "Eileen" and face["person_id"] == person["person_id"]
    assert sorted(face_ids(data, big)) == sorted(rest)
    code, _, err = run(data, "people", "assign", "Eileen", "999")
    assert code == 1 and "face 999 not found" in err


def test_full_recluster_keeps_the_photo_rule(photos: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    run_json(data, "index", str(make_album(photos, tmp_path / "album")))
    before = sorted(map(sorted, clusters_of(data).values()))
    again = run_json(data, "faces", "cluster", "--full")
    assert again["faces"] == 3 and again["clusters"] == 2
    # Merging close clusters must not join the two faces of pair.jpg either.
    assert sorted(map(sorted, clusters_of(data).values())) == before


def test_index_without_faces(photos: Path, tmp_path: Path) -> None:
    album = make_album(photos, tmp_path / "album")
    data = tmp_path / "data"
    summary = run_json(data, "index", str(album), "--no-faces")
    assert summary["indexed"] == 3 and summary["faces"] is None and summary["people"] is None
    stats = run_json(data, "faces", "stats")
    assert stats["face_count"] == 0 and stats["cluster_count"] == 0
    code, out, _ = run(data, "index", str(album), "--no-faces")
    assert code == 0 and "faces:" not in out
    # Turned on later, faces are looked for in the images already indexed.
    code, out, err = run(data, "index", str(album))
    assert code == 0, err
    assert "faces: 3 found" in out and "2 new clusters" in out


# -- one shape for the command line and the API ----------------------------------------------


def api_answers() -> dict[tuple[str, str], type[BaseModel]]:
    """(method, path) -> the model a route of the server declares as its answer (what
    /openapi.json states)."""
    out: dict[tuple[str, str], type[BaseModel]] = {}
    for module in (routers.search, routers.faces, routers.people, routers.clusters):
        for route in module.router.routes:
            if isinstance(route, APIRoute) and isinstance(route.response_model, type):
                out.update({(method, route.path): route.response_model for method in route.methods})
    return out


def assert_api_shape(line: str, model: type[BaseModel]) -> None:
    """``line`` (a CLI JSON line) is exactly an answer ``model`` describes: no field the API
    lacks (the models forbid extras), none missing, no value coerced."""
    answer = model.model_validate_json(line)
    assert answer.model_dump(mode="json") == json.loads(line), model.__name__


def test_cli_json_is_what_the_api_answers(photos: Path, tmp_path: Path) -> None:
    answers = api_answers()
    data = tmp_path / "data"
    album = make_album(photos, tmp_path / "album")
    mirror, pair = str(photos / "mirror.jpg"), str(photos / "pair.jpg")

    def check(method: str, path: str, *args: str) -> Any:
        code, out, err = invoke("--data-dir", str(data), *args, "--json")
        assert code == 0, err
        assert_api_shape(out, answers[method, path])
        return json.loads(out)

    check("POST", "/v1/people", "people", "add", "Eileen", str(photos / "astronaut.png"))
    assert run(data, "index", str(album))[0] == 0
    found = check("POST", "/v1/search", "search", mirror, "-k", "3")
    assert found["query"] == mirror and found["descriptor"] == "cnn"
    assert found["results"][0]["image_id"] >= 1
    identified = check("POST", "/v1/faces/identify", "faces", "identify", pair)
    assert identified["query"] == pair
    assert sorted(f["face_index"] for f in identified["faces"]) == [0, 1]
    (person,) = check("GET", "/v1/people", "people", "list")["people"]
    assert person["person_id"] == 1 and person["face_count"] == 2  # her faces were recognised
    shown = check("GET", "/v1/people/{person_id}", "people", "show", "Eileen")
    assert {f["face_index"] for f in shown["faces"]} <= {0, 1}
    check("POST", "/v1/faces/detect", "faces", "detect", pair)
    check("POST", "/v1/faces/verify", "faces", "verify", mirror, pair)
    check("POST", "/v1/faces/search", "faces", "search", mirror)
    check("GET", "/v1/duplicates", "duplicates")
    (cluster,) = check("GET", "/v1/clusters", "faces", "clusters")["clusters"]
    check("GET", "/v1/clusters/{cluster_id}", "faces", "cluster-show", str(cluster["cluster_id"]))
    check("POST", "/v1/clusters/run", "faces", "cluster")


# -- awkward photos ---------------------------------------------------------------------


def test_grey_cmyk_and_tiny_photos(photos: Path, tmp_path: Path) -> None:
    astronaut = sample("astronaut")
    astronaut.convert("L").save(tmp_path / "grey.png")
    astronaut.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=90)
    astronaut.resize((20, 20)).save(tmp_path / "tiny.png")
    data = tmp_path / "data"
    added = run_json(data, "people", "add", "Eileen", str(tmp_path / "grey.png"))
    assert added["example_count"] == 1
    names = ("cmyk.jpg", "tiny.png")
    code, out, err = run(
        data,
        "faces",
        "identify",
        *(str(tmp_path / n) for n in names),
        "--json",
        "--annotate",
        str(tmp_path / "drawn"),
    )
    assert code == 0, err
    cmyk, tiny = (json.loads(line) for line in out.splitlines())
    assert [f["person"] for f in cmyk["faces"]] == ["Eileen"]
    assert tiny["faces"] == []  # too small to hold a face: an empty list, not an error
    assert is_png_of_size(tmp_path / "drawn" / "cmyk.png", (512, 512))
    assert is_png_of_size(tmp_path / "drawn" / "tiny.png", (20, 20))
    code, _, err = run(data, "people", "add", "Eileen", str(tmp_path / "tiny.png"))
    assert code == 1 and "no face found" in err


def fifty_faces() -> Image.Image:
    """Her face fifty times (10 x 5, alternately mirrored): one photo of fifty faces."""
    face = sample("astronaut").crop((151, 52, 291, 192))
    mirrored = face.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    photo = Image.new("RGB", (10 * face.width, 5 * face.height))
    for col in range(10):
        for row in range(5):
            photo.paste(
                mirrored if (col + row) % 2 else face, (col * face.width, row * face.height)
            )
    return photo


@pytest.mark.slow
def test_fifty_faces_in_one_photo(tmp_path: Path) -> None:
    album = tmp_path / "album"
    album.mkdir()
    fifty_faces().save(album / "crowd.jpg", quality=90)
    data = tmp_path / "data"
    summary = run_json(data, "index", str(album))
    assert summary["faces"] == 50
    # Fifty faces of one person, but in one photo: fifty people as far as clusters go.
    clusters = run_json(data, "faces", "clusters")["clusters"]
    assert len(clusters) == 50 and {c["face_count"] for c in clusters} == {1}
    drawn = tmp_path / "crowd.png"
    line = run_json(data, "faces", "identify", str(album / "crowd.jpg"), "--annotate", str(drawn))
    assert len(line["faces"]) == 50 and {f["person"] for f in line["faces"]} == {None}
    assert is_png_of_size(drawn, (1400, 700))
