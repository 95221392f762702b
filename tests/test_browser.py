"""The web page in a real headless Chromium (Debian's, driven by Playwright) against a real
``lookalike serve``: the key form, search by a dropped photo, adding photos, the image view
with face boxes, near duplicates, naming face clusters (and the 409 -> merge path), renaming;
faces boxed where the API says and leading to their person's or cluster's photos.

Photos: scikit-image's samples; the astronaut three times (as is, mirrored and shrunk, and
twice side by side), so that her faces form two clusters (two faces of one photo never
share one).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageFilter

from tests.servers import free_port, stop

from .conftest import sample

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}"),
]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = sync_api.expect

# The CLI as a subprocess, with this interpreter (no console script needed on PATH).
LOOKALIKE = [sys.executable, "-c", "from lookalike.cli.main import main; main()"]
# Another site, and what its page does to a lookalike server on this machine without
# keys: a no-cors fetch upload and a multipart form enrolling someone.
EVIL_HOST = "evil.example"
EVIL_PAGE = """<!doctype html><title>working</title>
<form id="enrol" method="post" enctype="multipart/form-data" target="sink"
      action="TARGET/v1/people">
  <input name="name" value="Mallory"><input type="file" name="files" id="file">
</form>
<iframe name="sink"></iframe>
<script>
const bytes = Uint8Array.from(atob("PHOTO"), (c) => c.charCodeAt(0));
const photo = new File([bytes], "evil.jpg", { type: "image/jpeg" });
(async () => {
  const body = new FormData();
  body.append("files", photo);
  await fetch("TARGET/v1/images", { method: "POST", mode: "no-cors", body });
  const chosen = new DataTransfer();
  chosen.items.add(photo);
  document.getElementById("file").files = chosen.files;
  document.getElementById("enrol").submit();
  document.title = "done";
})();
</script>"""


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def photos() -> dict[str, bytes]:
    """The collection: three photos of the astronaut, five without a face (two rockets)."""
    astronaut = sample("astronaut")
    mirrored = astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    pair = Image.new("RGB", (2 * astronaut.width, astronaut.height))
    pair.paste(astronaut, (0, 0))
    pair.paste(mirrored, (astronaut.width, 0))
    return {
        "astronaut.png": png(astronaut),
        "mirror.jpg": jpeg(mirrored.resize((400, 400), Image.Resampling.LANCZOS), 85),
        "pair.jpg": jpeg(pair),
        "chelsea.jpg": jpeg(sample("chelsea")),
        "coffee.png": png(sample("coffee")),
        "rocket.jpg": jpeg(sample("rocket")),
        "rocket-small.jpg": jpeg(sample("rocket").resize((256, 213)), 75),
        "motorcycle.jpg": jpeg(sample("motorcycle_left")),
    }


class Server:
    def __init__(self, url: str, key: str, images: dict[str, Any]) -> None:
        self.url = url
        self.key = key
        self.images = images  # upload answers, by file name


@contextmanager
def serving(data: Path, *args: str) -> Iterator[tuple[str, Path]]:
    """``lookalike serve ARGS`` on a free loopback port over ``data``: its URL and log."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = data.parent / f"server-{port}.log"
    # The folder in the environment as well: never the developer's own data folder.
    env = {**os.environ, "LOOKALIKE_DATA_DIR": str(data)}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*LOOKALIKE, "serve", "--port", str(port), "--data-dir", str(data), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited: {log_path.read_text(errors='replace')}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no /healthz in 60 s: {log_path.read_text(errors='replace')}")
            time.sleep(0.2)
        yield url, log_path
    finally:
        stop(proc, timeout=20)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``lookalike serve`` on a free port, a fresh data folder with the photos uploaded."""
    data = tmp_path_factory.mktemp("serve-data")
    created = subprocess.run(
        [*LOOKALIKE, "keys", "create", "--scope", "admin", "--json", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "LOOKALIKE_DATA_DIR": str(data)},
    )
    key = json.loads(created.stdout)["key"]
    with serving(data) as (url, _):
        files = [("files", (name, body)) for name, body in photos().items()]
        r = httpx.post(f"{url}/v1/images", files=files, headers={"X-API-Key": key}, timeout=300)
        assert r.status_code == 200, r.text
        images = {item["filename"]: item for item in r.json()["images"]}
        yield Server(url, key, images)


@pytest.fixture()
def page(server: Server) -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        # Chromium's sandbox cannot start as root (containers, CI).
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        # evil.example is this machine, as DNS rebinding makes it.
        args.append(f"--host-resolver-rules=MAP {EVIL_HOST} 127.0.0.1")
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page
            assert not errors, errors
        finally:
            browser.close()


def loaded(page: Any, selector: str) -> None:
    """Wait until the first image matching ``selector`` has been fetched and decoded."""
    page.wait_for_function(
        "s => { const i = document.querySelector(s);"
        " return i && i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0 }",
        arg=selector,
    )


def drop_file(page: Any, selector: str, name: str, data: bytes, mime: str) -> None:
    """Drop a file on ``selector`` as a drag from the desktop would."""
    transfer = page.evaluate_handle(
        """([name, b64, mime]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: mime }));
            return transfer;
        }""",
        [name, base64.b64encode(data).decode(), mime],
    )
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def test_key_search_view_and_people(server: Server, page: Any, tmp_path: Path) -> None:
    images = server.images
    assert images["astronaut.png"]["faces"], "the astronaut's face should be found"
    page.goto(server.url)

    # A wrong key is refused with the server's message; the right one is kept.
    page.get_by_label("Key").fill("lka_00000000_wrong")
    page.get_by_role("button", name="Save key").click()
    expect(page.locator("#key-reason")).to_contain_text("Unknown or revoked API key")
    page.get_by_label("Key").fill(server.key)
    page.get_by_role("button", name="Save key").click()
    expect(page.locator("#key-form")).to_be_hidden()
    assert page.evaluate("localStorage.getItem('lookalike.key')") == server.key

    # Search: a dropped, cropped copy of chelsea finds chelsea first, with its score.
    cat = sample("chelsea")
    query = jpeg(cat.crop((20, 10, cat.width - 20, cat.height - 10)), 80)
    drop_file(page, "#drop", "cat.jpg", query, "image/jpeg")
    first = page.locator("#results li").first
    expect(first).to_have_attribute("data-image-id", str(images["chelsea.jpg"]["image_id"]))
    expect(first.locator(".score")).to_have_text(re.compile(r"^#1 · [01]\.\d{3}$"))
    expect(page.locator("#search-status")).to_contain_text("results for cat.jpg")
    loaded(page, "#results li img")

    # Clicking a result opens the image view.
    first.get_by_role("button").click()
    expect(page.locator("#viewer")).to_be_visible()
    chelsea = images["chelsea.jpg"]["image_id"]
    expect(page.locator("#viewer-title")).to_contain_text(f"Image {chelsea}")
    loaded(page, "#viewer-photo img")
    page.get_by_role("button", name="Close").click()

    # Adding a photo already there says so; its view shows her face boxed.
    again = tmp_path / "again.png"
    again.write_bytes(png(sample("astronaut")))
    page.get_by_label("Photos to add").set_input_files(str(again))
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator("#added")).to_contain_text("again.png duplicate, 1 face(s)")
    page.locator("#added").get_by_role("button", name="again.png").click()
    # (the view keeps the last photo until the next one's metadata has come)
    loaded(page, f'#viewer-photo img[alt="Image {images["astronaut.png"]["image_id"]}"]')
    box = page.locator("#viewer-photo .box")
    expect(box).to_have_count(1)
    expect(box).to_contain_text("unnamed (group")
    # The box is scaled to the displayed photo: her face is in its upper middle.
    photo = page.locator("#viewer-photo img").bounding_box()
    face = box.bounding_box()
    assert photo is not None and face is not None
    assert photo["x"] < face["x"] < face["x"] + face["width"] < photo["x"] + photo["width"]
    assert face["y"] - photo["y"] < photo["height"] / 2
    page.keyboard.press("Escape")
    expect(page.locator("#viewer")).to_be_hidden()

    # Duplicates: the two rockets in one row of thumbnails (and the astronaut with her
    # mirrored copy in another).
    page.get_by_role("button", name="Duplicates").click()
    tile = '.tile[data-image-id="{}"]'.format
    rockets = page.locator("#near li", has=page.locator(tile(images["rocket.jpg"]["image_id"])))
    expect(rockets.locator(tile(images["rocket-small.jpg"]["image_id"]))).to_have_count(1)
    expect(rockets.locator("img")).to_have_count(2)
    loaded(page, "#near li img")

    # People: two groups of her faces (pair.jpg holds her twice); name the bigger one.
    page.get_by_role("button", name="People").click()
    page.get_by_label("Smallest group").fill("1")
    page.get_by_role("button", name="Show").click()
    clusters = page.locator("#clusters li.cluster")
    expect(clusters).to_have_count(2)
    loaded(page, "#clusters li.cluster img")
    big = clusters.first
    big.get_by_label("Name").fill("Eileen")
    big.get_by_role("button", name="Name", exact=True).click()
    expect(page.locator("#people li.person")).to_have_count(1)
    expect(page.locator("#people li.person")).to_contain_text("Eileen")
    expect(clusters).to_have_count(1)

    # The same name again: 409, the page asks, and merges when told to.
    asked: list[str] = []

    def accept(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    clusters.first.get_by_label("Name").fill("Eileen")
    clusters.first.get_by_role("button", name="Name", exact=True).click()
    expect(clusters).to_have_count(0)
    assert asked and asked[0].startswith("Eileen exists: merge")
    person = page.locator("#people li.person")
    expect(person).to_have_count(1)
    faces = sum(len(images[n]["faces"]) for n in ("astronaut.png", "mirror.jpg", "pair.jpg"))
    expect(person).to_contain_text(f"Eileen {faces} face(s)")

    # Rename: the list shows the new name.
    person.get_by_label("Rename").fill("Eileen Collins")
    person.get_by_role("button", name="Rename").click()
    expect(person.locator("strong")).to_have_text("Eileen Collins")


@contextmanager
def site(page_html: str) -> Iterator[str]:
    """Another web site on this machine serving ``page_html``; its URL under EVIL_HOST."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page_html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{EVIL_HOST}:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_other_sites_cannot_use_a_server_without_keys(
    page: Any, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    data = tmp_path_factory.mktemp("open-data")
    with serving(data, "--no-auth") as (url, log):
        photo = base64.b64encode(jpeg(sample("astronaut"))).decode()
        evil = EVIL_PAGE.replace("TARGET", url).replace("PHOTO", photo)
        with site(evil) as other:
            page.goto(other)
            expect(page).to_have_title("done")
            # Both requests reached the server, and were refused before reading a byte.
            deadline = time.monotonic() + 30
            refused = ('"POST /v1/images HTTP/1.1" 403', '"POST /v1/people HTTP/1.1" 403')
            while not all(line in log.read_text() for line in refused):
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        # DNS rebinding: evil.example is 127.0.0.1 now; the server does not answer to it.
        port = url.rsplit(":", 1)[1]
        rebound = page.goto(f"http://{EVIL_HOST}:{port}/")
        assert rebound is not None and rebound.status == 400
        assert rebound.json()["error"]["code"] == "bad_host"
        with httpx.Client(base_url=url) as api:
            assert api.get("/v1/images").json()["total"] == 0
            assert api.get("/v1/people").json() == {"people": []}

        # The server's own page works without a key: it is same-origin.
        page.goto(url)
        expect(page.locator("#key-form")).to_be_hidden()
        mine = tmp_path / "mine.jpg"
        mine.write_bytes(jpeg(sample("astronaut")))
        page.get_by_label("Photos to add").set_input_files(str(mine))
        page.get_by_role("button", name="Add", exact=True).click()
        # (the server's first upload: the models load first)
    expect(page.locator("#added")).to_contain_text("mine.jpg added, 1 face(s)", timeout=120_000)


