"""BENCHMARKS.md as a document: its sections, their headline blocks, the summary.

Each benchmark owns the sections between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``
and rewrites them whole. A section starts with its heading and a *headline* table: what is
measured, the target, the measured figure and the verdict ("met" / "not met"), computed by
the benchmark from its own measurements (:func:`check`), never typed by hand. ``bench/run.py``
collects the headline rows of every section into the ``summary`` section.
"""

from __future__ import annotations

import fcntl
import math
import operator
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lookalike.files import atomic_write

TITLE = "# Benchmarks"
INTRO = """\
Measured by the scripts in `bench/`. One command regenerates every section, from a
committed state: `python bench/run.py` (`--list` shows the benchmarks and their sections,
`python bench/run.py NAME ...` runs some of them; see `bench/run.py --help`). Each section
names the commit it measured (`Code: git ...`); a section measured with uncommitted changes
under `src/` or `bench/`, or in `--quick` mode, says so at its top.

Every section starts with its headline: the target, the measured figure and the verdict,
computed by the benchmark (a target not met reads **not met**). Times are medians of repeated
runs on a shared, noisy machine; ratios compare measurements taken in the same run.
"""
SUMMARY = "summary"
HEADLINE_HEADERS = ("headline", "target", "measured", "verdict")
NO_TARGET = "no target (informational)"

_MARKED = re.compile(r"<!-- bench:([A-Za-z0-9_.-]+) -->\n?(.*?)\n?<!-- /bench:\1 -->", re.DOTALL)
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}


# --------------------------------------------------------------------------- headlines


@dataclass(frozen=True)
class Target:
    """One headline row: what is measured, its figure, the target and whether it is met.

    ``goal`` empty: no target (informational). ``skipped``: why it was not measured.
    """

    headline: str
    measured: str
    goal: str = ""
    met: bool | None = None
    skipped: str = ""

    def cells(self) -> list[str]:
        """The row's cells: headline, target, measured, verdict."""
        if self.skipped:
            verdict = f"**skipped**: {self.skipped}"
        elif not self.goal:
            verdict = "-"
        else:
            verdict = "**met**" if self.met else "**not met**"
        return [self.headline, self.goal or NO_TARGET, self.measured, verdict]


def check(headline: str, value: float, op: str, goal: float, fmt: str = "{:.2f}") -> Target:
    """A target ``value OP goal`` (e.g. ``>=``), the verdict computed; NaN is never met."""
    met = not math.isnan(value) and _OPS[op](value, goal)
    return Target(headline, fmt.format(value), f"{op} {fmt.format(goal)}", met)


def informational(headline: str, measured: str) -> Target:
    """A headline figure without a target."""
    return Target(headline, measured)


def skipped(target: Target, why: str) -> Target:
    """``target`` (its headline and goal) not measured, for the reason ``why``."""
    return Target(target.headline, "-", target.goal, None, why)


