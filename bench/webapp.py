"""Web page benchmark: how long the library takes to show its first screen of thumbnails on a
10,000-image collection.

The collection is real files, indexed for real: ``--images`` small JPEGs (``--side`` pixels on
the longer side; seeded gradients with a few shapes, each distinct) in folders of 100, as
albums are, indexed by ``Lookalike.index`` with the ``phash`` descriptor only and faces off
(the cheapest descriptor: the library page reads the catalog's rows, paths and the files,
never the vectors, so a cnn index would cost half an hour here and change nothing it loads).

Then, against a real ``lookalike serve`` (uvicorn in a subprocess, loopback, no key) and
Debian's Chromium driven by Playwright at a 1280 x 800 window, the page is opened at
``#/library`` and timed from navigation start until every thumbnail of the first screen has
been fetched and decoded (the page marks that moment: ``<body data-first-screen-ms>``):

a) cold: the first load after the server started; no thumbnail is on disk yet, each is
   decoded from its file and kept (``<data>/thumbnails``);
b) warm: ``--loads`` more loads, each in a fresh browser context (an empty HTTP cache), the
   thumbnails read from the server's disk: median and spread. Target: median <= 1 s;
c) revisit: the same context reloaded, every thumbnail answered 304 from its ETag.

The ratio cold / warm says what keeping thumbnails on disk saves. Before this page there
was no library view to compare with, so the baseline is that cold load, measured in the same
run. The API calls the page makes first (``GET /v1/images?order=newest&limit=60``,
``GET /v1/folders``) are timed alone too (httpx, median of 20).

Usage: ``python bench/webapp.py [--images N] [--side PX] [--loads N] [--no-write]``
"""

# Imports come after the sys.path fix below.
# ruff: noqa: E402

from __future__ import annotations

import sys
from pathlib import Path

# bench/http.py would shadow the standard library's ``http`` (imported by httpx): this
# folder goes to the end of sys.path, after the standard library.
BENCH = Path(__file__).resolve().parent
for entry in list(sys.path):
    if Path(entry or ".").resolve() == BENCH:
        sys.path.remove(entry)
sys.path.append(str(BENCH))

import argparse
import random
import statistics
import time
from typing import Any

import httpx
from PIL import Image, ImageDraw

import common
import sections
from lookalike.search.engine import Lookalike
from lookalike.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
PER_FOLDER = 100
WINDOW = {"width": 1280, "height": 800}
TARGET_MS = 1000.0
QUICK = "1,000 images, 3 warm loads"
HEADING = "## webapp: the library's first screen on a 10k-image collection"