def photos_with_faces() -> dict[str, bytes]:
    """Uploads of the face test: her face too blurred to recognise (on a grey ground), and
    her photo (cut wider than tall) stored on its side with an EXIF orientation that turns
    it upright."""
    astronaut = sample("astronaut")
    small = Image.new("RGB", (512, 512), (120, 120, 120))
    blurred = astronaut.resize((300, 300), Image.Resampling.LANCZOS)
    small.paste(blurred.filter(ImageFilter.GaussianBlur(1.5)), (50, 150))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    sideways = io.BytesIO()
    wide = astronaut.crop((0, 0, 512, 384)).transpose(Image.Transpose.ROTATE_90)
    wide.save(sideways, "JPEG", exif=exif.tobytes())
    return {"small.jpg": jpeg(small), "sideways.jpg": sideways.getvalue()}


def add_and_view(page: Any, api: httpx.Client, folder: Path, name: str) -> Any:
    """Add ``name`` (of photos_with_faces, one face) with the page's form and open it from
    the list of added photos; returns the API's answer for the image."""
    path = folder / name
    path.write_bytes(photos_with_faces()[name])
    page.get_by_label("Photos to add").set_input_files([str(path)])
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator("#added")).to_contain_text(f"{name} added, 1 face(s)")
    page.locator("#added").get_by_role("button", name=name).click()
    image = api.get(f"/v1/images/{viewed(page)}").json()
    open_view(page, image)
    return image


