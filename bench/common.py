"""Shared helpers for the benchmarks: data location, timing, machine facts, BENCHMARKS.md.

Benchmarks are not tests: they read the evaluation data in ``../shared/data`` (next to the
repository), print their tables, and replace their own section of ``BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
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
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
DATA_ENV = "LOOKALIKE_BENCH_DATA"
DEFAULT_DATA = REPO.parent / "shared" / "data"
# Exit status when the evaluation data is missing (argparse uses 2 for usage errors too:
# either way the benchmark could not run as asked).
EXIT_NO_DATA = 2

TITLE = "# Benchmarks"
INTRO = (
    "Measured by the scripts in `bench/` (run them all with `.venv/bin/python bench/run.py`).\n"
    "Each section is rewritten by the benchmark named in its markers; times are medians of\n"
    "repeated runs, and ratios compare measurements taken in the same run.\n"
)

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


def git_state() -> str:
    """The checked-out commit, and whether the working tree differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head or 'unknown'}{' + uncommitted changes' if dirty else ''}"


def descriptor_versions() -> str:
    """The version strings of the built-in descriptors (what the figures were measured on)."""
    from lookalike.describe.base import create_descriptor, descriptor_names
    from lookalike.settings import get_settings

    settings = get_settings()
    named = [f"{n} `{create_descriptor(n, settings).version}`" for n in descriptor_names()]
    return "Descriptors: " + ", ".join(named) + "."


def provenance(cmd: str | None = None) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Command: `{cmd or command()}`  \nDate: {now}  \nMachine: {machine()}  \n"
        f"Code: git {git_state()}  \n"
        f"Load average when written (1/5/15 min): {load_average()} (other work on the "
        "machine inflates absolute times; compare ratios measured in the same run)\n"
    )


def load_average() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def write_section(
    name: str, markdown: str, path: Path = BENCHMARKS_MD, *, command: str | None = None
) -> None:
    """Replace the ``<!-- bench:NAME -->`` ... ``<!-- /bench:NAME -->`` part of BENCHMARKS.md.

    The file is created (with a title) if missing, the section appended if absent; other
    sections are left as they are. The command (default: this process's), date and
    machine go under the section's first heading (or at its top). Safe against other
    benchmarks writing at the same time.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"bad section name {name!r}")
    body = markdown.strip("\n")
    lines = body.split("\n")
    if lines and lines[0].startswith("#"):
        body = "\n".join([lines[0], "", provenance(command).rstrip("\n"), *lines[1:]])
    else:
        body = provenance(command) + "\n" + body
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    # The lock lives outside the repository so that no stray file shows up in git.
    lock_path = Path(tempfile.gettempdir()) / "lookalike-bench-markdown.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = path.read_text() if path.exists() else f"{TITLE}\n\n{INTRO}"
        pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
        if pattern.search(text):
            text = pattern.sub(lambda _: block, text, count=1)
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    print(f"wrote section {name!r} of {path}")
