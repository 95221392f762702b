"""The benchmarks' tooling (bench/run.py, common.py, sections.py), not the benchmarks: which
code a section says it measured, when writing is refused, headline verdicts, and that every
section of BENCHMARKS.md belongs to a benchmark."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def run() -> ModuleType:
    """bench/run.py, loaded without leaving bench/ on sys.path (its http.py would shadow the
    standard library's) or its helper modules under their plain names in sys.modules."""
    saved = list(sys.path)
    spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module  # dataclasses look their module up while it loads
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
        for name in ("common", "sections"):
            sys.modules.pop(name, None)
    return module


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_code_state_counts_src_and_bench_only(run: ModuleType, tmp_path: Path) -> None:
    """Rewriting BENCHMARKS.md (which every benchmark does) is no uncommitted change of the
    code measured; changed or new files under src/ or bench/ are."""
    for name in ("src/a.py", "bench/b.py", "BENCHMARKS.md"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    state = run.common.code_state
    (tmp_path / "BENCHMARKS.md").write_text("new figures\n")
    assert state(tmp_path).changed == ()
    (tmp_path / "src/a.py").write_text("y\n")
    (tmp_path / "bench/new.py").write_text("z\n")
    after = state(tmp_path)
    assert after.changed == ("bench/new.py", "src/a.py")
    assert after.describe().startswith(f"{after.head} **+ uncommitted changes** (bench/new.py")


def output_args(path: Path, **flags: bool) -> argparse.Namespace:
    return argparse.Namespace(
        output=path,
        no_write=flags.get("no_write", False),
        allow_dirty=flags.get("allow_dirty", False),
        quick=flags.get("quick", False),
    )


def test_writing_uncommitted_figures(
    run: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BENCHMARKS.md refuses figures of uncommitted code unless --allow-dirty; the section
    then says so at its top, before the headline."""
    common = run.common
    dirty = common.CodeState("abc1234", ("src/lookalike/x.py",))
    monkeypatch.setattr(common, "code_state", lambda repo=common.REPO: dirty)
    with pytest.raises(SystemExit) as refused:
        common.Output.from_args(output_args(common.BENCHMARKS_MD))
    assert refused.value.code == 2
    common.Output.from_args(output_args(common.BENCHMARKS_MD, no_write=True))
    scratch = tmp_path / "B.md"
    out = common.Output.from_args(output_args(scratch, quick=True), quick="fewer photos")
    target = run.sections.check("throughput ratio", 0.57, ">=", 1.0)
    out.write("speed-index", "## Indexing\n\nThe body.", [target])
    text = scratch.read_text()
    body = run.sections.parse(text).sections["speed-index"]
    heading, quick, uncommitted, table = body.split("\n\n")[:4]
    assert heading == "## Indexing"
    assert quick.startswith("> **Quick mode** (`--quick`): fewer photos.")
    assert uncommitted.startswith("> **Measured with uncommitted changes** on top of git abc1234")
    assert run.sections.headline_rows(table) == [
        ["throughput ratio", ">= 1.00", "0.57", "**not met**"]
    ]
    assert "Code: git abc1234 **+ uncommitted changes** (src/lookalike/x.py)" in body
    assert body.endswith("The body.")


def test_verdicts_are_computed(run: ModuleType) -> None:
    check = run.sections.check
    assert check("a", 0.57, ">=", 1.0).cells()[1:] == [">= 1.00", "0.57", "**not met**"]
    assert check("a", 1.31, ">=", 1.0).cells()[3] == "**met**"
    assert check("a", float("nan"), "<=", 1.0).cells()[3] == "**not met**"
    assert check("a", 0, "==", 0, "{:.0f}").cells()[1:] == ["== 0", "0", "**met**"]
    plain = run.sections.informational("b", "12 ms").cells()
    assert plain == ["b", "no target (informational)", "12 ms", "-"]
    skipped = run.sections.skipped(check("c", 3.6, ">=", 3.0, "{:.2f}x"), "not installed")
    assert skipped.cells() == ["c", ">= 3.00x", "-", "**skipped**: not installed"]


def test_headline_rows_read_back_what_was_written(run: ModuleType) -> None:
    sections = run.sections
    targets = [sections.informational("a | b", "1 / 2"), sections.check("c", 2, "<", 3)]
    table = sections.headline_table(targets)
    assert sections.headline_rows(f"## T\n\n{table}\n\ntext") == [t.cells() for t in targets]


def test_every_section_of_benchmarks_md_is_written_by_a_benchmark(run: ModuleType) -> None:
    doc = run.sections.parse(run.common.BENCHMARKS_MD.read_text())
    assert run.structure_problems(doc) == []
    assert set(doc.sections) <= set(run.ORDER)


def test_finish_drops_stale_sections_and_puts_the_summary_first(
    run: ModuleType, tmp_path: Path
) -> None:
    sections = run.sections
    ann = "## ANN\n\n" + sections.headline_table([sections.check("recall", 0.99, ">=", 0.95)])
    path = tmp_path / "B.md"
    for name, body in (("old-thing", "## Old"), ("speed-ann", ann), ("holidays", "## H")):
        sections.put(path, name, body)
    assert run.finish(path) == ["old-thing"]
    doc = sections.parse(path.read_text())
    assert list(doc.sections) == ["summary", "holidays", "speed-ann"]
    summary = doc.sections["summary"]
    assert "| `speed-ann` | recall | >= 0.95 | 0.99 | **met** | ? |" in summary
    assert "| `holidays` | (no headline: an old section) |" in summary
    assert "| `memory` | (section missing) |" in summary
    assert doc.intro.startswith("# Benchmarks\n")


def test_names_choose_benchmarks_or_sections(run: ModuleType) -> None:
    def plan(*names: str) -> list[tuple[str, list[str]]]:
        result: list[tuple[str, list[str]]] = run.plan(run.select(list(names)))
        return result

    assert plan("speed-ann", "memory") == [("speed", ["ann"]), ("memory", [])]
    assert plan("speed") == [("speed", [])]
    assert plan("http-concurrency") == [("http", ["concurrency"])]
    assert plan("faces_lfw") == [("faces_lfw", ["--ablation", "--jitter", "10"])]
    assert [script for script, _ in plan()] == list(run.SCRIPTS)
    with pytest.raises(ValueError, match=r"unknown benchmark.*nonsense"):
        run.select(["nonsense"])
