"""The web page in a real headless Chromium (Debian's, driven by Playwright) against a real
``lookalike serve``: the key form, search by a dropped photo, adding photos, the image view
with face boxes, near duplicates, naming face clusters (and the 409 -> merge path), renaming.

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
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

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


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = data.parent / "server.log"
    # The folder in the environment as well: never the developer's own data folder.
    env = {**os.environ, "LOOKALIKE_DATA_DIR": str(data)}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*LOOKALIKE, "serve", "--port", str(port), "--data-dir", str(data)],
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
        files = [("files", (name, body)) for name, body in photos().items()]
        r = httpx.post(f"{url}/v1/images", files=files, headers={"X-API-Key": key}, timeout=300)
        assert r.status_code == 200, r.text
        images = {item["filename"]: item for item in r.json()["images"]}
        yield Server(url, key, images)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture()
def page(server: Server) -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        # Chromium's sandbox cannot start as root (containers, CI).
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
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
    expect(first).to_have_attribute("data-image-id", str(images["chelsea.jpg"]["id"]))
    expect(first.locator(".score")).to_have_text(re.compile(r"^#1 · [01]\.\d{3}$"))
    expect(page.locator("#search-status")).to_contain_text("results for cat.jpg")
    loaded(page, "#results li img")

    # Clicking a result opens the image view.
    first.get_by_role("button").click()
    expect(page.locator("#viewer")).to_be_visible()
    expect(page.locator("#viewer-title")).to_contain_text(f"Image {images['chelsea.jpg']['id']}")
    loaded(page, "#viewer-photo img")
    page.get_by_role("button", name="Close").click()

    # Adding a photo already there says so; its view shows her face boxed.
    again = tmp_path / "again.png"
    again.write_bytes(png(sample("astronaut")))
    page.get_by_label("Photos").set_input_files(str(again))
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator("#added")).to_contain_text("again.png duplicate, 1 face(s)")
    page.locator("#added").get_by_role("button", name="again.png").click()
    # (the view keeps the last photo until the next one's metadata has come)
    loaded(page, f'#viewer-photo img[alt="Image {images["astronaut.png"]["id"]}"]')
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
    rockets = page.locator("#near li", has=page.locator(tile(images["rocket.jpg"]["id"])))
    expect(rockets.locator(tile(images["rocket-small.jpg"]["id"]))).to_have_count(1)
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
