"""The ``lookalike`` command line. Only the ``cli`` package turns errors into exit codes."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import click
from tqdm import tqdm

from lookalike.answers import Duplicates, Failed, IndexSummary, SearchAnswer
from lookalike.cli.common import (
    FAILED,
    USAGE,
    data_dir_option,
    echo_json,
    print_index_summary,
    shared_parts_options,
    with_engine,
)
from lookalike.cli.common import fail as _fail
from lookalike.describe.regions import Box
from lookalike.errors import BadInput, ImageError
from lookalike.files import shown
from lookalike.ingest.report import IndexInterrupted
from lookalike.search.engine import Lookalike, SearchResult
from lookalike.search.regions import parse_box
from lookalike.search.rerank import MEASURES, SCORES, Measure


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@data_dir_option
@shared_parts_options
@click.pass_context
def cli(ctx: click.Context, /, data_dir: Path | None, **urls: str | None) -> None:
    """Offline image search and face recognition on your own machine."""
    ctx.obj = {"data_dir": data_dir, **urls}


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a tty).")
@click.option(
    "--faces/--no-faces",
    default=None,
    help="Find, recognise and group faces (default: the faces setting, on).",
)
@click.option(
    "--queue",
    is_flag=True,
    help="Split the work into chunks for `lookalike worker` processes (needs a broker URL); "
    "prints the job id.",
)
@click.option("--wait", is_flag=True, help="With --queue: follow the job to its end.")
@data_dir_option
@with_engine
def index(
    engine: Lookalike,
    paths: Sequence[Path],
    as_json: bool,
    progress: bool | None,
    faces: bool | None,
    queue: bool,
    wait: bool,
) -> None:
    """Add the images in PATHS (files or folders, recursively)."""
    if wait and not queue:
        _fail("--wait goes with --queue", USAGE)
    if queue:
        from lookalike.cli.queue import queued_index

        queued_index(engine, paths, faces=faces, wait=wait, as_json=as_json, progress=progress)
        return
    try:
        report = engine.index(paths, faces=faces, progress=progress)
    except IndexInterrupted as stop:
        print_index_summary(IndexSummary.of(stop.report), as_json)
        click.echo("interrupted: what was committed is kept; run again to resume", err=True)
        sys.exit(130)
    print_index_summary(IndexSummary.of(report), as_json)
    if report.failed:
        sys.exit(FAILED)


def _write_sheets(
    engine: Lookalike, results: Sequence[SearchResult | None], out: Path
) -> list[Path]:
    """Write a contact sheet per answered query (None: the query failed); returns where:
    ``out`` for one query, ``out-N`` for the Nth of several."""
    from lookalike.sheet import contact_sheet, load_thumbnail

    written: list[Path] = []
    for n, res in enumerate(results, start=1):
        if res is None:
            continue
        target = out if len(results) == 1 else out.with_name(f"{out.stem}-{n}{out.suffix}")
        tiles = []
        for hit in res.results:
            image = load_thumbnail(hit.path)
            if image is not None:
                tiles.append((image, f"#{hit.rank} {hit.score:.3f} {Path(hit.path).name}"))
        query = load_thumbnail(res.query)
        if query is None:
            continue
        contact_sheet(query, Path(res.query).name, tiles, target)
        written.append(target)
    return written


def _box_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Box | None:
    """``--box l,t,r,b`` parsed; a malformed or empty box is a usage error."""
    if value is None:
        return None
    try:
        return parse_box(value)
    except BadInput as exc:
        raise click.BadParameter(exc.message) from None


@cli.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-k", "k", type=int, default=10, show_default=True, help="Results per query.")
@click.option("--descriptor", default=None, help="cnn (default), color or phash.")
@click.option(
    "--measure",
    type=click.Choice(MEASURES),
    default=None,
    help="cosine (default), euclidean (a distance: lower is closer), pearson; phash: hamming.",
)
@click.option(
    "--expand/--no-expand",
    default=None,
    help="Alpha-query expansion (default: the query_expansion setting).",
)
@click.option(
    "--box",
    callback=_box_option,
    metavar="L,T,R,B",
    help="Search what is inside this box of the query (pixels of the upright photo).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per query, per line.")
@click.option("--sheet", type=click.Path(dir_okay=False, path_type=Path), help="Contact sheet PNG.")
@data_dir_option
@with_engine
def search(
    engine: Lookalike,
    images: Sequence[Path],
    k: int,
    descriptor: str | None,
    measure: str | None,
    expand: bool | None,
    box: Box | None,
    as_json: bool,
    sheet: Path | None,
) -> None:
    """Find the indexed images most similar to each of IMAGES (with --box: the images that
    hold what is inside that box, among their regions)."""
    name = engine.descriptor(descriptor).name
    options = engine.search_options(name, measure, expand)  # a wrong measure fails at once
    results: list[SearchResult | None] = []
    for path in images:
        try:
            res = engine.search_one(
                str(path), k=k, descriptor=name, measure=measure, expand=expand, box=box
            )
        except ImageError as exc:  # this query fails; the others are still answered
            results.append(None)
            click.echo(f"lookalike: error: {exc.message}", err=True)
            if as_json:
                echo_json(Failed.of(str(path), exc))
            continue
        results.append(res)
        if as_json:
            echo_json(SearchAnswer.of(res, name))
        else:
            click.echo(f"{shown(res.query)}:{_scores_are(options.measure)}")
            for hit in res.results:
                where = "" if hit.region is None else "  region " + ",".join(map(str, hit.region))
                click.echo(f"  {hit.rank:3d}  {hit.score:.4f}  {shown(hit.path)}{where}")
    if sheet is not None:
        for written in _write_sheets(engine, results, sheet):
            click.echo(f"contact sheet: {written}", err=True)
    if None in results:
        sys.exit(FAILED)


def _scores_are(measure: Measure) -> str:
    """What the scores printed are, after the query's name, unless the usual similarity."""
    return "" if measure in ("cosine", "hamming") else f"  ({SCORES[measure]})"


