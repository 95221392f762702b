"""The web page in a real headless Chromium (Debian's, driven by Playwright) against a real
``lookalike serve``, view by view: the key form; the library (newest first, paged, by
folder); a photo with its faces boxed (leading to their person's or cluster's photos), its
near-duplicates and similar photos, arrow keys; search by a dropped photo or a region of it;
people (naming a group, the 409 -> merge path, undo, a wrong face taken out, renaming);
duplicates side by side and removed from the collection; adding photos with progress, and
indexing a server folder as a job; a phone's width and the keyboard alone.

Photos: scikit-image's samples, indexed from a folder (the rockets in a subfolder); the
astronaut three times (as is, mirrored and shrunk, and twice side by side), so that her
faces form two clusters (two faces of one photo never share one).

The tests share one server and run in order: each leaves the collection as the next
expects. Screenshots of the library, a photo and the people page go to a temporary folder,
or to ``--screenshots DIR`` (``docs/screenshots``: the README's).
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
    def __init__(self, url: str, key: str, images: dict[str, Any], album: Path) -> None:
        self.url = url
        self.key = key
        self.images = images  # the API's image (with faces), by file name
        self.album = album  # the indexed folder (an allowed root for jobs)

    def images_by_id(self, image_id: int) -> dict[str, Any]:
        return next(i for i in self.images.values() if i["image_id"] == image_id)

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": self.key}, timeout=120)


@contextmanager
def serving(
    data: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, Path]]:
    """``lookalike serve ARGS`` on a free loopback port over ``data``: its URL and log."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = data.parent / f"server-{port}.log"
    # The folder in the environment as well: never the developer's own data folder.
    env = {**os.environ, "LOOKALIKE_DATA_DIR": str(data), **(env or {})}
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