def headline_table(targets: Sequence[Target]) -> str:
    """The headline block: a table of the targets with their verdicts."""
    rows = [[_cell(c) for c in t.cells()] for t in targets]
    lines = ["| " + " | ".join(HEADLINE_HEADERS) + " |", "|" + "---|" * len(HEADLINE_HEADERS)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def headline_rows(body: str) -> list[list[str]]:
    """The rows of the headline table in a section's ``body`` (empty if it has none)."""
    lines = body.split("\n")
    head = "| " + " | ".join(HEADLINE_HEADERS) + " |"
    if head not in lines:
        return []
    rows: list[list[str]] = []
    for line in lines[lines.index(head) + 2 :]:
        if not line.startswith("|"):
            break
        cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        rows.append([c.strip().replace("\\|", "|") for c in cells])
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# --------------------------------------------------------------------------- the document


@dataclass
class Document:
    """BENCHMARKS.md: the text before the first section, then the sections in file order."""

    intro: str
    sections: dict[str, str] = field(default_factory=dict)  # name -> text between markers
    stray: list[str] = field(default_factory=list)  # text outside the intro and sections

    def render(self) -> str:
        parts = [self.intro.rstrip("\n") + "\n"]
        for name, body in self.sections.items():
            parts.append(f"<!-- bench:{name} -->\n{body.strip()}\n<!-- /bench:{name} -->\n")
        return "\n".join(parts)


def parse(text: str) -> Document:
    """The document in ``text`` (an empty one with the title and intro if ``text`` is "")."""
    if not text.strip():
        return Document(f"{TITLE}\n\n{INTRO}")
    found = list(_MARKED.finditer(text))
    intro = text[: found[0].start()] if found else text
    doc = Document(intro)
    for i, match in enumerate(found):
        doc.sections[match.group(1)] = match.group(2)
        gap = text[match.end() : found[i + 1].start() if i + 1 < len(found) else len(text)]
        if gap.strip():
            doc.stray.append(gap.strip())
    return doc


_LOCK = Path(tempfile.gettempdir()) / "lookalike-bench-markdown.lock"


@contextmanager
def editing(path: Path) -> Iterator[Document]:
    """``path`` parsed, for the block to change; written back (atomically) afterwards.

    Benchmarks writing at the same time take turns (a lock outside the repository, so that
    no stray file shows up in git).
    """
    with open(_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        doc = parse(path.read_text() if path.exists() else "")
        yield doc
        atomic_write(path, doc.render().encode())


def put(path: Path, name: str, body: str) -> None:
    """Replace (or append) section ``name`` of ``path`` with ``body``."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"bad section name {name!r}")
    with editing(path) as doc:
        doc.sections[name] = body.strip("\n")
    print(f"wrote section {name!r} of {path}", flush=True)


def tidy(path: Path, order: Sequence[str]) -> list[str]:
    """Sections of ``path`` put in ``order``; those not in it dropped (their names returned)."""
    with editing(path) as doc:
        dropped = [n for n in doc.sections if n not in order]
        doc.sections = {n: doc.sections[n] for n in order if n in doc.sections}
    return dropped


# --------------------------------------------------------------------------- summary


def code_of(body: str) -> str:
    """The commit a section measured (from its ``Code:`` line; "?" if none), with
    "+ uncommitted changes" and "(quick)" when they apply."""
    found = re.search(r"^Code: git (\S+)( \*\*\+ uncommitted changes\*\*)?", body, re.MULTILINE)
    code = found.group(1) if found else "?"
    if found and found.group(2):
        code += " + uncommitted changes"
    if "**Quick mode**" in body:
        code += " (quick)"
    return code


def _kind(verdict: str) -> str:
    """met, not met, informational or not measured, from a headline row's verdict cell."""
    kinds = {"**met**": "met", "**not met**": "not met", "-": "informational"}
    return kinds.get(verdict, "not measured")


def summary(doc: Document, order: Sequence[str]) -> str:
    """The summary section: every section's headline rows, with the commit each measured."""
    rows: list[list[str]] = []
    for name in order:
        body = doc.sections.get(name)
        if body is None:
            rows.append([f"`{name}`", "(section missing)", "", "", "**not measured**", ""])
            continue
        found = headline_rows(body)
        if not found:
            rows.append([f"`{name}`", "(no headline: an old section)", "", "", "?", ""])
        rows += [[f"`{name}`", *r, code_of(body)] for r in found]
    kinds = Counter(_kind(r[4]) for r in rows)
    header = ["section", *HEADLINE_HEADERS, "code (git)"]
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(
        [
            "## Summary: every headline and its verdict",
            "",
            "Collected by `bench/run.py` from the headline block at the top of each section "
            "below, whenever it writes; each section was measured in its own run, on the "
            f"commit in the last column. Targets: {kinds['met']} met, {kinds['not met']} not "
            f"met, {kinds['not measured']} not measured (and {kinds['informational']} "
            "figures without a target).",
            "",
            *table,
        ]
    )