def assert_boxed(page: Any, face: dict[str, Any], image: dict[str, Any]) -> Any:
    """The face's box on the page is the API's box, scaled to the displayed photo; returns
    the box's locator."""
    box = page.locator(f'#viewer-photo .box[data-face-id="{face["face_id"]}"]')
    photo = page.locator("#viewer-photo img").bounding_box()
    shown = box.bounding_box()
    assert photo is not None and shown is not None
    sx, sy = photo["width"] / image["width"], photo["height"] / image["height"]
    assert abs(sx - sy) < 0.01, (photo, image)  # the photo is shown the way up it is
    left, top, right, bottom = face["box"]
    want = [photo["x"] + left * sx, photo["y"] + top * sy, (right - left) * sx, (bottom - top) * sy]
    got = [shown["x"], shown["y"], shown["width"], shown["height"]]
    assert all(abs(a - b) < 1.5 for a, b in zip(got, want, strict=True)), (got, want)
    return box


def open_view(page: Any, image: dict[str, Any]) -> None:
    """Wait until the image view shows ``image``'s photo, decoded."""
    expect(page.locator("#viewer")).to_be_visible()
    expect(page.locator("#viewer-title")).to_contain_text(f"Image {image['image_id']} ")
    loaded(page, f'#viewer-photo img[alt="Image {image["image_id"]}"]')


