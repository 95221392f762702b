"""Memory benchmark: a server worker's peak RSS for large images sent to ``/v1/search``.

The issue: a 388 KB, 9990 x 9990 RGBA PNG sent to ``/v1/search`` pushed one worker to ~2.4 GB
RSS (three at once: 7 GB), and the memory stayed held after the request. Measured here, in
one run, for the current code and for a baseline revision (``--baseline REV``, default the
last commit before bounded decoding), each checked out into a temporary git worktree or
used as it is, and served by a real ``lookalike serve`` (1 worker, ``--no-auth`` on
loopback, its own data folder with one uploaded photo, so that the cnn and face models are
loaded as in real use):

- uploads: the 9990 x 9990 RGBA PNG (mostly flat, ~0.4 MB, written row by row), an
  8000 x 6000 JPEG, and the PNG's picture as a lossless WebP (Pillow has no reduced
  decoding for WebP: every such decode needs its full-size buffer);
- scenarios: each sent once, and the PNG and the WebP 3 at once (3 clients);
- per scenario: status codes, wall time, the worker's peak RSS (VmHWM after resetting it
  through ``/proc/PID/clear_refs``, and sampled every 10 ms in case that cannot be reset),
  and its RSS 1 s after the last answer.

Targets: the current code's worker peaks under TARGET_MIB for one search with the PNG, and
its RSS after any scenario is at most RELEASED_MIB above the RSS before it.

Usage: ``python bench/memory.py [--baseline REV] [--no-write]``
"""

# Imports come after the sys.path fix below.
# ruff: noqa: E402

from __future__ import annotations

import sys
from pathlib import Path

# bench/http.py would shadow the standard library's http (imported by httpx): this folder
# goes to the end of the path.
BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH] + [str(BENCH)]

import argparse
import contextlib
import io
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
from PIL import Image, ImageDraw

import common
from sections import Target, check, informational

# The last commit before bounded decoding (reduced and banded decodes, the decode gate).
BASELINE = "fa05713"
SIDE = 9990
TARGET_MIB = 600  # the worker's peak RSS for one search with the 9990 x 9990 PNG
RELEASED_MIB = 100  # RSS after a request: at most this far above the warm worker's
CLIENTS = 3
MIB = 2**20


# --------------------------------------------------------------------------- uploads


@dataclass(frozen=True)
class Upload:
    name: str
    label: str
    data: bytes


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def flat_png(side: int) -> bytes:
    """A mostly flat RGBA PNG: blue, a half-transparent red row every 500, compressed row
    by row (this process never holds its pixels)."""
    row = b"\x00" + bytes([30, 120, 200, 255]) * side
    marked = b"\x00" + bytes([200, 50, 50, 128]) * side
    z = zlib.compressobj(9)
    stream = b"".join(z.compress(marked if y % 500 == 0 else row) for y in range(side))
    header = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", stream + z.flush()),
            _chunk(b"IEND", b""),
        )
    )


def flat_webp(side: int) -> bytes:
    """The same kind of picture as a lossless WebP (a few kilobytes)."""
    image = Image.new("RGBA", (side, side), (30, 120, 200, 255))
    draw = ImageDraw.Draw(image)
    for y in range(0, side, 500):
        draw.rectangle((0, y, side - 1, y), fill=(200, 50, 50, 128))
    buf = io.BytesIO()
    image.save(buf, "WEBP", lossless=True, method=0, quality=0)
    return buf.getvalue()