def cli(data: Path, *args: str) -> str:
    """Run ``lookalike ARGS`` on ``data``; its standard output."""
    env = {**os.environ, "LOOKALIKE_DATA_DIR": str(data)}
    done = subprocess.run(
        [*LOOKALIKE, *args, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return done.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``lookalike serve`` on a free port over a fresh data folder with the photos indexed
    from a folder (the rockets in a subfolder); jobs may index under that folder's parent."""
    root = tmp_path_factory.mktemp("photos")
    album = root / "album"
    (album / "rockets").mkdir(parents=True)
    for name, body in photos().items():
        (album / ("rockets" if name.startswith("rocket") else "") / name).write_bytes(body)
    data = tmp_path_factory.mktemp("serve-data")
    key = json.loads(cli(data, "keys", "create", "--scope", "admin", "--json"))["key"]
    cli(data, "index", str(album))
    roots = {"LOOKALIKE_ALLOWED_ROOTS": json.dumps([str(root)])}
    with serving(data, env=roots) as (url, _):
        with httpx.Client(base_url=url, headers={"X-API-Key": key}) as api:
            listed = api.get("/v1/images", params={"limit": 100}).json()["images"]
            images = {
                Path(i["paths"][0]).name: api.get(f"/v1/images/{i['image_id']}").json()
                for i in listed
            }
        assert len(images) == len(photos())
        yield Server(url, key, images, album)


@pytest.fixture()
def page(server: Server) -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        # Chromium's sandbox cannot start as root (containers, CI).
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        # evil.example is this machine, as DNS rebinding makes it.
        args.append(f"--host-resolver-rules=MAP {EVIL_HOST} 127.0.0.1")
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            page.set_default_timeout(60_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page
            assert not errors, errors
        finally:
            browser.close()


def open_page(page: Any, server: Server, route: str = "#/library") -> None:
    """Open the page at ``route`` with the server's key already kept in the browser."""
    page.add_init_script(f"localStorage.setItem('lookalike.key', {json.dumps(server.key)})")
    page.goto(f"{server.url}/{route}")


def loaded(page: Any, selector: str) -> None:
    """Wait until the first image matching ``selector`` has been fetched and decoded."""
    page.wait_for_function(
        "s => { const i = document.querySelector(s);"
        " return i && i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0 }",
        arg=selector,
    )


def all_loaded(page: Any, selector: str) -> None:
    """Wait until every image matching ``selector`` has been fetched and decoded."""
    page.wait_for_function(
        "s => [...document.querySelectorAll(s)].every(i => i.src.startsWith('blob:')"
        " && i.complete && i.naturalWidth > 0)",
        arg=selector,
    )


@pytest.fixture(scope="session")
def shots(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``--screenshots`` (docs/screenshots refreshes the README's),
    else a temporary folder, so a test run leaves the checkout as it was."""
    chosen: Path | None = request.config.getoption("--screenshots")
    folder = chosen if chosen is not None else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot(page: Any, shots: Path, name: str) -> None:
    """Keep what the page shows now as ``shots``/NAME.png (the README's, when refreshed)."""
    page.screenshot(path=str(shots / f"{name}.png"))


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


def tile_ids(page: Any, selector: str) -> list[int]:
    """The image ids of the tiles matching ``selector``, in order."""
    ids = page.eval_on_selector_all(selector, "els => els.map(e => e.dataset.imageId)")
    return [int(i) for i in ids]


def open_view(page: Any, image: dict[str, Any]) -> None:
    """Wait until the photo view shows ``image``'s photo, decoded."""
    expect(page.locator("#photo-facts")).to_contain_text(f"Image {image['image_id']} ·")
    loaded(page, f'#viewer-photo img[alt^="Image {image["image_id"]}:"]')


def viewed(page: Any) -> int:
    """The id of the image the photo view shows."""
    expect(page.locator("#photo-facts")).to_be_visible()
    found = re.match(r"Image (\d+) ", page.locator("#photo-facts").text_content() or "")
    assert found is not None
    return int(found.group(1))


# -- the key and the library --------------------------------------------------------------


def test_key_then_the_library_newest_first_paged_and_by_folder(
    server: Server, page: Any, shots: Path
) -> None:
    page.goto(server.url)
    # The form says where a key comes from; a wrong key is refused with the server's words.
    expect(page.locator("#key-form")).to_contain_text("lookalike keys create --scope write")
    page.get_by_label("Key").fill("lka_00000000_wrong")
    page.get_by_role("button", name="Save key").click()
    expect(page.locator("#key-reason")).to_contain_text("Unknown or revoked API key")
    page.get_by_label("Key").fill(server.key)
    page.get_by_role("button", name="Save key").click()
    expect(page.locator("#key-form")).to_be_hidden()
    assert page.evaluate("localStorage.getItem('lookalike.key')") == server.key

    # The page opens on the library: every photo, newest first, with the count.
    with server.api() as api:
        newest = [i["image_id"] for i in api.get("/v1/images?order=newest").json()["images"]]
    expect(page.locator("#library li")).to_have_count(len(server.images))
    expect(page.locator("#library-status")).to_have_text(f"{len(server.images)} photos")
    assert tile_ids(page, "#library li") == newest
    all_loaded(page, "#library li img")
    screenshot(page, shots, "library")

    # Pages in a window the first page overfills (three tiles a row): "More photos" brings
    # the next page; scrolling down brings the rest.
    page.set_viewport_size({"width": 660, "height": 150})
    page.goto(f"{server.url}/#/library?limit=6")
    expect(page.locator("#library li")).to_have_count(6)
    expect(page.locator("#library-status")).to_contain_text("(6 shown)")
    page.get_by_role("button", name="More photos").click()
    expect(page.locator("#library li")).to_have_count(len(newest))
    assert tile_ids(page, "#library li") == newest
    expect(page.get_by_role("button", name="More photos")).to_be_hidden()
    page.goto(f"{server.url}/#/library?limit=2")
    expect(page.locator("#library-status")).to_contain_text("(2 shown)")
    deadline = time.monotonic() + 30
    while page.locator("#library li").count() < len(newest):
        assert time.monotonic() < deadline, page.locator("#library-status").text_content()
        page.mouse.wheel(0, 300)
        page.wait_for_timeout(100)
    assert tile_ids(page, "#library li") == newest
    expect(page.get_by_role("button", name="More photos")).to_be_hidden()
    page.set_viewport_size({"width": 1100, "height": 800})

    # The folder filter: the rockets' subfolder holds two.
    rockets = str(server.album / "rockets")
    page.get_by_label("Folder").select_option(rockets)
    expect(page.locator("#library-status")).to_have_text(f"2 photos in {rockets}")
    want = [server.images[n]["image_id"] for n in ("rocket-small.jpg", "rocket.jpg")]
    assert sorted(tile_ids(page, "#library li")) == sorted(want)
    assert "folder=" in page.evaluate("location.hash")


def test_a_photo_shows_its_faces_near_duplicates_and_similar_photos(
    server: Server, page: Any, shots: Path
) -> None:
    pair = server.images["pair.jpg"]
    open_page(page, server)
    page.locator(f'#library li[data-image-id="{pair["image_id"]}"] a').click()
    open_view(page, pair)
    expect(page.locator("#viewer-title")).to_have_text("pair.jpg")
    expect(page.locator("#photo-facts")).to_contain_text("2 faces")
    boxes = page.locator("#viewer-photo .box")
    expect(boxes).to_have_count(2)
    expect(boxes.first).to_contain_text("unnamed (group")
    # Similar photos, by its stored vectors: the other photos of her come first.
    similar = page.locator("#photo-similar li")
    expect(similar.first).to_be_visible()
    hers = {server.images[n]["image_id"] for n in ("astronaut.png", "mirror.jpg")}
    assert set(tile_ids(page, "#photo-similar li")[:2]) == hers
    assert pair["image_id"] not in tile_ids(page, "#photo-similar li")
    expect(similar.first).to_contain_text(re.compile(r" · [01]\.\d{3}$"))
    all_loaded(page, "#photo-similar li img")
    screenshot(page, shots, "photo")

    # The rocket and its smaller copy are each other's near-duplicates.
    rocket, small = server.images["rocket.jpg"], server.images["rocket-small.jpg"]
    page.goto(f"{server.url}/#/photo/{rocket['image_id']}")
    open_view(page, rocket)
    expect(page.locator("#photo-near li")).to_have_count(1)
    assert tile_ids(page, "#photo-near li") == [small["image_id"]]
    expect(page.locator("#photo-near")).not_to_contain_text("None")
    # "Search with it": the search view, by that photo (no upload), itself first.
    page.get_by_role("link", name="Search with it").click()
    expect(page.locator("#search-status")).to_contain_text(
        f"results for image {rocket['image_id']}"
    )
    first = page.locator("#results li").first
    expect(first).to_have_attribute("data-image-id", str(rocket["image_id"]))

    # Arrow keys: through the library's order (newest first); Escape: back to the library.
    with server.api() as api:
        newest = [i["image_id"] for i in api.get("/v1/images?order=newest").json()["images"]]
    page.goto(f"{server.url}/#/library")
    expect(page.locator("#library li")).to_have_count(len(newest))
    page.locator(f'#library li[data-image-id="{newest[1]}"] a').click()
    walk_from_second(page, server, newest)
    page.keyboard.press("Escape")
    expect(page.locator("#library li")).to_have_count(len(newest))
    assert page.evaluate("location.hash") == "#/library"

    # A photo opened on its own (a link, a reload): the keys follow the library all the same.
    page.goto(f"{server.url}/#/photo/{newest[1]}")
    page.reload()
    walk_from_second(page, server, newest)


def walk_from_second(page: Any, server: Server, newest: list[int]) -> None:
    """From the second photo of the library (shown): right, then left past the first,
    which stays (arrow keys follow the library's order, newest first)."""
    open_view(page, server.images_by_id(newest[1]))
    page.keyboard.press("ArrowRight")
    open_view(page, server.images_by_id(newest[2]))
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    open_view(page, server.images_by_id(newest[0]))
    page.keyboard.press("ArrowLeft")  # the first: stays
    open_view(page, server.images_by_id(newest[0]))


def test_a_view_still_loading_never_draws_over_the_next(server: Server, page: Any) -> None:
    # The photo's details are held back until the library has been shown instead.
    pair = server.images["pair.jpg"]
    held: list[Any] = []
    page.route(f"**/v1/images/{pair['image_id']}", lambda route: held.append(route))
    open_page(page, server, f"#/photo/{pair['image_id']}")
    deadline = time.monotonic() + 30
    while not held:
        assert time.monotonic() < deadline
        page.wait_for_timeout(50)
    page.get_by_role("link", name="Library").click()
    expect(page.locator("#library li")).to_have_count(len(server.images))
    held[0].continue_()
    page.wait_for_timeout(1000)
    expect(page.locator("#photo-facts")).to_have_count(0)
    expect(page.locator("#view > *")).to_have_count(1)
    expect(page.locator("#library li")).to_have_count(len(server.images))


# -- search ------------------------------------------------------------------------------


def test_search_by_a_dropped_photo_or_one_from_the_library(server: Server, page: Any) -> None:
    images = server.images
    open_page(page, server, "#/search")
    # The descriptors are offered in words.
    for words in ("content", "colours", "exact copies"):
        expect(page.get_by_role("radio", name=words)).to_have_count(1)
    # A dropped, cropped copy of chelsea finds chelsea first, with its score.
    cat = sample("chelsea")
    query = jpeg(cat.crop((20, 10, cat.width - 20, cat.height - 10)), 80)
    drop_file(page, "#drop", "cat.jpg", query, "image/jpeg")
    first = page.locator("#results li").first
    expect(first).to_have_attribute("data-image-id", str(images["chelsea.jpg"]["image_id"]))
    expect(first.locator(".score")).to_have_text(re.compile(r"^#1 · [01]\.\d{3}$"))
    expect(page.locator("#search-status")).to_contain_text("results for cat.jpg")
    loaded(page, "#results li img")
    # A result opens its photo.
    first.get_by_role("link").click()
    open_view(page, images["chelsea.jpg"])
    page.keyboard.press("Escape")
    expect(page.locator("#results")).to_be_visible()

    # Picked from the library, by colours: no upload, the photo itself first.
    page.get_by_role("radio", name="colours").check()
    page.get_by_role("button", name="pick one from the library").click()
    coffee = images["coffee.png"]["image_id"]
    page.locator(f'#picker li[data-image-id="{coffee}"] button').click()
    expect(page.locator("#picker")).to_be_hidden()
    expect(page.locator("#search-status")).to_contain_text(f"results for image {coffee}")
    expect(page.locator("#results li").first).to_have_attribute("data-image-id", str(coffee))


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
    open_page(page, server, "#/search")
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
    # In words, never the API's JSON.
    expect(page.locator("#error")).not_to_contain_text("{")
    page.get_by_role("button", name="Whole photo").click()
    expect(page.locator("#search-status")).to_contain_text("results for scene.jpg (")
    expect(page.locator("#query-photo .box")).to_have_count(0)


# -- people --------------------------------------------------------------------------------


def test_naming_a_group_shows_on_the_people_page_and_can_be_undone(
    server: Server, page: Any, shots: Path
) -> None:
    images = server.images
    open_page(page, server, "#/people")
    expect(page.locator("#people")).to_contain_text("Nobody named yet")
    # Two groups of her faces (pair.jpg holds her twice).
    page.get_by_label("Smallest group").fill("1")
    page.get_by_role("button", name="Show").click()
    clusters = page.locator("#clusters li.cluster")
    expect(clusters).to_have_count(2)
    loaded(page, "#clusters li.cluster img")
    first_id = clusters.first.get_attribute("data-cluster-id")

    # Named: a card with her face and her photos' count; the group is gone.
    clusters.first.get_by_label("Name").fill("Eileen")
    clusters.first.get_by_role("button", name="Name", exact=True).click()
    card = page.locator("#people li.person")
    expect(card).to_have_count(1)
    expect(card).to_contain_text("Eileen")
    expect(card).to_contain_text(re.compile(r"\d photos?, 2 faces"))
    loaded(page, "#people li.person img")
    expect(clusters).to_have_count(1)

    # Undo: nobody named, two groups again.
    expect(page.locator("#undo")).to_contain_text("named Eileen")
    page.get_by_role("button", name="Undo").click()
    expect(page.locator("#undo")).to_contain_text("Undone")
    expect(page.locator("#people")).to_contain_text("Nobody named yet")
    page.get_by_label("Smallest group").fill("1")
    page.get_by_role("button", name="Show").click()
    expect(clusters).to_have_count(2)
    assert first_id not in [clusters.nth(i).get_attribute("data-cluster-id") for i in range(2)]

    # Named again, then the other group with the same name: 409, asked, merged.
    clusters.first.get_by_label("Name").fill("Eileen")
    clusters.first.get_by_role("button", name="Name", exact=True).click()
    expect(clusters).to_have_count(1)
    # (the page as a user finds it: a person, and a group of faces to review)
    page.reload()
    expect(card).to_have_count(1)
    expect(clusters).to_have_count(1)
    all_loaded(page, "#view img")
    screenshot(page, shots, "people")
    asked: list[str] = []

    def accept(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    clusters.first.get_by_label("Name").fill("eileen")
    clusters.first.get_by_role("button", name="Name", exact=True).click()
    expect(clusters).to_have_count(0)
    assert asked and asked[0].startswith("eileen exists: merge")
    faces = sum(len(images[n]["faces"]) for n in ("astronaut.png", "mirror.jpg", "pair.jpg"))
    expect(card).to_have_count(1)
    expect(card).to_contain_text(f"3 photos, {faces} faces")

    # Her page: all her photos; renamed there (and the rename undone, then done again).
    card.get_by_role("link").click()
    expect(page.locator("#photos-title")).to_have_text("Photos of Eileen")
    expect(page.locator("#photos li")).to_have_count(3)
    page.get_by_label("Rename").fill("Eileen Collins")
    page.get_by_role("button", name="Rename").click()
    expect(page.locator("#photos-title")).to_have_text("Photos of Eileen Collins")
    page.get_by_role("button", name="Undo").click()
    expect(page.locator("#photos-title")).to_have_text("Photos of Eileen")
    page.get_by_label("Rename").fill("Eileen Collins")
    page.get_by_role("button", name="Rename").click()
    expect(page.locator("#photos-title")).to_have_text("Photos of Eileen Collins")


def test_a_wrong_face_is_taken_out_of_its_group_and_put_back(server: Server, page: Any) -> None:
    with server.api() as api:
        # Her three faces back into one group of their own, unnamed.
        (person,) = api.get("/v1/people").json()["people"]
        found = api.get(f"/v1/people/{person['person_id']}").json()
        face_ids = [f["face_id"] for f in found["faces"]]
        r = api.post("/v1/faces/move", json={"face_ids": face_ids, "cluster_id": None})
        group = r.json()["cluster_id"]
        api.delete(f"/v1/people/{person['person_id']}")
    open_page(page, server, f"#/clusters/{group}")
    expect(page.locator("#photos-title")).to_have_text(f"Photos of unnamed group {group}")
    faces = page.locator("#cluster-faces li")
    expect(faces).to_have_count(len(face_ids))
    wrong = faces.first.get_attribute("data-face-id")
    faces.first.get_by_role("button", name=re.compile("is not them")).click()
    expect(faces).to_have_count(len(face_ids) - 1)
    expect(page.locator("#undo")).to_contain_text(f"face {wrong} taken out of group {group}")
    with server.api() as api:
        moved = api.get(f"/v1/faces/{wrong}").json()["cluster_id"]
        assert moved not in (None, group)
    page.get_by_role("button", name="Undo").click()
    expect(faces).to_have_count(len(face_ids))
    with server.api() as api:
        assert api.get(f"/v1/faces/{wrong}").json()["cluster_id"] == group
    # Named from its own page: her page opens.
    page.get_by_label("Name", exact=True).fill("Eileen Collins")
    page.get_by_role("button", name="Name", exact=True).click()
    expect(page.locator("#photos-title")).to_have_text("Photos of Eileen Collins")


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
    page.get_by_role("link", name="Add photos").click()
    page.get_by_label("Photos to add").set_input_files([str(path)])
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator("#added")).to_contain_text(f"{name} added, 1 face(s)")
    page.locator("#added").get_by_role("link", name=name).click()
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


def expect_photos(page: Any, title: str, api: httpx.Client, url: str) -> None:
    """The photos page shows ``title`` and exactly the images ``url`` answers, in order."""
    expect(page.locator("#photos-title")).to_have_text(title)
    want = [str(i["image_id"]) for i in api.get(url).json()["images"]]
    assert want
    tiles = page.locator("#photos li")
    expect(tiles).to_have_count(len(want))
    assert [tiles.nth(i).get_attribute("data-image-id") for i in range(len(want))] == want
    loaded(page, "#photos li img")


def test_faces_in_the_photo_view_lead_to_their_photos(
    server: Server, page: Any, tmp_path: Path
) -> None:
    with server.api() as api:
        # pair.jpg: her left face confirmed as a person, her right one in a cluster of its own.
        pair = api.get(f"/v1/images/{server.images['pair.jpg']['image_id']}").json()
        left, right = sorted(pair["faces"], key=lambda f: f["box"][0])
        r = api.post(f"/v1/faces/{left['face_id']}/assign", json={"person": "Eileen Collins"})
        person = r.json()
        cluster = api.post(f"/v1/faces/{right['face_id']}/move", json={"cluster_id": None})
        cluster_id = cluster.json()["cluster_id"]
        pair = api.get(f"/v1/images/{pair['image_id']}").json()

        page.set_viewport_size({"width": 1000, "height": 800})
        open_page(page, server, "#/people")

        # People -> her photos -> pair.jpg.
        page.locator(f'#people li[data-person-id="{person["person_id"]}"] a').click()
        person_url = f"/v1/people/{person['person_id']}/images"
        expect_photos(page, "Photos of Eileen Collins", api, person_url)
        page.locator(f'#photos li[data-image-id="{pair["image_id"]}"] a').click()
        open_view(page, pair)
        expect(page.locator("#photo-facts")).to_contain_text("2 faces")

        # Both faces boxed where the API says, scaled: the photo is shown smaller than it is.
        assert page.locator("#viewer-photo img").bounding_box()["width"] < pair["width"]
        shown = {f["face_id"]: f for f in pair["faces"]}
        person_box = assert_boxed(page, shown[left["face_id"]], pair)
        cluster_box = assert_boxed(page, shown[right["face_id"]], pair)
        expect(person_box).to_have_text(f"{left['face_index'] + 1}: Eileen Collins")
        expect(cluster_box).to_have_text(f"{right['face_index'] + 1}: unnamed (group {cluster_id})")

        # The cluster's face, from the keyboard: its photos (pair.jpg alone); back to it.
        group = f"Photos of unnamed group {cluster_id}"
        link = page.get_by_role("link", name=f"unnamed (group {cluster_id}). Show the photos")
        expect(link).to_have_attribute("data-face-id", str(right["face_id"]))
        link.focus()
        page.keyboard.press("Enter")
        expect_photos(page, group, api, f"/v1/clusters/{cluster_id}/images")
        expect(page.locator("#photos li")).to_have_count(1)
        page.locator("#photos li a").click()
        open_view(page, pair)

        # Her face: the person's photos again.
        her = f"Face {left['face_index'] + 1}: Eileen Collins. Show the photos of Eileen Collins"
        page.get_by_role("link", name=her, exact=True).click()
        expect_photos(page, "Photos of Eileen Collins", api, person_url)

        # An upload with a face too blurred to recognise: a dashed outline, not a link.
        small = add_and_view(page, api, tmp_path, "small.jpg")
        (face,) = small["faces"]
        assert not face["usable"] and face["cluster_id"] is None and face["person_id"] is None
        outline = assert_boxed(page, face, small)
        assert outline.evaluate("e => e.tagName") == "DIV"
        assert outline.evaluate("e => getComputedStyle(e).borderTopStyle") == "dashed"
        expect(outline).to_have_attribute("aria-label", re.compile("too small or blurred"))
        expect(page.locator("#viewer-photo a")).to_have_count(0)

        # A photo stored on its side: photo and box both upright (it is wider than tall).
        sideways = add_and_view(page, api, tmp_path, "sideways.jpg")
        assert sideways["width"] > sideways["height"]
        (face,) = sideways["faces"]
        assert_boxed(page, face, sideways)


# -- adding photos ----------------------------------------------------------------------------


def test_uploads_show_progress_and_appear_in_the_library(
    server: Server, page: Any, tmp_path: Path
) -> None:
    open_page(page, server, "#/add")
    again = tmp_path / "again.png"
    again.write_bytes(png(sample("astronaut")))
    new = tmp_path / "new.jpg"
    new.write_bytes(jpeg(sample("coffee").transpose(Image.Transpose.FLIP_TOP_BOTTOM)))
    page.get_by_label("Photos to add").set_input_files([str(again), str(new)])
    page.get_by_role("button", name="Add", exact=True).click()
    # A row per file, each with its progress bar; a photo already there says so.
    expect(page.locator("#added li")).to_have_count(2)
    expect(page.get_by_role("progressbar", name="Sending new.jpg")).to_have_count(1)
    expect(page.locator("#added")).to_contain_text("again.png duplicate, 1 face(s)")
    expect(page.locator("#added")).to_contain_text("new.jpg added, 0 face(s)")
    added = page.locator("#added li", has_text="new.jpg").get_attribute("data-image-id")
    # The library opens with it, the newest, first.
    with server.api() as api:
        total = api.get("/v1/images").json()["total"]
    page.get_by_role("link", name="Library").click()
    expect(page.locator("#library li").first).to_have_attribute("data-image-id", str(added))
    expect(page.locator("#library-status")).to_have_text(f"{total} photos")

    # A folder on the server, indexed as a job, its progress followed to the end.
    folder = server.album.parent / "more"
    folder.mkdir()
    for name in ("camera", "horse", "page"):
        (folder / f"{name}.png").write_bytes(png(sample(name).convert("RGB")))
    page.get_by_role("link", name="Add photos").click()
    page.get_by_label("Folder on the server").fill(str(folder))
    page.get_by_role("button", name="Index folder").click()
    expect(page.locator("#job")).to_contain_text("Done: 3 indexed", timeout=120_000)
    assert page.locator("#job progress").evaluate("b => b.value === b.max && b.max === 3")
    # A folder outside the allowed roots: refused, in words.
    page.get_by_label("Folder on the server").fill("/etc")
    page.get_by_role("button", name="Index folder").click()
    expect(page.locator("#error")).to_contain_text("not inside an allowed root")


# -- duplicates --------------------------------------------------------------------------------


def test_duplicates_side_by_side_and_removed_from_the_collection(server: Server, page: Any) -> None:
    rocket, small = server.images["rocket.jpg"], server.images["rocket-small.jpg"]
    open_page(page, server, "#/duplicates")
    has_rocket = page.locator(f'[data-image-id="{rocket["image_id"]}"]')
    group = page.locator("#near li.group", has=has_rocket)
    expect(group).to_have_count(1, timeout=120_000)
    expect(group.locator("li.dup")).to_have_count(2)
    expect(group.locator(f'li.dup[data-image-id="{small["image_id"]}"]')).to_contain_text(
        f"{small['width']} × {small['height']} · JPEG"
    )
    expect(group).to_contain_text(str(server.album / "rockets" / "rocket-small.jpg"))
    all_loaded(page, "#near li.group img")
    # Removed from the collection (asked first); the file stays on disk.
    page.once("dialog", lambda dialog: dialog.accept())
    remove = f"Remove image {small['image_id']} from the collection"
    group.get_by_role("button", name=remove).click()
    expect(group).to_contain_text(f"Image {small['image_id']} removed from the collection.")
    with server.api() as api:
        assert api.get(f"/v1/images/{small['image_id']}").status_code == 404
    assert (server.album / "rockets" / "rocket-small.jpg").exists()


# -- a phone, the keyboard --------------------------------------------------------------------


def test_a_phone_screen_and_the_keyboard_alone(server: Server, page: Any) -> None:
    page.set_viewport_size({"width": 360, "height": 740})
    open_page(page, server, "#/library")
    expect(page.locator("#library li").first).to_be_visible()
    for route in ("#/library", "#/search", "#/people", "#/add", "#/duplicates"):
        page.goto(f"{server.url}/{route}")
        expect(page.locator("#view h2").first).to_be_visible()
        page.wait_for_timeout(300)
        # Nothing wider than the screen: no sideways scrolling.
        assert page.evaluate("document.documentElement.scrollWidth") <= 360, route
    page.goto(f"{server.url}/#/library")
    expect(page.locator("#library li").first).to_be_visible()
    # From the top: the skip link, then (past the folder filter) the photos, by Tab alone.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to the page")).to_be_focused()
    page.keyboard.press("Enter")
    first = page.locator("#library li a").first
    for _ in range(5):
        page.keyboard.press("Tab")
        if first.evaluate("e => e === document.activeElement"):
            break
    expect(first).to_be_focused()
    # Focus is visible.
    assert first.evaluate("e => getComputedStyle(e).outlineStyle") != "none"
    page.keyboard.press("Enter")
    expect(page.locator("#photo-facts")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#library li").first).to_be_visible()


# -- other sites ------------------------------------------------------------------------------


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
        page.goto(f"{url}/#/add")
        expect(page.locator("#key-form")).to_be_hidden()
        mine = tmp_path / "mine.jpg"
        mine.write_bytes(jpeg(sample("astronaut")))
        page.get_by_label("Photos to add").set_input_files(str(mine))
        page.get_by_role("button", name="Add", exact=True).click()
        # (the server's first upload: the models load first)
        expect(page.locator("#added")).to_contain_text("mine.jpg added, 1 face(s)", timeout=120_000)
