"""Shared helpers for the benchmarks: data location, timing, machine facts, BENCHMARKS.md.

Benchmarks are not tests: they read the evaluation data in ``../shared/data`` (next to the
repository), print their tables, and replace their own section of ``BENCHMARKS.md``
(through :class:`Output`, which refuses to write figures of uncommitted code unless told).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import io
import os
import platform
import re
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO, TypeVar

from PIL import Image

import sections
from sections import Target

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
DATA_ENV = "LOOKALIKE_BENCH_DATA"
DEFAULT_DATA = REPO.parent / "shared" / "data"
# Exit status when the evaluation data is missing (argparse uses 2 for usage errors too:
# either way the benchmark could not run as asked).
EXIT_NO_DATA = 2
# Exit status when a benchmark cannot run here and wrote a section saying why.
EXIT_SKIPPED = 3
# Uncommitted changes here make figures that belong to no commit.
CODE_PATHS = ("src", "bench")

T = TypeVar("T")


# --------------------------------------------------------------------------- data


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    """``--data``: the evaluation data folder (default: $LOOKALIKE_BENCH_DATA, ../shared/data)."""
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help=f"evaluation data folder (default: ${DATA_ENV}, else {DEFAULT_DATA})",
    )


def data_dir(given: Path | None, *needed: str) -> Path:
    """The data folder holding every path in ``needed``; exits with status 2 if it does not.

    Looks at ``given`` (``--data``), then ``$LOOKALIKE_BENCH_DATA``, then ``../shared/data``
    relative to the repository.
    """
    env = os.environ.get(DATA_ENV)
    if given is not None:
        root, origin = given.expanduser(), "--data"
    elif env:
        root, origin = Path(env).expanduser(), f"${DATA_ENV}"
    else:
        root, origin = DEFAULT_DATA, "the default location"
    missing = [n for n in needed if not (root / n).exists()]
    if not root.is_dir() or missing:
        what = ", ".join(missing) if root.is_dir() else "the folder itself"
        print(
            f"error: evaluation data not found: {root} (from {origin}) lacks {what}.\n"
            f"Benchmarks need the shared evaluation data (see its README.md). Point to it "
            f"with --data DIR or {DATA_ENV}=DIR; by default it is ../shared/data next to "
            "the repository.",
            file=sys.stderr,
        )
        sys.exit(EXIT_NO_DATA)
    return root.resolve()


def image_files(folder: Path) -> list[Path]:
    """Regular, non-hidden files under ``folder``, sorted (what ``Lookalike.index`` walks)."""
    out: list[Path] = []
    for here, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [Path(here) / n for n in sorted(names) if not n.startswith(".")]
    return [p for p in out if p.is_file()]


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    """A temporary folder, removed afterwards (under $TMPDIR)."""
    with tempfile.TemporaryDirectory(prefix=f"lookalike-bench-{prefix}-") as d:
        yield Path(d)


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def lookalike_server(
    args: Sequence[str], log: Path, *, env: dict[str, str] | None = None, cwd: Path = REPO
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``lookalike serve ARGS`` on a free loopback port, its output appended to ``log``;
    yields its base URL (once ``/healthz`` answers) and its process, stopped afterwards."""
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "lookalike.cli", "serve", *args, "--port", str(port)]
    with log.open("ab") as out:
        server = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"server exited:\n{log.read_text(errors='replace')[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not up:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield base, server
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@contextlib.contextmanager
def git_worktree(rev: str) -> Iterator[Path]:
    """``rev`` of this repository checked out (detached) into a temporary git worktree;
    yields its root folder, removed afterwards. Exits with a message if ``rev`` is unknown."""
    with temp_dir("worktree") as folder:
        tree = folder / "tree"
        made = subprocess.run(
            ["git", "worktree", "add", "--detach", "--quiet", str(tree), rev],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if made.returncode:
            sys.exit(f"error: cannot check out {rev!r}: {made.stderr.strip()}")
        try:
            yield tree
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=False
            )