def big_jpeg() -> bytes:
    """scikit-image's astronaut enlarged to 8000 x 6000, as a JPEG."""
    from skimage import data as skdata

    image = Image.fromarray(skdata.astronaut()).resize((8000, 6000), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def small_jpeg() -> bytes:
    from skimage import data as skdata

    buf = io.BytesIO()
    Image.fromarray(skdata.astronaut()).save(buf, "JPEG", quality=90)
    return buf.getvalue()


# --------------------------------------------------------------------------- the worker


class Worker:
    """The memory of one server process, read from ``/proc/PID``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def status(self, key: str) -> int:
        """``VmRSS``, ``VmHWM``, ... in bytes."""
        text = Path(f"/proc/{self.pid}/status").read_text()
        found = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
        return int(found.group(1)) * 1024 if found else 0

    def reset_peak(self) -> bool:
        """Set VmHWM to the current RSS (Linux >= 4.0); whether that was allowed."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True


@contextlib.contextmanager
def sampled_peak(worker: Worker, every: float = 0.01) -> Iterator[list[int]]:
    """Samples the worker's RSS while the body runs; yields a list whose one item is the
    highest sample, filled in at the end."""
    peak = [worker.status("VmRSS")]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(every):
            with contextlib.suppress(OSError):
                peak[0] = max(peak[0], worker.status("VmRSS"))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        done.set()
        thread.join()


@contextlib.contextmanager
def server(src: Path, data_dir: Path, log: Path) -> Iterator[tuple[str, Worker]]:
    """``lookalike serve --no-auth`` (1 worker) of the code in ``src``; its URL and process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")}
    env["PYTHONPATH"] = str(src)
    args = ["--no-auth", "--data-dir", str(data_dir)]
    with common.lookalike_server(args, log, env=env, cwd=src) as (base, proc):
        yield base, Worker(proc.pid)


# --------------------------------------------------------------------------- measuring


@dataclass
class Run:
    side: str
    scenario: str
    statuses: list[int]
    seconds: float
    warm: int  # RSS before the scenario
    peak: int
    after: int  # RSS 1 s after the last answer
    retry_after: str  # the Retry-After header of a 503, if any


def search(base: str, upload: Upload) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/search",
        files={"file": (upload.name, upload.data)},
        data={"k": "5"},
        timeout=900,
    )


def measure(side: str, base: str, worker: Worker, upload: Upload, clients: int) -> Run:
    """``clients`` searches with ``upload`` at once; the worker's memory around them."""
    time.sleep(1.0)
    warm = worker.status("VmRSS")
    reset = worker.reset_peak()
    with sampled_peak(worker) as sampled, ThreadPoolExecutor(clients) as pool:
        start = time.perf_counter()
        answers = list(pool.map(lambda _: search(base, upload), range(clients)))
        seconds = time.perf_counter() - start
    peak = max(sampled[0], worker.status("VmHWM") if reset else 0)
    time.sleep(1.0)
    busy = [a.headers.get("Retry-After", "") for a in answers if a.status_code == 503]
    scenario = upload.label + (f", {clients} at once" if clients > 1 else "")
    statuses = sorted(a.status_code for a in answers)
    after = worker.status("VmRSS")
    run = Run(side, scenario, statuses, seconds, warm, peak, after, ", ".join(busy))
    print(
        f"{side}: {scenario}: {statuses} in {seconds:.1f} s, peak {peak / MIB:.0f} MiB "
        f"(warm {warm / MIB:.0f}), after {after / MIB:.0f} MiB",
        flush=True,
    )
    return run


def side_runs(side: str, src: Path, work: Path, uploads: list[Upload]) -> list[Run]:
    """Every scenario against a fresh server running the code in ``src``."""
    data_dir = work / f"data-{side}"
    with server(src, data_dir, work / f"server-{side}.log") as (base, worker):
        # Warm-up: one photo stored, indexed and searched (cnn and face models loaded).
        photo = Upload("photo.jpg", "photo", small_jpeg())
        r = httpx.post(f"{base}/v1/images", files={"files": (photo.name, photo.data)}, timeout=600)
        assert r.status_code == 200, r.text
        assert search(base, photo).status_code == 200
        runs = []
        for upload in uploads:
            runs.append(measure(side, base, worker, upload, 1))
            if upload.name != "big.jpg":
                runs.append(measure(side, base, worker, upload, CLIENTS))
    return runs


@contextlib.contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """``rev`` checked out into a temporary git worktree; yields its ``src`` folder."""
    with common.git_worktree(rev) as tree:
        yield tree / "src"


# --------------------------------------------------------------------------- report


def mib(n: int) -> str:
    return f"{n / MIB:,.0f}"


def render(runs: list[Run], uploads: list[Upload], baseline: str) -> str:
    rows = [
        [
            r.side,
            r.scenario,
            " ".join(str(s) for s in r.statuses)
            + (f" (Retry-After {r.retry_after})" if r.retry_after else ""),
            f"{r.seconds:.1f}",
            mib(r.warm),
            f"**{mib(r.peak)}**",
            mib(r.peak - r.warm),
            mib(r.after),
        ]
        for r in runs
    ]
    png_label = uploads[0].label
    one = {r.side: r for r in runs if r.scenario == png_label}
    three = {r.side: r for r in runs if r.scenario.startswith(png_label + ",")}
    now, before = one["current"], one["baseline"]
    sizes = ", ".join(f"{u.label}: {len(u.data) / 1e6:.2f} MB" for u in uploads)
    return "\n".join(
        [
            "## Memory of large images (`bench/memory.py`)",
            "",
            f"A real `lookalike serve` (1 worker, `--no-auth`, loopback) for the current code and "
            f"for the baseline `{baseline}` (checked out into a temporary git worktree), in the "
            "same run; each server first stores and searches one photo, so its cnn and face "
            f"models are loaded. Uploads ({sizes}) are sent to `POST /v1/search` once, and "
            f"{CLIENTS} at once. Peak: the worker's VmHWM, reset before each scenario through "
            "`/proc/PID/clear_refs` (and RSS sampled every 10 ms); *after*: its RSS 1 s after "
            "the last answer. Memory in MiB, time in seconds for all the scenario's requests.",
            "",
            common.table(
                [
                    "code",
                    "scenario",
                    "statuses",
                    "time",
                    "RSS before",
                    "peak RSS",
                    "peak - before",
                    "RSS after",
                ],
                rows,
            ),
            "",
            f"The 9990 x 9990 PNG, one search: peak RSS {mib(now.peak)} MiB against "
            f"{mib(before.peak)} MiB ({before.peak / now.peak:.1f}x less), "
            f"{now.seconds:.1f} s against {before.seconds:.1f} s; {CLIENTS} at once: "
            f"{mib(three['current'].peak)} MiB against {mib(three['baseline'].peak)} MiB.",
            "",
            f"{CLIENTS} at once stay bounded: a PNG is decoded band by band and box-reduced "
            "as it goes (a few tens of MiB each, so all three run); a WebP needs its full "
            "buffer, so it is a large decode that takes one of the 2 decode slots, and a third "
            "waits up to `decode_wait_s` (2 s) and is answered 503 with Retry-After. Memory "
            "is handed back after large decodes (see the headline).",
        ]
    )


def targets(runs: list[Run], png_label: str, baseline: str) -> list[Target]:
    """The PNG search's peak, the RSS held after any scenario (current code); the baseline."""
    one = {r.side: r for r in runs if r.scenario == png_label}
    held = max(r.after - r.warm for r in runs if r.side == "current")
    return [
        check(
            f"peak RSS of the worker, one search with the {png_label}",
            one["current"].peak / MIB,
            "<",
            TARGET_MIB,
            "{:,.0f} MiB",
        ),
        check(
            "RSS held after a scenario (1 s after its last answer, minus the RSS before it; "
            "the largest of any scenario)",
            held / MIB,
            "<=",
            RELEASED_MIB,
            "{:,.0f} MiB",
        ),
        informational(
            f"the same PNG search, peak RSS with the baseline `{baseline}`",
            f"{mib(one['baseline'].peak)} MiB",
        ),
    ]


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--baseline", default=BASELINE, help=f"revision to compare (default {BASELINE})"
    )
    common.add_output_arguments(parser)
    args = parser.parse_args(argv)
    out = common.Output.from_args(args)
    if not Path("/proc/self/status").exists():
        print("error: this benchmark reads /proc (Linux only)", file=sys.stderr)
        return 1

    print("building the uploads...", flush=True)
    uploads = [
        Upload("big.png", f"PNG {SIDE}x{SIDE} RGBA", flat_png(SIDE)),
        Upload("big.jpg", "JPEG 8000x6000", big_jpeg()),
        Upload("big.webp", f"WebP {SIDE}x{SIDE} RGBA lossless", flat_webp(SIDE)),
    ]
    runs: list[Run] = []
    with common.temp_dir("memory") as work:
        with checkout(args.baseline) as old_src:
            runs += side_runs("baseline", old_src, work, uploads)
        runs += side_runs("current", common.REPO / "src", work, uploads)
        logs = "".join(p.read_text(errors="replace") for p in work.glob("server-*.log"))
        if "Traceback" in logs:
            print(logs[-4000:], file=sys.stderr)
            return 1
    md = render(runs, uploads, args.baseline)
    out.write("memory", md, targets(runs, uploads[0].label, args.baseline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
