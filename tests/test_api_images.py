"""The images and search API: uploads, listing, thumbnails, deletion, search, duplicates,
and every bad input answered with a JSON 4xx and nothing stored."""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lookalike.decode import decode_gate
from lookalike.serve.app import create_app
from lookalike.serve.keys import create_key
from lookalike.settings import get_settings

from .conftest import sample

Files = list[tuple[str, tuple[str, bytes, str]]]


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels, with almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def files(*items: tuple[str, bytes]) -> Files:
    return [("files", (name, data, "application/octet-stream")) for name, data in items]


class Api:
    """A TestClient with one key per scope."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        # Image ids by photo name, for the uploads a fixture made.
        self.ids: dict[str, int] = {}
        store = self.engine.catalog.service
        self.keys = {s: {"X-API-Key": create_key(store, s, s)[0]} for s in ("read", "write")}

    @property
    def engine(self) -> Any:
        return self.client.app.state.engine  # type: ignore[attr-defined]

    def upload(self, *items: tuple[str, bytes]) -> Any:
        return self.client.post("/v1/images", files=files(*items), headers=self.keys["write"])

    def get(self, url: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        return self.client.get(url, headers=self.keys["read"] | (headers or {}), **kw)

    def stored(self) -> list[Path]:
        root = self.engine.settings.data_dir / "uploads"
        return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def make_api(tmp_path: Path, **overrides: Any) -> Iterator[Api]:
    app = create_app(get_settings(data_dir=tmp_path / "data", **overrides))
    with TestClient(app) as client:
        yield Api(client)


@pytest.fixture()
def api(tmp_path: Path) -> Iterator[Api]:
    yield from make_api(tmp_path)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The sample photos as JPEG bytes, at a modest size (uploads stay quick)."""
    out = {}
    for name in ("astronaut", "chelsea", "rocket", "coffee", "motorcycle_left"):
        image = sample(name)
        image.thumbnail((400, 400))
        out[name] = jpeg(image)
    return out


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, photos: dict[str, bytes]) -> Iterator[Api]:
    """One server with the five photos uploaded (read-only tests share it)."""
    for api in make_api(tmp_path_factory.mktemp("indexed")):
        r = api.upload(*((f"{n}.jpg", d) for n, d in photos.items()))
        assert r.status_code == 200, r.text
        api.ids = {Path(i["filename"]).stem: i["image_id"] for i in r.json()["images"]}
        yield api


def ids_by_name(api: Api) -> dict[str, int]:
    images = api.get("/v1/images").json()["images"]
    return {Path(i["paths"][0]).name: i["image_id"] for i in images}


# -- uploads ----------------------------------------------------------------------------


def test_upload_one_photo_reports_its_faces(api: Api) -> None:
    data = jpeg(sample("astronaut"))
    r = api.upload(("astronaut.jpg", data))
    assert r.status_code == 200, r.text
    (one,) = r.json()["images"]
    assert one["status"] == "added" and one["filename"] == "astronaut.jpg"
    assert (one["width"], one["height"]) == (512, 512)
    assert len(one["sha256"]) == 64
    (face,) = one["faces"]
    assert set(face) == {
        "face_id",
        "image_id",
        "path",
        "face_index",
        "box",
        "quality",
        "usable",
        "person",
        "person_id",
        "confirmed",
        "cluster_id",
    }
    assert face["image_id"] == one["image_id"] and face["face_index"] == 0
    left, top, right, bottom = face["box"]
    assert 0 <= left < right <= 512 and 0 <= top < bottom <= 512 and face["usable"]
    got = api.get(f"/v1/images/{one['image_id']}").json()
    assert got["faces"] == one["faces"] and got["sha256"] == one["sha256"]
    (path,) = got["paths"]
    assert Path(path).is_relative_to(api.engine.settings.data_dir / "uploads")
    assert Path(path).read_bytes() == data


