"""`/v1/people`: enrol from uploads, list, show, rename, merge, forget; examples.

Each test gets its own empty data folder (opening one is cheap; the face models, loaded
once per process, are shared).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from .test_api_faces import (
    JPEG,
    api,
    assert_error,
    check_photo_page,
    is_jpeg,
    make_photos,
    upload,
)

Client = tuple[TestClient, dict[str, dict[str, str]]]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return make_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[Client]:
    with api(tmp_path / "data", upload_max_files=3) as found:
        yield found


def enrol(
    client: Client, name: str, photos: dict[str, bytes], *files: str, **form: str
) -> tuple[int, Any]:
    c, keys = client
    r = c.post(
        "/v1/people",
        data={"name": name, **form},
        files=[("files", upload(f, photos)) for f in files],
        headers=keys["write"],
    )
    return r.status_code, r.json()


def test_enrol_then_identify(client: Client, photos: dict[str, bytes]) -> None:
    c, keys = client
    status, added = enrol(client, " Eileen  Collins ", photos, "astronaut.png")
    assert status == 201, added
    person = {k: v for k, v in added.items() if k != "example_ids"}
    assert person == {
        "person_id": added["person_id"],
        "name": "Eileen Collins",
        "example_count": 1,
        "face_count": 0,
    }
    assert isinstance(added["example_ids"], list) and len(added["example_ids"]) == 1

    r = c.post(
        "/v1/faces/identify", files={"file": upload("mirror.jpg", photos)}, headers=keys["read"]
    )
    (face,) = r.json()["faces"]
    assert face["person"] == "Eileen Collins" and face["distance"] < 0.6

    # The same name again (in any case) adds examples to the same person.
    status, again = enrol(client, "eileen collins", photos, "mirror.jpg")
    assert status == 201 and again["person_id"] == person["person_id"]
    assert again["example_count"] == 2
    r = c.get("/v1/people", headers=keys["read"])
    assert r.json() == {"people": [{**person, "example_count": 2}]}


def test_enrol_refuses_no_face_and_two_faces(client: Client, photos: dict[str, bytes]) -> None:
    c, keys = client
    status, error = enrol(client, "Eileen", photos, "coffee.png")
    assert status == 422 and "coffee.png: no face found" in str(error)
    status, error = enrol(client, "Eileen", photos, "astronaut.png", "pair.jpg")
    assert status == 422 and "pair.jpg: 2 faces found, 2 usable" in str(error)
    assert error["error"]["code"] == "bad_input"
    # Nothing stored when one image fails.
    assert c.get("/v1/people", headers=keys["read"]).json() == {"people": []}

    status, added = enrol(client, "Eileen", photos, "pair.jpg", face_index="1")
    assert status == 201 and added["example_count"] == 1
    status, error = enrol(client, "Eileen", photos, "pair.jpg", face_index="2")
    assert status == 422 and "2 face(s) found" in str(error)


def test_enrol_bad_requests(client: Client, photos: dict[str, bytes]) -> None:
    c, keys = client
    ok = [("files", upload("astronaut.png", photos))]
    for data, files, words in (
        ({}, ok, ("name",)),
        ({"name": ""}, ok, ("name",)),
        ({"name": "   "}, ok, ("name cannot be empty",)),
        ({"name": "x" * 300}, ok, ("at most 200",)),
        ({"name": "E"}, [], ("files",)),
        ({"name": "E", "face_index": "-1"}, ok, ("face_index",)),
        ({"name": "E", "face_index": "one"}, ok, ("face_index",)),
        ({"name": "E"}, [("files", ("a.txt", b"text", "text/plain"))], ("a.txt",)),
        ({"name": "E"}, [("files", upload("astronaut.png", photos))] * 4, ("at most 3",)),
    ):
        r = c.post("/v1/people", data=data, files=files, headers=keys["write"])
        assert 400 <= r.status_code < 500, (data, r.text)
        assert_error(r, r.status_code, *words)
    r = c.post("/v1/people", json={"name": "E"}, headers=keys["write"])
    assert_error(r, 422, "files")
    assert c.get("/v1/people", headers=keys["read"]).json() == {"people": []}


def test_show_rename_merge_remove(client: Client, photos: dict[str, bytes]) -> None:
    c, keys = client
    _, eileen = enrol(client, "Eileen", photos, "astronaut.png")
    _, bob = enrol(client, "Bob", photos, "mirror.jpg")
    eid, bid = eileen["person_id"], bob["person_id"]

    shown = c.get(f"/v1/people/{eid}", headers=keys["read"]).json()
    assert shown["name"] == "Eileen" and shown["faces"] == [] and shown["face_count"] == 0
    (example,) = shown["examples"]
    assert example["example_id"] == eileen["example_ids"][0] and example["face_index"] == 0
    assert set(example) == {"example_id", "source", "sha256", "face_index", "box", "quality"}
    assert example["source"] == "astronaut.png" and len(example["sha256"]) == 64

    r = c.patch(f"/v1/people/{eid}", json={"name": "BOB"}, headers=keys["write"])
    assert_error(r, 409, "'Bob' exists already")
    r = c.patch(f"/v1/people/{eid}", json={"name": "Eileen/Collins?"}, headers=keys["write"])
    assert r.status_code == 200 and r.json()["name"] == "Eileen/Collins?"
    r = c.patch(f"/v1/people/{eid}", json={"name": "eileen/collins?"}, headers=keys["write"])
    assert r.status_code == 200 and r.json()["name"] == "eileen/collins?"  # case only
    bodies: list[dict[str, Any]] = [{}, {"name": ""}, {"name": None}, {"nom": "x"}]
    for body in bodies:
        assert_error(c.patch(f"/v1/people/{eid}", json=body, headers=keys["write"]), 422)
    assert_error(c.patch("/v1/people/999", json={"name": "x"}, headers=keys["write"]), 404)

    r = c.post(f"/v1/people/{eid}/merge", json={"person_ids": [bid]}, headers=keys["write"])
    assert r.status_code == 200, r.text
    merged = {"person_id": eid, "name": "eileen/collins?", "example_count": 2, "face_count": 0}
    assert r.json() == merged
    assert_error(c.get(f"/v1/people/{bid}", headers=keys["read"]), 404, f"person {bid}")
    r = c.post(f"/v1/people/{eid}/merge", json={"person_ids": [bid]}, headers=keys["write"])
    assert_error(r, 404, f"person {bid} not found")
    bodies = [{}, {"person_ids": []}, {"person_ids": "2"}, {"person_ids": [0]}, {"from": [bid]}]
    for body in bodies:
        r = c.post(f"/v1/people/{eid}/merge", json=body, headers=keys["write"])
        assert_error(r, 422)

    r = c.delete(f"/v1/people/{eid}", headers=keys["write"])
    assert r.status_code == 204 and r.content == b""
    assert c.get("/v1/people", headers=keys["read"]).json() == {"people": []}
    assert_error(c.delete(f"/v1/people/{eid}", headers=keys["write"]), 404)
    assert_error(c.get(f"/v1/people/{eid}", headers=keys["read"]), 404)
    for bad in ("0", "x", str(2**64)):
        assert_error(c.get(f"/v1/people/{bad}", headers=keys["read"]), 422, "person_id")


def test_the_images_of_a_person(client: Client, photos: dict[str, bytes]) -> None:
    c, keys = client
    files = [("files", upload(n, photos)) for n in ("astronaut.png", "pair.jpg", "coffee.png")]
    uploaded = c.post("/v1/images", files=files, headers=keys["write"]).json()["images"]
    # Her two clusters named as one person: her face in astronaut.png, both in pair.jpg.
    for cluster in c.get("/v1/clusters", headers=keys["read"]).json()["clusters"]:
        body = {"name": "Eileen", "merge": True}
        r = c.post(f"/v1/clusters/{cluster['cluster_id']}/name", json=body, headers=keys["write"])
        assert r.status_code == 200, r.text
    (eileen,) = c.get("/v1/people", headers=keys["read"]).json()["people"]
    url = f"/v1/people/{eileen['person_id']}/images"
    faces = c.get(f"/v1/people/{eileen['person_id']}", headers=keys["read"]).json()["faces"]
    check_photo_page(c, keys, url, faces)
    page = c.get(url, headers=keys["read"]).json()
    ids = {u["filename"]: u["image_id"] for u in uploaded}
    shown = [(i["image_id"], len(i["face_ids"])) for i in page["images"]]
    assert shown == [(ids["pair.jpg"], 2), (ids["astronaut.png"], 1)]

    # Someone with examples only is in no indexed image; someone unknown is a 404.
    _, bob = enrol(client, "Bob", photos, "mirror.jpg")
    r = c.get(f"/v1/people/{bob['person_id']}/images", headers=keys["read"])
    assert r.json() == {"total": 0, "offset": 0, "limit": 100, "images": []}
    assert_error(c.get("/v1/people/999/images", headers=keys["read"]), 404, "person 999")
    assert_error(c.get("/v1/people/0/images", headers=keys["read"]), 422, "person_id")


def test_examples(client: Client, photos: dict[str, bytes]) -> None:
    c, keys = client
    _, eileen = enrol(client, "Eileen", photos, "astronaut.png")
    _, bob = enrol(client, "Bob", photos, "pair.jpg", face_index="0")
    eid = eileen["person_id"]
    (bob_example,) = bob["example_ids"]

    r = c.post(
        f"/v1/people/{eid}/examples",
        files=[("files", upload("mirror.jpg", photos))],
        headers=keys["write"],
    )
    assert r.status_code == 201, r.text
    (added,) = r.json()["example_ids"]
    assert r.json()["example_count"] == 2

    r = c.get(f"/v1/people/{eid}/examples/{added}/thumbnail", headers=keys["read"])
    assert r.status_code == 200 and r.headers["content-type"] == JPEG and is_jpeg(r.content)
    # Another person's example is not hers.
    r = c.get(f"/v1/people/{eid}/examples/{bob_example}/thumbnail", headers=keys["read"])
    assert_error(r, 404, f"no example {bob_example}")
    assert_error(c.delete(f"/v1/people/{eid}/examples/{bob_example}", headers=keys["write"]), 404)

    r = c.delete(f"/v1/people/{eid}/examples/{added}", headers=keys["write"])
    assert r.status_code == 204
    shown = c.get(f"/v1/people/{eid}", headers=keys["read"]).json()
    assert [e["source"] for e in shown["examples"]] == ["astronaut.png"]
    assert_error(c.delete(f"/v1/people/{eid}/examples/{added}", headers=keys["write"]), 404)
    assert_error(c.get(f"/v1/people/{eid}/examples/{added}/thumbnail", headers=keys["read"]), 404)

    r = c.post(
        f"/v1/people/{eid}/examples",
        files=[("files", upload("coffee.png", photos))],
        headers=keys["write"],
    )
    assert_error(r, 422, "coffee.png: no face found")
    r = c.post(
        "/v1/people/999/examples",
        files=[("files", upload("mirror.jpg", photos))],
        headers=keys["write"],
    )
    assert_error(r, 404, "person 999")


def test_scopes(client: Client, photos: dict[str, bytes]) -> None:
    c, keys = client
    files = [("files", upload("astronaut.png", photos))]
    r = c.post("/v1/people", data={"name": "E"}, files=files, headers=keys["read"])
    assert_error(r, 403, "'write' is needed")
    assert_error(c.post("/v1/people", data={"name": "E"}, files=files), 401)
    assert_error(c.get("/v1/people"), 401)
    assert c.get("/v1/people", headers=keys["read"]).status_code == 200
    for method, path in (
        ("PATCH", "/v1/people/1"),
        ("DELETE", "/v1/people/1"),
        ("POST", "/v1/people/1/merge"),
        ("DELETE", "/v1/people/1/examples/1"),
    ):
        r = c.request(method, path, json={"name": "x", "person_ids": [2]}, headers=keys["read"])
        assert_error(r, 403)
    assert c.get("/v1/people", headers=keys["read"]).json() == {"people": []}