def viewed(page: Any) -> int:
    """The id of the image the view opens (it opens once its metadata has come)."""
    expect(page.locator("#viewer")).to_be_visible()
    found = re.match(r"Image (\d+) ", page.locator("#viewer-title").text_content() or "")
    assert found is not None
    return int(found.group(1))


def expect_photos(page: Any, title: str, api: httpx.Client, url: str) -> None:
    """The photos view shows ``title`` and exactly the images ``url`` answers, in order."""
    expect(page.locator("#tab-photos")).to_be_visible()
    expect(page.locator("#photos-title")).to_have_text(title)
    want = [str(i["image_id"]) for i in api.get(url).json()["images"]]
    assert want
    tiles = page.locator("#photos li")
    expect(tiles).to_have_count(len(want))
    assert [tiles.nth(i).get_attribute("data-image-id") for i in range(len(want))] == want
    loaded(page, "#photos li img")


def test_faces_in_the_image_view_lead_to_their_photos(
    server: Server, page: Any, tmp_path: Path
) -> None:
    headers = {"X-API-Key": server.key}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as api:
        # pair.jpg: her left face confirmed as a person, her right one in a cluster of its own.
        pair = api.get(f"/v1/images/{server.images['pair.jpg']['image_id']}").json()
        left, right = sorted(pair["faces"], key=lambda f: f["box"][0])
        r = api.post(f"/v1/faces/{left['face_id']}/assign", json={"person": "Eileen Collins"})
        person = r.json()
        cluster = api.post(f"/v1/faces/{right['face_id']}/move", json={"cluster_id": None})
        cluster_id = cluster.json()["cluster_id"]
        pair = api.get(f"/v1/images/{pair['image_id']}").json()

        page.set_viewport_size({"width": 1000, "height": 800})
        page.goto(server.url)
        page.evaluate("key => localStorage.setItem('lookalike.key', key)", server.key)
        page.reload()

        # People -> her photos -> pair.jpg.
        page.get_by_role("button", name="People").click()
        row = page.locator(f'#people li[data-person-id="{person["person_id"]}"]')
        row.get_by_role("button", name="Photos").click()
        person_url = f"/v1/people/{person['person_id']}/images"
        expect_photos(page, "Photos of Eileen Collins", api, person_url)
        page.locator(f'#photos li[data-image-id="{pair["image_id"]}"] button').click()
        open_view(page, pair)
        expect(page.locator("#viewer-title")).to_contain_text("2 faces")

        # Both faces boxed where the API says, scaled: the photo is shown smaller than it is.
        assert page.locator("#viewer-photo img").bounding_box()["width"] < pair["width"]
        shown = {f["face_id"]: f for f in pair["faces"]}
        person_box = assert_boxed(page, shown[left["face_id"]], pair)
        cluster_box = assert_boxed(page, shown[right["face_id"]], pair)
        expect(person_box).to_have_text(f"{left['face_index'] + 1}: Eileen Collins")
        expect(cluster_box).to_have_text(f"{right['face_index'] + 1}: unnamed (group {cluster_id})")

        # The cluster's face, from the keyboard: its photos (pair.jpg alone); back to it.
        group = f"Photos of unnamed group {cluster_id}"
        button = page.get_by_role("button", name=f"unnamed (group {cluster_id}). Show the photos")
        expect(button).to_have_attribute("data-face-id", str(right["face_id"]))
        button.focus()
        page.keyboard.press("Enter")
        expect(page.locator("#viewer")).to_be_hidden()
        expect_photos(page, group, api, f"/v1/clusters/{cluster_id}/images")
        expect(page.locator("#photos li")).to_have_count(1)
        page.locator("#photos li button").click()
        open_view(page, pair)

        # Her face: the person's photos again.
        her = f"Face {left['face_index'] + 1}: Eileen Collins. Show the photos of Eileen Collins"
        page.get_by_role("button", name=her, exact=True).click()
        expect_photos(page, "Photos of Eileen Collins", api, person_url)

        # An upload with a face too blurred to recognise: a dashed outline, not a button.
        page.get_by_role("button", name="Search").click()
        small = add_and_view(page, api, tmp_path, "small.jpg")
        (face,) = small["faces"]
        assert not face["usable"] and face["cluster_id"] is None and face["person_id"] is None
        outline = assert_boxed(page, face, small)
        assert outline.evaluate("e => e.tagName") == "DIV"
        assert outline.evaluate("e => getComputedStyle(e).borderTopStyle") == "dashed"
        expect(outline).to_have_attribute("aria-label", re.compile("too small or blurred"))
        expect(page.locator("#viewer-photo button")).to_have_count(0)
        page.keyboard.press("Escape")

        # A photo stored on its side: photo and box both upright (it is wider than tall).
        sideways = add_and_view(page, api, tmp_path, "sideways.jpg")
        assert sideways["width"] > sideways["height"]
        (face,) = sideways["faces"]
        assert_boxed(page, face, sideways)