def make_photos(folder: Path, count: int, side: int) -> None:
    """``count`` distinct JPEGs, ``side`` x 3/4 ``side``, in subfolders of PER_FOLDER."""
    rng = random.Random(12)
    height = side * 3 // 4
    for i in range(count):
        album = folder / f"album-{i // PER_FOLDER:03d}"
        if i % PER_FOLDER == 0:
            album.mkdir(parents=True)
        top = tuple(rng.randrange(256) for _ in range(3))
        bottom = tuple(rng.randrange(256) for _ in range(3))
        gradient = Image.linear_gradient("L").resize((side, height))
        image = Image.composite(
            Image.new("RGB", (side, height), top),
            Image.new("RGB", (side, height), bottom),
            gradient,
        )
        draw = ImageDraw.Draw(image)
        for _ in range(4):
            x, y = rng.randrange(side), rng.randrange(height)
            r = rng.randrange(side // 12, side // 4)
            fill = tuple(rng.randrange(256) for _ in range(3))
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
        image.save(album / f"photo-{i:05d}.jpg", "JPEG", quality=85)


def build(work: Path, count: int, side: int) -> Path:
    """A data folder with ``count`` photos indexed (phash, no faces); returns it."""
    photos, data = work / "photos", work / "data"
    started = time.perf_counter()
    make_photos(photos, count, side)
    made = time.perf_counter()
    with Lookalike(Settings(data_dir=data, faces=False)) as lk:
        report = lk.index([photos], descriptors=["phash"], progress=False)
        assert len(report.failed) == 0 and lk.catalog.count_images() == count
    print(
        f"{count} photos made in {made - started:.0f} s, indexed in "
        f"{time.perf_counter() - made:.0f} s",
        flush=True,
    )
    return data


# Where the time of a load went, from the browser's resource timings (ms from navigation
# start): the page's own files, the list of images, the thumbnails of the first screen.
PHASES = """() => {
  const all = performance.getEntriesByType('resource');
  const end = (f) => Math.max(0, ...all.filter(f).map(e => e.responseEnd));
  const start = (f) => Math.min(...all.filter(f).map(e => e.startTime));
  const thumbs = (e) => e.name.includes('/thumbnail');
  return {
    modules: end(e => e.name.includes('/static/')),
    list: end(e => e.name.includes('/v1/images?')),
    thumbs_from: start(thumbs),
    thumbs_to: end(thumbs),
  };
}"""


def first_screen_ms(page: Any, url: str) -> tuple[float, int, dict[str, float]]:
    """Open the library; (ms from navigation start to its first screen drawn, thumbnails
    on that screen, where the time went: PHASES)."""
    page.goto(f"{url}/#/library")
    page.wait_for_function("() => document.body.dataset.firstScreenMs", timeout=120_000)
    ms = float(page.evaluate("document.body.dataset.firstScreenMs"))
    shown = page.evaluate(
        "() => [...document.querySelectorAll('#library img')]"
        ".filter(i => i.getBoundingClientRect().top < innerHeight).length"
    )
    return ms, int(shown), page.evaluate(PHASES)


def browse(url: str, loads: int) -> dict[str, Any]:
    """Cold, warm (fresh contexts) and revisit loads of the library, timed."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:

            def fresh() -> Any:
                return browser.new_context(viewport=WINDOW).new_page()

            cold, shown, _ = first_screen_ms(fresh(), url)
            loaded = [first_screen_ms(fresh(), url) for _ in range(loads)]
            page = fresh()
            first_screen_ms(page, url)
            revisit = []
            for _ in range(loads):
                page.reload()
                revisit.append(first_screen_ms(page, url)[0])
        finally:
            browser.close()
    warm = [ms for ms, _, _ in loaded]
    phases = {k: statistics.median(p[k] for _, _, p in loaded) for k in loaded[0][2]}
    return {"cold": cold, "shown": shown, "warm": warm, "phases": phases, "revisit": revisit}


def api_ms(url: str) -> dict[str, float]:
    """Median milliseconds of the page's first API calls, alone."""
    calls = {
        "GET /v1/images?order=newest&limit=60": "/v1/images?order=newest&limit=60",
        "GET /v1/folders": "/v1/folders",
    }
    out: dict[str, float] = {}
    with httpx.Client(base_url=url, timeout=60) as client:
        for name, path in calls.items():
            client.get(path).raise_for_status()
            out[name] = common.median_of(lambda p=path: client.get(p).raise_for_status(), 20)
    return {name: 1000 * s for name, s in out.items()}


def report(count: int, side: int, found: dict[str, Any], api: dict[str, float]) -> str:
    warm, revisit, phases = found["warm"], found["revisit"], found["phases"]
    median = statistics.median(warm)
    rows = [
        ["cold (thumbnails made from the files)", f"{found['cold']:.0f}", "1"],
        [
            f"warm, median of {len(warm)} (fresh browser, thumbnails on disk)",
            f"{median:.0f}",
            f"{len(warm)}",
        ],
        ["warm, fastest / slowest", f"{min(warm):.0f} / {max(warm):.0f}", ""],
        [
            f"revisit, median of {len(revisit)} (same browser: 304s)",
            f"{statistics.median(revisit):.0f}",
            f"{len(revisit)}",
        ],
    ]
    calls = [[name, f"{ms:.1f}"] for name, ms in api.items()]
    return "\n\n".join(
        [
            HEADING,
            f"{count:,} JPEGs of {side} x {side * 3 // 4} px in {count // PER_FOLDER} folders, "
            "indexed (phash, no faces); `lookalike serve --no-auth`, one worker; Chromium "
            f"headless at {WINDOW['width']} x {WINDOW['height']}: the first screen holds "
            f"{found['shown']} thumbnails (256 px). Time from navigation start until every "
            "one of them is decoded.",
            common.table(["load", "first screen (ms)", "loads"], rows),
            f"Cold / warm: **{found['cold'] / median:.1f}x** (keeping thumbnails on disk).",
            "Where a warm load's time goes (medians, ms from navigation start): the page's "
            f"modules all loaded at {phases['modules']:.0f}, the list of images answered at "
            f"{phases['list']:.0f}, the thumbnails fetched from {phases['thumbs_from']:.0f} "
            f"to {phases['thumbs_to']:.0f}; the rest is decoding and drawing them.",
            "The page's first API calls alone (median of 20, ms):",
            common.table(["call", "ms"], calls),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--images", type=int, default=10_000, help="photos in the collection")
    parser.add_argument("--side", type=int, default=640, help="longer side of each photo (px)")
    parser.add_argument("--loads", type=int, default=7, help="warm loads (and revisits)")
    common.add_output_arguments(parser, QUICK)
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.loads = min(args.images, 1000), min(args.loads, 3)
    out = common.Output.from_args(args, QUICK)
    target = sections.Target("library first screen, 10k images (median, ms)", "-", "<= 1000")
    if not CHROMIUM.exists():
        out.skipped("webapp", HEADING, [target], f"no Chromium at {CHROMIUM}")
        return 0
    with common.temp_dir("webapp") as work:
        data = build(work, args.images, args.side)
        log = work / "server.log"
        with common.lookalike_server(["--data-dir", str(data), "--no-auth"], log) as (url, _):
            found = browse(url, args.loads)
            api = api_ms(url)
        if "Traceback" in log.read_text(errors="replace"):
            print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
            return 1
    median = statistics.median(found["warm"])
    targets = [
        sections.check(target.headline, median, "<=", TARGET_MS, "{:.0f}"),
        sections.informational("cold first screen (ms)", f"{found['cold']:.0f}"),
    ]
    out.write("webapp", report(args.images, args.side, found, api), targets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