def short_rev(rev: str) -> str:
    """``rev`` as a short commit hash (``rev`` itself if git does not know it)."""
    found = subprocess.run(
        ["git", "rev-parse", "--short", f"{rev}^{{commit}}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    return found.stdout.strip() or rev


# --------------------------------------------------------------------------- timing


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """``fn()``'s result and its wall-clock time in seconds."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def median_of(fn: Callable[[], object], repeats: int, *, warmup: int = 0) -> float:
    """Median wall-clock seconds of ``repeats`` calls of ``fn`` (after ``warmup`` calls)."""
    for _ in range(warmup):
        fn()
    times = [timed(fn)[1] for _ in range(max(1, repeats))]
    return statistics.median(times)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


class _Tee(io.TextIOBase):
    """A text stream writing to ``out`` and keeping a copy."""

    def __init__(self, out: TextIO) -> None:
        self.out, self.copy = out, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()


def tee_stdout() -> io.StringIO:
    """From now on, what is printed to stdout is also kept in the returned buffer."""
    tee = _Tee(sys.stdout)
    sys.stdout = tee
    return tee.copy


# --------------------------------------------------------------------------- reporting


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table; floats are printed as given (format them before)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return found.group(1).strip() if found else platform.processor() or "unknown"


# Instruction sets ONNX Runtime chooses its kernels by (INT8 ones above all: without a VNNI
# flag, AVX2 and AVX-512BW sum u8s8 products in saturating int16 pairs).
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_features() -> str:
    """Which of :data:`CPU_FEATURES` this CPU has, e.g. ``avx2 fma; lacks avx512f ...``."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "features unknown"
    found = re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE)
    if not found:
        return "features unknown"
    flags = set(found.group(1).split())
    has = [f for f in CPU_FEATURES if f in flags]
    lacks = [f for f in CPU_FEATURES if f not in flags]
    return " ".join(has) + (f"; lacks {' '.join(lacks)}" if lacks else "")


def cpu_count() -> int:
    """What ``nproc`` prints: the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def memory_gib() -> float:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return float("nan")
    found = re.search(r"^MemTotal:\s*(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) / 2**20 if found else float("nan")


def machine() -> str:
    """One line describing the machine and the library versions that matter."""
    versions = []
    for name in ("numpy", "PIL", "onnxruntime", "faiss"):
        with contextlib.suppress(Exception):
            module = __import__(name)
            versions.append(f"{'pillow' if name == 'PIL' else name} {module.__version__}")
    return (
        f"nproc {cpu_count()}, CPU {cpu_model()} ({cpu_features()}), {memory_gib():.0f} GiB RAM, "
        f"{platform.system()} {platform.machine()}, Python {platform.python_version()}; "
        + ", ".join(versions)
    )


def python() -> str:
    """This interpreter as one would type it; a venv inside the repository stays relative."""
    exe = Path(sys.executable)
    return str(exe.relative_to(REPO) if exe.is_relative_to(REPO) else exe)


def command() -> str:
    """The command line that is running, as one would type it from the repository root."""
    script = Path(sys.argv[0]).resolve()
    shown = str(script.relative_to(REPO)) if script.is_relative_to(REPO) else str(script)
    return shlex.join([python(), shown, *sys.argv[1:]])


@dataclass(frozen=True)
class CodeState:
    """The checked-out commit and the files under ``CODE_PATHS`` that differ from it."""

    head: str
    changed: tuple[str, ...] = ()

    def describe(self) -> str:
        """``abc1234``, or ``abc1234 **+ uncommitted changes** (files...)``."""
        if not self.changed:
            return self.head
        files = ", ".join(self.changed[:4])
        if len(self.changed) > 4:
            files += f" and {len(self.changed) - 4} more"
        return f"{self.head} **+ uncommitted changes** ({files})"


def code_state(repo: Path = REPO) -> CodeState:
    """HEAD of ``repo`` and its uncommitted changes under ``CODE_PATHS`` (untracked files
    included). Other files, BENCHMARKS.md among them, do not count: a run rewrites it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
        return done.stdout if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    status = git("status", "--porcelain", "--untracked-files=all", "--", *CODE_PATHS)
    return CodeState(head, tuple(sorted(line[3:] for line in status.splitlines() if line)))


def descriptor_versions() -> str:
    """The version strings of the built-in descriptors (what the figures were measured on)."""
    from lookalike.describe.base import create_descriptor, descriptor_names
    from lookalike.settings import get_settings

    settings = get_settings()
    named = [f"{n} `{create_descriptor(n, settings).version}`" for n in descriptor_names()]
    return "Descriptors: " + ", ".join(named) + "."


def provenance(code: CodeState, took_s: float, cmd: str | None = None) -> str:
    """The lines under a section's headline: command, date, run time, machine, commit."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Command: `{cmd or command()}`  \nDate: {now}  \nRun time: {duration(took_s)}  \n"
        f"Machine: {machine()}  \nCode: git {code.describe()}  \n"
        f"Load average when written (1/5/15 min): {load_average()} (other work on the "
        "machine inflates absolute times; compare ratios measured in the same run)\n"
    )


def duration(seconds: float) -> str:
    """``42 s`` or ``3 min 12 s``."""
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def load_average() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


# --------------------------------------------------------------------------- writing


def add_output_arguments(parser: argparse.ArgumentParser, quick: str | None = None) -> None:
    """``--no-write``, ``--allow-dirty``, ``--output`` and ``--quick`` (the reduced run
    ``quick`` describes; a benchmark without one runs in full, its sections unmarked)."""
    parser.add_argument("--no-write", action="store_true", help="print only, write no section")
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="write even with uncommitted changes under src/ or bench/ (the sections say so)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=BENCHMARKS_MD,
        help="the markdown file whose sections are rewritten (default: BENCHMARKS.md)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a reduced run ({quick}); its sections say so" if quick else "(a full run here)",
    )


def dirty_refusal(state: CodeState) -> str:
    return (
        f"error: uncommitted changes under {' or '.join(p + '/' for p in CODE_PATHS)} "
        f"({', '.join(state.changed[:6])}): figures written to BENCHMARKS.md now would belong "
        "to no commit. Commit them first, or pass --allow-dirty (the sections then say so), "
        "--no-write or --output ANOTHER_FILE."
    )


@dataclass
class Output:
    """Where and how a benchmark writes its sections (from :func:`add_output_arguments`).

    Created at the start of a run, so that a run that could not write refuses at once;
    :meth:`write` checks the code again and marks figures of changed code loudly.
    """

    path: Path | None  # None: --no-write
    allow_dirty: bool  # write figures of uncommitted code (marked as such)
    quick: str | None  # what the quick mode reduced; None for a full run
    start: CodeState
    mark: float = field(default_factory=time.monotonic)  # when this section's work began

    @classmethod
    def from_args(cls, args: argparse.Namespace, quick: str | None = None) -> Output:
        """The output the arguments ask for; exits with status 2 when writing would put
        figures of uncommitted code in BENCHMARKS.md without ``--allow-dirty``."""
        start = code_state()
        path = None if args.no_write else args.output
        # Only the repository's own BENCHMARKS.md is guarded: a scratch copy may hold anything.
        strict = path is not None and path.resolve() == BENCHMARKS_MD and not args.allow_dirty
        if strict and start.changed:
            print(dirty_refusal(start), file=sys.stderr)
            sys.exit(2)
        quick_note = quick if getattr(args, "quick", False) else None
        return cls(path, not strict, quick_note, start)

    def write(self, name: str, markdown: str, targets: Sequence[Target]) -> None:
        """Print section ``name`` (``markdown`` starts with its ``##`` heading) with its
        headline block and provenance, and write it unless ``--no-write``."""
        took, self.mark = time.monotonic() - self.mark, time.monotonic()
        now = code_state()
        notes: list[str] = []
        if self.quick:
            notes.append(
                f"> **Quick mode** (`--quick`): {self.quick}. These are not the reference "
                "figures: run without `--quick` for those."
            )
        if now != self.start:
            notes.append(
                f"> **The code changed during this run**: git {self.start.describe()} at the "
                f"start, git {now.describe()} when written. These figures belong to no commit."
            )
        elif now.changed:
            notes.append(
                f"> **Measured with uncommitted changes** on top of git {now.head}: these "
                "figures belong to no commit."
            )
        heading, _, body = markdown.strip("\n").partition("\n")
        block = "\n\n".join(
            [
                heading,
                *notes,
                sections.headline_table(targets),
                provenance(now, took).rstrip("\n"),
                body.strip("\n"),
            ]
        )
        print(f"\n{block}\n", flush=True)
        if self.path is None:
            return
        if now != self.start and not self.allow_dirty:
            print(
                f"error: the code changed during the run (git {self.start.describe()} at the "
                f"start, git {now.describe()} now): section {name!r} printed above, not written.",
                file=sys.stderr,
            )
            sys.exit(2)
        sections.put(self.path, name, block)

    def skipped(self, name: str, heading: str, targets: Sequence[Target], why: str) -> None:
        """Section ``name`` saying that it was not measured, and why (its targets listed)."""
        missed = [sections.skipped(t, why) for t in targets]
        self.write(name, f"{heading}\n\nNot measured: {why}.", missed)


# --------------------------------------------------------------------------- images


def skimage_photo(name: str) -> Image.Image:
    """A photo shipped in scikit-image's wheel (no download)."""
    spec = importlib.util.find_spec("skimage")
    assert spec is not None and spec.submodule_search_locations, "scikit-image is needed"
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    (path,) = folder.glob(f"{name}.*")
    with Image.open(path) as image:
        return image.convert("RGB")


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()