# Records the search forms the page sends through fetch (a multipart body holding a file is
# not readable from the request on Chromium's side), and the last answer.
SENT_FORMS = """
window.sentForms = [];
const send = window.fetch;
window.fetch = (url, options = {}) => {
  if (String(url).endsWith("/v1/search") && options.body instanceof FormData) {
    const form = options.body;
    window.sentForms.push({
      box: form.get("box"), descriptor: form.get("descriptor"), file: form.get("file").name,
    });
  }
  const answer = send(url, options);
  answer.then((r) => r.clone().json()).then((found) => (window.lastAnswer = found), () => {});
  return answer;
};
"""


def test_a_box_drawn_on_the_query_photo_searches_that_region(server: Server, page: Any) -> None:
    # The query: a wide photo of the motorcycle with the cat, shrunk, in its right part.
    scene = sample("motorcycle_left").resize((1200, 600))
    cat = sample("chelsea").resize((420, 280))
    scene.paste(cat, (720, 260))
    # The search forms the page sends, as it sends them.
    page.add_init_script(SENT_FORMS)
    page.goto(server.url)
    page.evaluate("key => localStorage.setItem('lookalike.key', key)", server.key)
    page.reload()
    drop_file(page, "#drop", "scene.jpg", jpeg(scene), "image/jpeg")
    expect(page.locator("#search-status")).to_contain_text("results for scene.jpg")
    page.wait_for_function(
        "() => { const i = document.querySelector('#query-photo img');"
        " return i && i.complete && i.naturalWidth > 0 }"
    )
    photo = page.locator("#query-photo img").bounding_box()
    assert photo is not None
    scale = photo["width"] / 1200

    def at(x: float, y: float) -> tuple[float, float]:
        return photo["x"] + x * scale, photo["y"] + y * scale

    # Drag from the cat's top left to its bottom right: the search runs with that box.
    page.mouse.move(*at(725, 265))
    page.mouse.down()
    page.mouse.move(*at(900, 400), steps=4)
    page.mouse.move(*at(1135, 535), steps=4)
    page.mouse.up()
    page.wait_for_function("() => window.sentForms.length === 2")
    sent = page.evaluate("window.sentForms[1]")
    assert sent["descriptor"] == "cnn" and sent["file"] == "scene.jpg"
    left, top, right, bottom = map(int, sent["box"].split(","))
    assert abs(left - 725) <= 4 and abs(top - 265) <= 4, sent
    assert abs(right - 1135) <= 4 and abs(bottom - 535) <= 4, sent
    expect(page.locator("#search-box")).to_have_value(sent["box"])
    expect(page.locator("#query-photo .box")).to_have_count(1)
    chelsea = server.images["chelsea.jpg"]["image_id"]
    first = page.locator("#results li").first
    expect(first).to_have_attribute("data-image-id", str(chelsea))
    expect(page.locator("#search-status")).to_contain_text(f"region {sent['box']} of scene.jpg")
    # Results matched by a region show it boxed over their thumbnail.
    found = page.evaluate("window.lastAnswer")["results"]
    regions = [hit for hit in found if hit["region"]]
    assert regions and all(len(hit["image_size"]) == 2 for hit in regions)
    expect(page.locator("#results .box.region")).to_have_count(len(regions))

    # The keyboard's way: a typed box searches that region; a box outside the photo says so.
    page.get_by_label("Region").fill("0,0,500,600")
    page.get_by_role("button", name="Search region").click()
    page.wait_for_function("() => window.sentForms.length === 3")
    assert page.evaluate("window.sentForms[2].box") == "0,0,500,600"
    expect(page.locator("#search-status")).to_contain_text("region 0,0,500,600 of scene.jpg")
    page.get_by_label("Region").fill("2000,0,2100,600")
    page.get_by_role("button", name="Search region").click()
    expect(page.locator("#error")).to_contain_text("outside the 1200x600 image")
    page.get_by_role("button", name="Whole photo").click()
    expect(page.locator("#search-status")).to_contain_text("results for scene.jpg (")
    expect(page.locator("#query-photo .box")).to_have_count(0)
