"""Run the benchmarks and rewrite their sections of BENCHMARKS.md: ``python bench/run.py``.

Without NAME every benchmark runs, so every section is regenerated; NAME picks some: a
benchmark (``speed``) or one of its sections (``speed-ann``); ``--list`` shows them all, with
the data each needs and how long its last run took. Each benchmark runs in its own process
(the ANN part holds several GiB) with the arguments its sections describe. After a run that
wrote, BENCHMARKS.md is put in order: the summary of every headline at the top, the sections
in the order of ``SECTIONS``, and any section that no benchmark writes any more dropped (and
named).

Sections name the commit they measured. Writing them from a tree with uncommitted changes
under ``src/`` or ``bench/`` is refused unless ``--allow-dirty`` (the sections then say so at
their top); ``--quick`` makes reduced runs whose sections say so too. ``--check`` compares
BENCHMARKS.md with the benchmarks (stale, missing, old-format, quick or uncommitted sections).

Exit status: 0 when every benchmark ran (or was skipped with a section saying why), 2 when the
evaluation data is missing or the tree has uncommitted changes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import sections

BENCH = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Section:
    """A section of BENCHMARKS.md and the benchmark that writes it."""

    name: str
    script: str  # bench/<script>.py writes it
    part: tuple[str, ...]  # the script's arguments that make this section alone
    needs: tuple[str, ...]  # paths in the evaluation data folder
    about: str


SECTIONS = (
    Section(
        "holidays",
        "holidays",
        (),
        ("holidays/images", "holidays/labels.csv"),
        "Holidays retrieval quality (mAP) of the cnn descriptor",
    ),
    Section(
        "neardup",
        "neardup",
        (),
        ("photos", "holidays/images"),
        "edited copies finding their original; duplicate groups",
    ),
    Section(
        "regions",
        "regions",
        (),
        ("photos", "holidays/images"),
        "search by a region: crops finding their photo, against global search",
    ),
    Section(
        "speed-index",
        "speed",
        ("index",),
        ("holidays/images", "faces-photos"),
        "indexing throughput against a naive loop",
    ),
    Section("speed-search", "speed", ("search",), (), "search overhead over bare faiss"),
    Section("speed-ann", "speed", ("ann",), (), "IVF recall and latency at 1M vectors"),
    Section("speed-checksum", "speed", ("checksum",), (), "cost of the index file checksum"),
    Section(
        "compact-candidates",
        "compact",
        ("candidates",),
        (),
        "compact index candidates (PQ, OPQ, ITQ) against IVF-flat at 1M vectors",
    ),
    Section("compact-scale", "compact", ("scale",), (), "the compact index at 10M vectors"),
    Section("catalog", "catalog", ("write",), (), "PostgreSQL catalog against SQLite"),
    Section("catalog-startup", "catalog", ("startup",), (), "a node's start-up from 1M vectors"),
    Section("faces-lfw", "faces_lfw", (), ("lfw-dev/pairs.csv",), "face verification on LFW"),
    Section(
        "faces-speed",
        "faces_speed",
        (),
        ("faces-photos/labels.csv",),
        "face pipeline per stage on press photos",
    ),
    Section(
        "faces-cluster",
        "faces_cluster",
        (),
        ("faces-photos/labels.csv", "lfw-dev/pairs.csv"),
        "face clustering on press photos and LFW",
    ),
    Section(
        "faces-cluster-scale",
        "faces_cluster_scale",
        (),
        ("lfw-dev/pairs.csv",),
        "face clustering at 100k faces against the old scan",
    ),
    Section(
        "faces-compare",
        "faces_compare",
        (),
        ("faces-photos/labels.csv",),
        "face pipeline against face_recognition",
    ),
    Section(
        "faces-detect",
        "faces_detect",
        (),
        ("lfw-dev/images", "faces-photos/labels.csv", "photos"),
        "face detectors on composed crowd photos and the press photos",
    ),
    Section("http", "http", ("api",), (), "REST API overhead over the library; throughput"),
    Section(
        "http-concurrency",
        "http",
        ("concurrency",),
        (),
        "concurrent searches in one worker, against a baseline revision",
    ),
    Section(
        "webapp",
        "webapp",
        (),
        (),
        "the web page's library: first screen of thumbnails on 10k images",
    ),
    Section(
        "cache", "cache", (), (), "Redis result cache: a repeated HTTP search, hit against miss"
    ),
    Section("memory", "memory", (), (), "a worker's peak RSS for large images, against a baseline"),
    Section(
        "workers",
        "workers",
        (),
        ("holidays/images",),
        "queued indexing throughput, 1 and 2 Celery workers",
    ),
    Section(
        "int8-kernels",
        "int8_kernels",
        (),
        (),
        "cnn vectors on emulated x86 CPUs, against native ones",
    ),
)
ORDER = (sections.SUMMARY, *(s.name for s in SECTIONS))
SCRIPTS = tuple(dict.fromkeys(s.script for s in SECTIONS))
# Arguments of a full run beyond the script's defaults: what the written sections show.
FULL_ARGS = {"faces_lfw": ("--ablation", "--jitter", "10")}


# --------------------------------------------------------------------------- choosing


def select(names: list[str]) -> list[Section]:
    """The sections ``names`` (benchmarks or sections) stand for, in ``SECTIONS`` order;
    every section for no name. Raises ValueError naming what is unknown."""
    if not names:
        return list(SECTIONS)
    unknown = [n for n in names if n not in SCRIPTS and n not in ORDER[1:]]
    if unknown:
        raise ValueError(
            f"unknown benchmark(s) {', '.join(unknown)}; choose from benchmarks "
            f"{', '.join(SCRIPTS)} or sections {', '.join(ORDER[1:])}"
        )
    return [s for s in SECTIONS if s.name in names or s.script in names]


def plan(chosen: list[Section]) -> list[tuple[str, list[str]]]:
    """(script, its arguments) for each benchmark process that makes the ``chosen`` sections."""
    out: list[tuple[str, list[str]]] = []
    for script in SCRIPTS:
        mine = [s for s in chosen if s.script == script]
        if not mine:
            continue
        whole = len(mine) == sum(s.script == script for s in SECTIONS)
        parts = [] if whole else [a for s in mine for a in s.part]
        out.append((script, [*parts, *FULL_ARGS.get(script, ())]))
    return out


# --------------------------------------------------------------------------- checking


def script_writes(section: Section) -> bool:
    """Whether the section's script writes it: ``out.write("NAME", ...)`` in its source."""
    source = (BENCH / f"{section.script}.py").read_text()
    return re.search(rf'\.(?:write|skipped)\(\s*"{re.escape(section.name)}"', source) is not None