def test_upload_several_and_duplicates(api: Api, photos: dict[str, bytes]) -> None:
    r = api.upload(("c.jpg", photos["chelsea"]), ("r.jpg", photos["rocket"]))
    assert [i["status"] for i in r.json()["images"]] == ["added", "added"]
    first = r.json()["images"][0]
    r = api.upload(
        ("again.jpg", photos["chelsea"]), ("k.jpg", photos["coffee"]), ("k2.jpg", photos["coffee"])
    )
    assert r.status_code == 200, r.text
    again, coffee, coffee2 = r.json()["images"]
    assert (again["status"], again["image_id"]) == ("duplicate", first["image_id"])
    assert (coffee["status"], coffee2["status"]) == ("added", "duplicate")
    assert coffee["image_id"] == coffee2["image_id"] and coffee2["filename"] == "k2.jpg"
    listing = api.get("/v1/images").json()
    assert listing["total"] == 3 and len(api.stored()) == 3
    assert (
        api.get("/v1/images", params={"offset": 1, "limit": 1}).json()["images"][0]["image_id"]
        == (listing["images"][1]["image_id"])
    )


@pytest.mark.parametrize(
    ("name", "data", "status", "code", "reason"),
    [
        ("notes.txt", b"hello, not an image at all", 400, "bad_image", "not an image"),
        ("empty.jpg", b"", 400, "bad_image", "empty"),
        ("cut.jpg", None, 400, "bad_image", "truncated"),
        ("bomb.png", png_bomb(), 413, "image_too_large", "30000x30000"),
    ],
)
def test_a_bad_file_fails_the_request_and_stores_nothing(
    api: Api,
    photos: dict[str, bytes],
    name: str,
    data: bytes | None,
    status: int,
    code: str,
    reason: str,
) -> None:
    bad = photos["rocket"][: len(photos["rocket"]) // 2] if data is None else data
    r = api.upload(("good.jpg", photos["chelsea"]), (name, bad))
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code and reason in error["message"] and name in error["message"]
    assert api.stored() == [] and api.engine.catalog.count_images() == 0
    assert api.client.get("/healthz").status_code == 200  # still serving


def test_oversized_uploads_and_too_many_files_are_413(
    tmp_path: Path, photos: dict[str, bytes]
) -> None:
    for api in make_api(tmp_path, upload_max_bytes=20_000, upload_max_files=2):
        big = photos["astronaut"]
        assert len(big) > 20_000
        r = api.upload(("big.jpg", big))
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
        small = jpeg(sample("chelsea").resize((60, 40)))
        r = api.upload(*((f"{i}.jpg", small) for i in range(3)))
        assert r.status_code == 413 and "at most 2" in r.json()["error"]["message"]
        r = api.client.post("/v1/search", files={"file": ("q.jpg", big)}, headers=api.keys["read"])
        assert r.status_code == 413
        assert api.stored() == [] and api.engine.catalog.count_images() == 0


def test_large_images_get_503_with_retry_after_while_the_decode_slots_are_taken(
    tmp_path: Path,
) -> None:
    # One slot, and every image over 300 kB of pixels is "large": a 512 x 512 PNG is.
    settings = {"decode_slots": 1, "decode_large_bytes": 300_000, "decode_wait_s": 0.05}
    for api in make_api(tmp_path, **settings):
        large = png(sample("astronaut"))
        small = png(sample("astronaut").resize((64, 64)))
        read = api.keys["read"]
        with decode_gate(api.engine.settings).slot():  # what another large decode would hold
            r = api.client.post("/v1/search", files={"file": ("big.png", large)}, headers=read)
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "busy"
            assert int(r.headers["Retry-After"]) >= 1
            r = api.upload(("big.png", large))
            assert r.status_code == 503 and "Retry-After" in r.headers
            assert api.stored() == [] and api.engine.catalog.count_images() == 0
            r = api.client.post("/v1/search", files={"file": ("s.png", small)}, headers=read)
            assert r.status_code == 200, r.text  # small images need no slot
        r = api.client.post("/v1/search", files={"file": ("big.png", large)}, headers=read)
        assert r.status_code == 200, r.text
        assert api.upload(("big.png", large)).status_code == 200


# -- keys and scopes ---------------------------------------------------------------------


def test_keys_and_scopes_are_enforced(api: Api, photos: dict[str, bytes]) -> None:
    body = files(("c.jpg", photos["chelsea"]))
    assert api.client.post("/v1/images", files=body).status_code == 401
    r = api.client.post("/v1/images", files=body, headers={"X-API-Key": "lka_x_y"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = api.client.post("/v1/images", files=body, headers=api.keys["read"])
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert api.client.delete("/v1/images/1", headers=api.keys["read"]).status_code == 403
    for url in ("/v1/images", "/v1/images/1", "/v1/duplicates", "/v1/images/1/similar"):
        assert api.client.get(url).status_code == 401, url
    assert api.client.post("/v1/search", files={"file": ("q", b"x")}).status_code == 401
    assert api.stored() == []


# -- reading -----------------------------------------------------------------------------


def test_unknown_and_malformed_ids(indexed: Api) -> None:
    for url in (
        "/v1/images/999999",
        "/v1/images/999999/thumbnail",
        "/v1/images/999999/similar",
    ):
        r = indexed.get(url)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", url
    r = indexed.client.delete("/v1/images/999999", headers=indexed.keys["write"])
    assert r.status_code == 404
    for bad in ("abc", "-1", "0", "1.5", str(10**30), "%00"):
        for url in (f"/v1/images/{bad}", f"/v1/images/{bad}/thumbnail"):
            r = indexed.get(url)
            assert r.status_code in (404, 422) and "error" in r.json(), url
    for params in ({"limit": 0}, {"limit": 10**6}, {"offset": -1}, {"offset": 10**40}):
        r = indexed.get("/v1/images", params=params)
        assert r.status_code == 422 and r.json()["error"]["code"] == "bad_input", params


def test_thumbnail_is_a_jpeg_of_the_asked_size(indexed: Api) -> None:
    ids = indexed.ids
    for name, size in (("rocket", 128), ("astronaut", 256)):
        r = indexed.get(f"/v1/images/{ids[name]}/thumbnail", params={"size": size})
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        with Image.open(io.BytesIO(r.content)) as im:
            assert im.format == "JPEG" and max(im.size) == size
    default = indexed.get(f"/v1/images/{ids['chelsea']}/thumbnail")
    with Image.open(io.BytesIO(default.content)) as im:
        assert max(im.size) == 256
    for bad in (8, 2048, "big"):
        r = indexed.get(f"/v1/images/{ids['chelsea']}/thumbnail", params={"size": bad})
        assert r.status_code == 422


def test_thumbnails_are_kept_and_revalidated_by_etag(indexed: Api) -> None:
    image_id = indexed.ids["rocket"]
    sha = indexed.get(f"/v1/images/{image_id}").json()["sha256"]
    url = f"/v1/images/{image_id}/thumbnail"
    first = indexed.get(url, params={"size": 128})
    assert first.status_code == 200
    assert first.headers["etag"] == f'"{sha}-128"'
    assert first.headers["cache-control"] == "private, no-cache"
    kept = indexed.engine.settings.data_dir / "thumbnails" / sha[:2] / f"{sha}-128.jpg"
    assert kept.read_bytes() == first.content
    # Its ETag (alone, among others, weak) gets a 304 with no body; another size's does not.
    for sent in (f'"{sha}-128"', f'"x", W/"{sha}-128"', "*"):
        r = indexed.get(url, params={"size": 128}, headers={"If-None-Match": sent})
        assert r.status_code == 304 and r.content == b"", sent
        assert r.headers["etag"] == f'"{sha}-128"'
    r = indexed.get(url, params={"size": 256}, headers={"If-None-Match": f'"{sha}-128"'})
    assert r.status_code == 200 and r.headers["etag"] == f'"{sha}-256"'
    # The kept file is what is sent: the image's own files are not read again.
    kept.write_bytes(b"kept")
    assert indexed.get(url, params={"size": 128}).content == b"kept"
    kept.unlink()
    assert indexed.get(url, params={"size": 128}).content == first.content
    # A size the page does not use is made each time, never kept.
    assert indexed.get(url, params={"size": 100}).status_code == 200
    assert not kept.with_name(f"{sha}-100.jpg").exists()


def test_a_deleted_image_takes_its_kept_thumbnails_along(
    api: Api, photos: dict[str, bytes]
) -> None:
    (image,) = api.upload(("r.jpg", photos["rocket"])).json()["images"]
    assert api.get(f"/v1/images/{image['image_id']}/thumbnail").status_code == 200
    folder = api.engine.settings.data_dir / "thumbnails" / image["sha256"][:2]
    assert [p.name for p in folder.iterdir()] == [f"{image['sha256']}-256.jpg"]
    api.client.delete(f"/v1/images/{image['image_id']}", headers=api.keys["write"])
    assert list(folder.iterdir()) == []


def test_images_are_listed_newest_first_and_by_folder(api: Api, tmp_path: Path) -> None:
    album = tmp_path / "album"
    (album / "2024").mkdir(parents=True)
    (album / "2024-b").mkdir()
    names = ["2024/a.png", "2024/b.png", "2024-b/c.png", "d.png"]
    colours = [(200, 0, 0), (0, 200, 0), (0, 0, 200), (200, 200, 0)]
    for name, colour in zip(names, colours, strict=True):
        Image.new("RGB", (64, 48), colour).save(album / name)
        api.engine.index([album / name], descriptors=["phash"], progress=False)
    ids = {name: ids_by_name(api)[Path(name).name] for name in names}
    a, b, c, d = (ids[n] for n in names)

    def listed(**params: Any) -> tuple[int, list[int]]:
        r = api.get("/v1/images", params=params)
        assert r.status_code == 200, r.text
        return r.json()["total"], [i["image_id"] for i in r.json()["images"]]

    assert listed() == (4, [a, b, c, d])
    assert listed(order="oldest", limit=2, offset=1) == (4, [b, c])
    assert listed(order="newest") == (4, [d, c, b, a])
    assert listed(order="newest", limit=1, offset=1) == (4, [c])
    # A folder holds its subfolders, not its siblings that share a prefix; a trailing slash
    # changes nothing.
    assert listed(order="newest", folder=str(album / "2024")) == (2, [b, a])
    assert listed(order="newest", folder=f"{album}/2024/") == (2, [b, a])
    assert listed(folder=str(album)) == (4, [a, b, c, d])
    assert listed(folder=str(album / "2024-b"), limit=1) == (1, [c])
    assert listed(folder=str(tmp_path / "elsewhere")) == (0, [])
    # The neighbours of one image in either order (total: all of them still).
    assert listed(order="newest", after=c, limit=1) == (4, [b])
    assert listed(order="oldest", after=c, limit=1) == (4, [d])
    assert listed(order="newest", after=a) == (4, [])
    assert listed(order="newest", folder=str(album / "2024"), after=b) == (2, [a])

    r = api.get("/v1/folders")
    assert r.status_code == 200
    assert r.json() == {
        "folders": [
            {"path": str(album), "image_count": 4},
            {"path": str(album / "2024"), "image_count": 2},
            {"path": str(album / "2024-b"), "image_count": 1},
        ]
    }
    assert api.client.get("/v1/folders").status_code == 401

    for params in (
        {"order": "random"},
        {"order": ""},
        {"folder": "album/2024"},
        {"folder": ""},
        {"folder": "/a\x00b"},
        {"folder": "/" + "a" * 5000},
        {"after": 0},
        {"after": "x"},
        {"after": 2**70},
    ):
        r = api.get("/v1/images", params=params)
        assert r.status_code == 422 and r.json()["error"]["code"] == "bad_input", params


def test_a_folder_whose_name_is_not_utf8_is_listed_escaped_and_filters_so(
    api: Api, tmp_path: Path
) -> None:
    album = os.fsencode(tmp_path / "album")
    folders = {b"caf\xe9": (200, 0, 0), b"caf\\xe9": (0, 200, 0)}  # bytes; a look-alike name
    for name, colour in folders.items():
        folder = os.fsdecode(album + b"/" + name)
        os.makedirs(folder)
        Image.new("RGB", (64, 48), colour).save(os.path.join(folder, "a.png"))
        api.engine.index([folder], descriptors=["phash"], progress=False)
    shown = f"{tmp_path}/album/caf\\xe9"  # how both are shown
    listed = api.get("/v1/folders").json()["folders"]
    assert [f["path"] for f in listed] == [shown, shown]

    def sha_in(folder: str) -> list[str]:
        r = api.get("/v1/images", params={"folder": folder})
        assert r.status_code == 200
        return [i["sha256"] for i in r.json()["images"]]

    # The escaped name is the folder named so when there is one; otherwise the one whose
    # name the escape stands for.
    (literal,) = sha_in(shown)
    api.engine.remove([os.fsdecode(album + b"/caf\\xe9")])
    (raw,) = sha_in(shown)
    assert raw != literal
    assert sha_in(f"{tmp_path}/album") == [raw]


def test_search_by_upload(indexed: Api, photos: dict[str, bytes]) -> None:
    ids = indexed.ids
    query = jpeg(sample("coffee").resize((200, 133)), quality=70)
    for descriptor in (None, "cnn", "color", "phash"):
        data = {"k": "3"} | ({"descriptor": descriptor} if descriptor else {})
        r = indexed.client.post(
            "/v1/search",
            files={"file": ("query.jpg", query)},
            data=data,
            headers=indexed.keys["read"],
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["query"] == "query.jpg" and body["descriptor"] == (descriptor or "cnn")
        assert len(body["results"]) == 3 and body["results"][0]["image_id"] == ids["coffee"]
        assert [h["rank"] for h in body["results"]] == [1, 2, 3]
    r = indexed.client.post(
        "/v1/search",
        files={"file": ("q.jpg", query)},
        data={"k": 1000},
        headers=indexed.keys["read"],
    )
    assert len(r.json()["results"]) == 5


@pytest.mark.parametrize(
    ("data", "upload", "status"),
    [
        ({"k": "0"}, b"", 422),
        ({"k": "1001"}, b"", 422),
        ({"k": str(10**40)}, b"", 422),
        ({"k": "ten"}, b"", 422),
        ({"descriptor": "sift"}, b"", 422),
        ({}, b"plain text", 400),
        ({}, png_bomb(), 413),
        ({}, None, 422),  # no file at all
    ],
)
def test_search_rejects_bad_input(
    indexed: Api, photos: dict[str, bytes], data: dict[str, str], upload: bytes | None, status: int
) -> None:
    body: Any = None
    if upload is not None:
        body = {"file": ("q.jpg", upload or photos["rocket"])}
    r = indexed.client.post("/v1/search", files=body, data=data, headers=indexed.keys["read"])
    assert r.status_code == status, r.text
    assert set(r.json()["error"]) == {"code", "message"}


def test_search_on_an_empty_catalog_finds_nothing(api: Api, photos: dict[str, bytes]) -> None:
    r = api.client.post(
        "/v1/search", files={"file": ("q.jpg", photos["rocket"])}, headers=api.keys["read"]
    )
    assert r.status_code == 200 and r.json()["results"] == []


def test_search_and_similar_take_a_measure(indexed: Api) -> None:
    ids = indexed.ids
    query = jpeg(sample("coffee").resize((200, 133)), quality=70)
    read = indexed.keys["read"]
    for measure, higher in (("euclidean", False), ("pearson", True), ("cosine", True)):
        r = indexed.client.post(
            "/v1/search",
            files={"file": ("q.jpg", query)},
            data={"k": "3", "measure": measure},
            headers=read,
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["measure"], body["higher_is_better"], body["expanded"]) == (
            measure,
            higher,
            False,
        )
        assert body["results"][0]["image_id"] == ids["coffee"]
        similar = indexed.get(
            f"/v1/images/{ids['coffee']}/similar", params={"k": 3, "measure": measure}
        ).json()
        assert similar["results"][0]["score"] == (1.0 if higher else 0.0)
        scores = [h["score"] for h in similar["results"]]
        assert scores == sorted(scores, reverse=higher)
    expanded = indexed.get(
        f"/v1/images/{ids['coffee']}/similar", params={"k": 3, "expand": "true"}
    ).json()
    assert expanded["expanded"] and expanded["results"][0]["image_id"] == ids["coffee"]
    for params in (
        {"measure": "manhattan"},
        {"measure": "euclidean", "descriptor": "phash"},
        {"measure": "pearson", "expand": "true"},
    ):
        r = indexed.get(f"/v1/images/{ids['coffee']}/similar", params=params)
        assert r.status_code == 422, params
        assert set(r.json()["error"]) == {"code", "message"}
    r = indexed.client.post(
        "/v1/search",
        files={"file": ("q.jpg", query)},
        data={"measure": "hamming"},
        headers=read,
    )
    assert r.status_code == 422 and "cnn descriptor compares by" in r.json()["error"]["message"]


def test_similar_to_an_indexed_image_starts_with_itself(indexed: Api) -> None:
    ids = indexed.ids
    for descriptor in ("cnn", "color", "phash"):
        r = indexed.get(
            f"/v1/images/{ids['chelsea']}/similar", params={"k": 3, "descriptor": descriptor}
        )
        assert r.status_code == 200, r.text
        hits = r.json()["results"]
        assert len(hits) == 3 and hits[0]["image_id"] == ids["chelsea"]
        assert hits[0]["score"] == 1.0 and hits[0]["rank"] == 1
        assert len({h["image_id"] for h in hits}) == 3
    everything = indexed.get(f"/v1/images/{ids['rocket']}/similar", params={"k": 50}).json()
    assert len(everything["results"]) == 5
    for params in ({"k": 0}, {"k": 1001}, {"descriptor": "nope"}):
        r = indexed.get(f"/v1/images/{ids['rocket']}/similar", params=params)
        assert r.status_code == 422


def test_duplicates_endpoint(api: Api, photos: dict[str, bytes]) -> None:
    image = sample("chelsea")
    smaller = jpeg(image.resize((image.width // 2, image.height // 2)), quality=80)
    pair = api.upload(("chelsea.jpg", photos["chelsea"]), ("small.jpg", smaller)).json()
    api.upload(("rocket.jpg", photos["rocket"]))
    r = api.get("/v1/duplicates")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["exact"] == []
    (group,) = body["near"]
    assert {i["sha256"] for i in group["images"]} == {i["sha256"] for i in pair["images"]}
    # The stored uploads were read to verify the pair: a copy, not another shot.
    assert body["scenes"] == [] and body["unverified"] == []
    assert api.get("/v1/duplicates", params={"threshold": 0.99}).status_code == 200
    unchecked = api.get("/v1/duplicates", params={"verify": "false"}).json()
    assert unchecked["near"] == body["near"] and unchecked["scenes"] == []
    for bad in ("2", "-0.5", "nan", "x"):
        assert api.get("/v1/duplicates", params={"threshold": bad}).status_code == 422


# -- deletion ----------------------------------------------------------------------------


def test_delete_forgets_the_image_and_its_stored_file(api: Api, photos: dict[str, bytes]) -> None:
    r = api.upload(("a.jpg", photos["astronaut"]), ("c.jpg", photos["chelsea"]))
    astronaut, chelsea = r.json()["images"]
    url = f"/v1/images/{astronaut['image_id']}"
    (path,) = api.get(url).json()["paths"]
    r = api.client.delete(url, headers=api.keys["write"])
    assert r.status_code == 200 and r.json()["files_deleted"] == [path]
    assert r.json()["image_id"] == astronaut["image_id"] and r.json()["paths"] == [path]
    assert not Path(path).exists()
    assert api.get(url).status_code == 404
    assert api.client.delete(url, headers=api.keys["write"]).status_code == 404
    listing = api.get("/v1/images").json()
    assert [i["image_id"] for i in listing["images"]] == [chelsea["image_id"]]
    r = api.client.post(
        "/v1/search",
        files={"file": ("q.jpg", photos["astronaut"])},
        data={"k": 10},
        headers=api.keys["read"],
    )
    assert [h["image_id"] for h in r.json()["results"]] == [chelsea["image_id"]]
    # Uploading the same bytes again brings it back, as a new image.
    again = api.upload(("a.jpg", photos["astronaut"])).json()["images"][0]
    assert again["status"] == "added" and Path(path).exists()


def test_delete_leaves_files_outside_the_uploads_folder(api: Api, photo_dir: Path) -> None:
    api.engine.index([photo_dir], progress=False)
    ids = ids_by_name(api)
    r = api.client.delete(f"/v1/images/{ids['rocket.jpg']}", headers=api.keys["write"])
    assert r.status_code == 200 and r.json()["files_deleted"] == []
    assert (photo_dir / "rocket.jpg").exists()
    assert api.get("/v1/images").json()["total"] == 5


# -- malformed requests --------------------------------------------------------------------


def test_malformed_requests_get_4xx_json(api: Api) -> None:
    w = api.keys["write"]
    attempts = [
        api.client.post("/v1/images", json={"files": "x"}, headers=w),
        api.client.post("/v1/images", data={"files": "not a file"}, headers=w),
        api.client.post("/v1/images", content=b"garbage", headers=w),
        api.client.post(
            "/v1/images",
            content=b"--xyz\r\nContent-Disposition: form-data\r\n\r\n\x00\xff--",
            headers={**w, "content-type": "multipart/form-data; boundary=xyz"},
        ),
        api.client.post(
            "/v1/images", content=b"abc", headers={**w, "content-type": "multipart/form-data"}
        ),
        api.client.post(
            "/v1/images",
            content=b"--a\r\n\r\n--a--\r\n",
            headers={**w, "content-type": "multipart/form-data; boundary=a"},
        ),
        api.client.post("/v1/search", json={"k": 3}, headers=api.keys["read"]),
        api.client.put("/v1/images/1", headers=w),
    ]
    for r in attempts:
        assert 400 <= r.status_code < 500, (r.status_code, r.text)
        assert set(r.json()["error"]) == {"code", "message"}
    assert api.stored() == []
