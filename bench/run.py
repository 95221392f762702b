"""Run the benchmarks and update BENCHMARKS.md: ``python bench/run.py [NAME ...]``.

NAME is any of ``holidays`` (retrieval quality, ``bench/holidays.py``), ``neardup``
(near-duplicate search and grouping, ``bench/neardup.py``) and ``speed`` (indexing
throughput, search overhead, ANN at scale, ``bench/speed.py``), ``faces_lfw`` (face
verification on LFW pairs), ``faces_speed`` (face pipeline per stage on press photos),
``faces_cluster`` (face clustering on press photos and LFW), ``faces_compare`` (speed
and rank-1 against face_recognition, skipped unless that package is installed),
``http`` (REST API overhead over the library, throughput with 1 and 2 workers, and
concurrent searches in one worker against a baseline revision, ``bench/http.py``),
``memory`` (a server worker's peak RSS for large images, against a baseline revision,
``bench/memory.py``) and ``int8_kernels`` (cnn vectors on emulated x86 CPUs, skipped
unless ``qemu-x86_64`` is installed); default: all, in that order.
Each runs in its own process (the ANN part holds several GiB) and rewrites its own
section(s) of BENCHMARKS.md. The output of ``holidays.py`` is put in a section of its own
unless the script writes one itself.

Exit status: 0 when every benchmark ran, 2 when the evaluation data is missing, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

BENCH = Path(__file__).resolve().parent
NAMES = (
    "holidays",
    "neardup",
    "speed",
    "faces_lfw",
    "faces_speed",
    "faces_cluster",
    "faces_compare",
    "http",
    "memory",
    "int8_kernels",
)
# Data each benchmark reads (checked up front, so a missing folder fails fast).
NEEDS = {
    "holidays": ("holidays/images", "holidays/labels.csv"),
    "neardup": ("photos", "holidays/images"),
    "speed": ("holidays/images", "faces-photos"),
    "faces_lfw": ("lfw-dev/pairs.csv",),
    "faces_speed": ("faces-photos",),
    "faces_cluster": ("faces-photos/labels.csv", "lfw-dev/pairs.csv"),
    "faces_compare": ("faces-photos/labels.csv",),
    "http": (),  # enrols faces from faces-photos when present, else scikit-image's astronaut
    "memory": (),  # builds its images
    "int8_kernels": (),  # scikit-image's photos
}


def section_text(name: str) -> str | None:
    """The current ``<!-- bench:NAME -->`` section of BENCHMARKS.md, or None."""
    if not common.BENCHMARKS_MD.exists():
        return None
    found = re.search(
        rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->",
        common.BENCHMARKS_MD.read_text(),
        re.DOTALL,
    )
    return found.group(0) if found else None


def run(cmd: list[str], env: dict[str, str], capture: bool) -> tuple[int, str]:
    """Run ``cmd`` from the repository root, echoing its output; returns (status, output)."""
    shown = shlex.join([common.python(), *cmd[1:]])
    print(f"\n$ {shown}", flush=True)
    if not capture:
        return subprocess.run(cmd, cwd=common.REPO, env=env, check=False).returncode, ""
    lines: list[str] = []
    with subprocess.Popen(
        cmd,
        cwd=common.REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            lines.append(line)
    return proc.returncode, "".join(lines)


def run_holidays(data: Path, env: dict[str, str]) -> str:
    script = BENCH / "holidays.py"
    if not script.exists():
        print(f"\nholidays: {script} does not exist", flush=True)
        return "skipped (bench/holidays.py does not exist)"
    before = section_text("holidays")
    cmd = [sys.executable, str(script.relative_to(common.REPO))]
    if data != common.DEFAULT_DATA.resolve():
        # holidays.py takes the Holidays folder itself (and ignores $LOOKALIKE_BENCH_DATA).
        cmd += ["--data", str(data / "holidays")]
    status, output = run(cmd, env, capture=True)
    if status != 0:
        return f"failed (exit status {status})"
    after = section_text("holidays")
    if after is None or after == before:
        markdown = "\n".join(
            [
                "## Holidays retrieval quality (`bench/holidays.py`)",
                "",
                f"Output of the script (data: `{data}`):",
                "",
                "```text",
                output.rstrip(),
                "```",
            ]
        )
        common.write_section("holidays", markdown, command=shlex.join([common.python(), *cmd[1:]]))
    return "ok"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"{', '.join(NAMES)}")
    common.add_data_argument(parser)
    parser.add_argument("--size", type=int, default=None, help="vectors for speed's ANN part")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args(argv)
    names = args.names or list(NAMES)
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    needed = sorted({path for n in names for path in NEEDS[n]})
    # http alone needs no data (it uses faces-photos when there): then none is checked.
    data = common.data_dir(args.data, *needed) if needed else None
    env = dict(os.environ)
    if data is not None:
        # Children find the data through the environment whatever their own options are.
        env[common.DATA_ENV] = str(data)
    elif args.data is not None:
        env[common.DATA_ENV] = str(args.data.expanduser())

    status: dict[str, str] = {}
    started = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        if name == "holidays":
            assert data is not None  # NEEDS["holidays"] made sure of it
            status[name] = run_holidays(data, env)
        elif name == "faces_compare" and importlib.util.find_spec("face_recognition") is None:
            status[name] = (
                "skipped (face_recognition is not installed: "
                "pip install --no-deps face_recognition)"
            )
        elif name == "int8_kernels" and shutil.which("qemu-x86_64") is None:
            status[name] = "skipped (qemu-x86_64 is not installed: apt-get install qemu-user)"
        else:
            cmd = [sys.executable, str((BENCH / f"{name}.py").relative_to(common.REPO))]
            if args.no_write:
                cmd.append("--no-write")
            if name == "speed" and args.size is not None:
                cmd += ["--size", str(args.size)]
            code, _ = run(cmd, env, capture=False)
            status[name] = "ok" if code == 0 else f"failed (exit status {code})"
        print(f"\n{name}: {status[name]} in {time.perf_counter() - t0:.0f} s", flush=True)

    print(f"\nall done in {time.perf_counter() - started:.0f} s:")
    for name, what in status.items():
        print(f"  {name}: {what}")
    return 0 if all(s == "ok" or s.startswith("skipped") for s in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