def structure_problems(doc: sections.Document) -> list[str]:
    """Sections of ``doc`` that no benchmark writes, and registered sections whose script
    does not write them."""
    out = [
        f"section {name!r} is written by no benchmark (bench/run.py drops it when it writes)"
        for name in doc.sections
        if name not in ORDER
    ]
    out += [
        f"bench/{s.script}.py does not write section {s.name!r}"
        for s in SECTIONS
        if not script_writes(s)
    ]
    return out


def freshness_problems(doc: sections.Document) -> list[str]:
    """Sections missing, without a headline, of a quick run or of uncommitted code; text
    outside the sections; a summary that is not the sections' headlines."""
    out = [f"text outside any section: {text[:60]!r}..." for text in doc.stray]
    for s in SECTIONS:
        body = doc.sections.get(s.name)
        if body is None:
            out.append(f"section {s.name!r} is missing: run bench/run.py {s.name}")
        elif not sections.headline_rows(body):
            out.append(f"section {s.name!r} has no headline block: run bench/run.py {s.name}")
        elif "belong to no commit" in body:
            out.append(f"section {s.name!r} measured uncommitted (or changing) code")
        elif "**Quick mode**" in body:
            out.append(f"section {s.name!r} comes from a --quick run")
    summary = sections.summary(doc, ORDER[1:])
    if doc.sections.get(sections.SUMMARY, "").strip() != summary.strip():
        out.append("the summary is not up to date: bench/run.py rewrites it when it writes")
    return out


def finish(path: Path) -> list[str]:
    """BENCHMARKS.md put in order: the intro, the summary, the sections in ``ORDER``;
    sections no benchmark writes dropped (their names returned)."""
    with sections.editing(path) as doc:
        for text in doc.stray:
            print(f"warning: dropped text outside any section: {text[:200]!r}", file=sys.stderr)
        dropped = [n for n in doc.sections if n not in ORDER]
        kept = {n: b for n, b in doc.sections.items() if n in ORDER}
        kept[sections.SUMMARY] = sections.summary(sections.Document(doc.intro, kept), ORDER[1:])
        doc.intro = f"{sections.TITLE}\n\n{sections.INTRO}"
        doc.sections = {n: kept[n] for n in ORDER if n in kept}
    return dropped


