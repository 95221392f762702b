"""``lookalike status``: what a data folder holds."""

from __future__ import annotations

import click

from lookalike.answers import StatusAnswer
from lookalike.cli.common import data_dir_option, echo_json, plural, with_engine
from lookalike.files import shown
from lookalike.index.manager import IndexState
from lookalike.search.engine import Lookalike
from lookalike.search.status import FolderStatus, PartState

# What each state of an index file means for the next search, in words.
_STATE_WORDS = {
    "current": "current",
    "empty": "empty: nothing to index yet",
    "behind": "behind the catalog: caught up at the next search",
    "missing": "not built yet: built at the next search",
    "other version": "of another model version: rebuilt at the next search",
    "older format": "of an older format: rebuilt at the next search",
    "damaged": "damaged: rebuilt at the next search",
}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@data_dir_option
@with_engine
def status(engine: Lookalike, as_json: bool) -> None:
    """What the data folder holds: images, faces, people, clusters, indexes, size."""
    found = engine.status()
    if as_json:
        echo_json(StatusAnswer.of(found))
        return
    for line in describe(found):
        click.echo(line)


def describe(found: FolderStatus) -> list[str]:
    """The status as lines of text for people."""
    faces = found.faces
    return [
        f"data folder: {shown(found.data_dir)} ({_size(found.size)})",
        f"catalog: schema {found.schema_version}, {plural(found.images, 'image')} "
        f"under {plural(found.paths, 'path')}",
        f"faces: {faces['faces']} ({faces['usable']} usable, {faces['named']} named, "
        f"{faces['clustered']} in clusters, {faces['unprocessed']} not grouped yet); "
        f"{plural(faces['people'], 'person', 'people')}, {plural(faces['clusters'], 'cluster')}",
        "indexes:",
        *(f"  {_index_line(s)}" for s in found.indexes),
        *(_part_line(p) for p in found.parts),
    ]


def _part_line(part: PartState) -> str:
    """``cache: redis redis://host:6379/0, answers`` (or ``cache: none``)."""
    if part.answers is None:
        return f"{part.part}: {part.kind}"
    where = shown(part.where or "")
    verdict = "answers" if part.answers else f"does NOT answer ({part.error or 'no reply'})"
    return f"{part.part}: {part.kind} {where}, {verdict}"


def _index_line(state: IndexState) -> str:
    size = "" if state.vectors is None else f"{state.vectors:>9,} vectors  {state.kind:<6}  "
    return f"{state.name:<6} {size}{_STATE_WORDS.get(state.state, state.state)}"


def _size(n: int) -> str:
    value, unit = float(n), "bytes"
    for bigger in ("KB", "MB", "GB", "TB"):
        if value < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