@cli.command()
@click.option("--threshold", type=float, default=None, help="Near-duplicate cosine threshold.")
@click.option(
    "--verify/--no-verify",
    default=None,
    help="Verify pairs on the pixels: edited copies (near) apart from shots of one scene "
    "(default: on, the duplicate_verify setting).",
)
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a tty).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@data_dir_option
@with_engine
def duplicates(
    engine: Lookalike,
    threshold: float | None,
    verify: bool | None,
    progress: bool | None,
    as_json: bool,
) -> None:
    """List exact duplicates, edited copies of one photo, and shots of one scene."""
    disable = (as_json or None) if progress is None else not progress
    with tqdm(total=0, unit="pair", desc="verify", disable=disable, file=sys.stderr) as bar:

        def advance(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        report = engine.duplicates(threshold, verify=verify, on_progress=advance)
    if as_json:
        echo_json(Duplicates.of(report))
        return
    for row in report.exact:
        click.echo(f"exact {row.sha256[:12]}: " + "  ".join(shown(p) for p in row.paths))
    for label, groups in (
        ("near", report.near),
        ("scene", report.scenes),
        ("unverified", report.unverified),
    ):
        for group in groups:
            names = "  ".join(shown(r.paths[0]) for r in group.images if r.paths)
            click.echo(f"{label} ({group.score:.3f}): {names}")
    click.echo(
        f"{len(report.exact)} exact groups, {len(report.near)} near-duplicate groups (edited "
        f"copies), {len(report.scenes)} groups of shots of one scene"
        + (f", {len(report.unverified)} unverified" if report.unverified else "")
    )


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@data_dir_option
@with_engine
def remove(engine: Lookalike, paths: Sequence[Path]) -> None:
    """Forget files (or everything under folders) from the catalog and the index."""
    n = engine.remove(paths)
    click.echo(f"{n} paths removed")


@cli.command()
@data_dir_option
@with_engine
def reindex(engine: Lookalike) -> None:
    """Rebuild the vector indexes from the catalog."""
    for name, n in engine.reindex().items():
        click.echo(f"{name}: {n} vectors")


@cli.group(name="eval")
def eval_group() -> None:
    """Score lookalike on labelled data."""


@eval_group.command(name="retrieval")
@click.option(
    "--labels", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--queries", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--descriptor", default=None, help="cnn (default), color or phash.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@data_dir_option
@with_engine
def eval_retrieval(
    engine: Lookalike,
    labels: Path,
    queries: Path | None,
    descriptor: str | None,
    as_json: bool,
) -> None:
    """mAP, precision@1/@10 and recall@10 of a labelled folder (labels CSV: path, group)."""
    from lookalike.eval.runner import run_retrieval_eval

    scores = run_retrieval_eval(engine, labels, queries, descriptor=descriptor)
    if as_json:
        click.echo(json.dumps(scores.as_dict()))
    else:
        for key, value in scores.as_dict().items():
            click.echo(f"{key}: {value}")


def _sample_folder() -> Path | None:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    return folder if folder.is_dir() else None


@cli.command()
@click.argument("folder", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--query", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-k", "k", type=int, default=8, show_default=True)
@click.option("--sheet", type=click.Path(dir_okay=False, path_type=Path), default=None)
@data_dir_option
@with_engine
def demo(
    engine: Lookalike, folder: Path | None, query: Path | None, k: int, sheet: Path | None
) -> None:
    """Index FOLDER (default: scikit-image's sample photos), search, write a contact sheet."""
    folder = folder or _sample_folder()
    if folder is None:
        _fail("no FOLDER given and scikit-image's sample photos are not installed")
        return
    click.echo(f"indexing {folder} into {engine.settings.data_dir}")
    report = engine.index([folder])
    click.echo(
        f"{report.indexed} indexed, {report.unchanged} unchanged, {report.duplicates} "
        f"duplicates, {len(report.failed)} files skipped (not images: "
        "`lookalike index` lists them)"
    )
    if query is None:
        candidates = sorted(p for p in engine.catalog.all_paths() if p.startswith(str(folder)))
        # The motorcycle stereo pair makes a telling first search: two near-identical views.
        named = [p for p in candidates if Path(p).name == "motorcycle_left.png"]
        if not candidates:
            _fail(f"no image could be indexed under {folder}")
            return
        query = Path((named or candidates)[0])
    res = engine.search_one(str(query), k=k)
    click.echo(f"most similar to {query}:")
    for hit in res.results:
        click.echo(f"  {hit.rank:3d}  {hit.score:.4f}  {shown(hit.path)}")
    out = sheet or engine.settings.data_dir / "demo-sheet.png"
    for path in _write_sheets(engine, [res], out):
        click.echo(f"contact sheet: {path}")


def main() -> None:
    # File names that are not UTF-8 are shown escaped (lookalike.files.shown); should one
    # slip through, print it escaped too rather than fail on it.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    cli(prog_name="lookalike")


def _register_subcommands() -> None:
    from lookalike.cli.cluster import cluster
    from lookalike.cli.eval_faces import eval_faces
    from lookalike.cli.faces import faces
    from lookalike.cli.people import people
    from lookalike.cli.queue import jobs, worker
    from lookalike.cli.serve import keys, serve
    from lookalike.cli.status import status

    cli.add_command(faces)
    cli.add_command(people)
    cli.add_command(serve)
    cli.add_command(keys)
    cli.add_command(status)
    cli.add_command(cluster)
    cli.add_command(worker)
    cli.add_command(jobs)
    eval_group.add_command(eval_faces)


_register_subcommands()