# --------------------------------------------------------------------------- listing


def last_run(body: str | None) -> str:
    """How long the section's last run took, its commit and its verdicts, in a few words."""
    if body is None:
        return "not in the file"
    rows = sections.headline_rows(body)
    if not rows:
        return "old section without a headline"
    took = re.search(r"^Run time: (.+?)\s*$", body, re.MULTILINE)
    verdicts = [r[3].split(":")[0].replace("*", "") for r in rows]
    counted = ", ".join(f"{verdicts.count(v)} {v}" for v in dict.fromkeys(verdicts) if v != "-")
    when = took.group(1) if took else "?"
    return f"{when}, git {sections.code_of(body)}; {counted or 'no target'}"


def listing(doc: sections.Document) -> str:
    """What ``--list`` prints: each section, the command that makes it, data, last run."""
    lines = []
    for s in SECTIONS:
        cmd = shlex.join([f"bench/{s.script}.py", *s.part, *FULL_ARGS.get(s.script, ())])
        lines += [
            f"{s.name}: {s.about}",
            f"    command: {cmd}",
            f"    data: {', '.join(s.needs) or 'none (builds its own)'}",
            f"    last run: {last_run(doc.sections.get(s.name))}",
        ]
    lines += [f"{p}" for p in structure_problems(doc)]
    return "\n".join(lines)


# --------------------------------------------------------------------------- running


def run(cmd: list[str], env: dict[str, str]) -> int:
    """Run ``cmd`` from the repository root, its output going to ours; its exit status."""
    print(f"\n$ {shlex.join([common.python(), *cmd[1:]])}", flush=True)
    return subprocess.run(cmd, cwd=common.REPO, env=env, check=False).returncode


def outcome(code: int) -> str:
    if code == 0:
        return "ok"
    if code == common.EXIT_SKIPPED:
        return "skipped (its section says why)"
    return f"failed (exit status {code})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks: {', '.join(SCRIPTS)}; or sections"
    )
    common.add_data_argument(parser)
    common.add_output_arguments(parser, quick="each benchmark's own reduced mode")
    parser.add_argument("--list", action="store_true", help="list the sections and exit")
    parser.add_argument("--check", action="store_true", help="check BENCHMARKS.md and exit")
    args = parser.parse_args(argv)
    path: Path = args.output
    doc = sections.parse(path.read_text() if path.exists() else "")
    if args.list:
        print(listing(doc))
        return 0
    if args.check:
        problems = structure_problems(doc) + freshness_problems(doc)
        print("\n".join(problems) or f"{path}: every section up to date")
        return 1 if problems else 0
    try:
        chosen = select(args.names)
    except ValueError as e:
        parser.error(str(e))
    output = common.Output.from_args(args)  # refuses a dirty tree before anything runs
    needed = sorted({p for s in chosen for p in s.needs})
    data = common.data_dir(args.data, *needed) if needed else None
    env = dict(os.environ)
    if data is not None or args.data is not None:
        # Children find the data through the environment whatever their own options are.
        env[common.DATA_ENV] = str(data or args.data.expanduser())
    chosen_flags = {"--no-write": args.no_write, "--allow-dirty": args.allow_dirty}
    chosen_flags["--quick"] = args.quick
    flags = [flag for flag, on in chosen_flags.items() if on]
    if path.resolve() != common.BENCHMARKS_MD:
        flags += ["--output", str(path)]

    status: dict[str, tuple[str, float]] = {}
    started = time.perf_counter()
    for script, script_args in plan(chosen):
        cmd = [sys.executable, f"bench/{script}.py", *script_args, *flags]
        if script == "holidays" and data is not None and data != common.DEFAULT_DATA.resolve():
            cmd += ["--data", str(data / "holidays")]  # holidays.py takes the Holidays folder
        t0 = time.perf_counter()
        status[script] = (outcome(run(cmd, env)), time.perf_counter() - t0)
        print(f"\n{script}: {status[script][0]} in {common.duration(status[script][1])}")

    if output.path is not None:
        for name in finish(output.path):
            print(f"dropped section {name!r}: no benchmark writes it any more")
    print(f"\nall done in {common.duration(time.perf_counter() - started)}:")
    for script, (what, took) in status.items():
        print(f"  {script}: {what} ({common.duration(took)})")
    ok = all(what == "ok" or what.startswith("skipped") for what, _ in status.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
