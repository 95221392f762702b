"""``lookalike people ...``: the people faces are recognised as, and their examples."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from lookalike.answers import Enrolled, Example, People, Person, PersonDetail, StoredFace
from lookalike.cli.common import data_dir_option, echo_json, fail, plural, with_engine
from lookalike.cli.faces import face_tiles
from lookalike.search.engine import Lookalike
from lookalike.store.base import PersonRow

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _counts(person: PersonRow) -> str:
    return f"{plural(person.examples, 'example')}, {plural(person.faces, 'face')}"


@click.group()
def people() -> None:
    """Enrol, list and edit the people faces are recognised as."""


@people.command()
@click.argument("name")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--face",
    "face",
    type=click.IntRange(min=0),
    default=None,
    help="The face to take from each image, from 0 as `faces detect` lists them "
    "(default: the image must show exactly one usable face).",
)
@click.option("--crop", is_flag=True, help="Images are face crops: no detector.")
@json_option
@data_dir_option
@with_engine
def add(
    engine: Lookalike,
    name: str,
    images: Sequence[Path],
    face: int | None,
    crop: bool,
    as_json: bool,
) -> None:
    """Enrol IMAGES as examples of NAME.

    NAME is created if new. Each image must show exactly one usable face (or --face N
    picks one); if one does not, none is stored.
    """
    person, ids = engine.people.enrol(name, [str(p) for p in images], face=face, crop=crop)
    if as_json:
        echo_json(Enrolled.of(person, example_ids=ids))
    else:
        click.echo(f"{person.name}: {plural(len(ids), 'example')} added ({_counts(person)})")


@people.command(name="list")
@json_option
@data_dir_option
@with_engine
def list_people(engine: Lookalike, as_json: bool) -> None:
    """List people with their numbers of examples and faces."""
    rows = engine.people.people()
    if as_json:
        echo_json(People(people=[Person.of(p) for p in rows]))
        return
    for person in rows:
        click.echo(f"{person.name}: {_counts(person)}")
    if not rows:
        click.echo(
            "no people yet: `lookalike people add NAME IMAGE...` or "
            "`lookalike people name-cluster CLUSTER NAME`",
            err=True,
        )


@people.command()
@click.argument("name")
@json_option
@click.option(
    "--sheet",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a contact sheet PNG of the person's examples and faces.",
)
@data_dir_option
@with_engine
def show(engine: Lookalike, name: str, as_json: bool, sheet: Path | None) -> None:
    """A person's examples and faces.

    With their ids: `people remove NAME --example ID` takes an example's.
    """
    person = engine.people.person(name)
    examples = engine.people.examples(person.name)
    found = engine.people.faces_of_person(person.name)
    if as_json:
        echo_json(
            PersonDetail.of(
                person,
                examples=[Example.of(e) for e in examples],
                faces=[StoredFace.of(f) for f in found],
            )
        )
    else:
        click.echo(f"{person.name}: {_counts(person)}")
        for ex in examples:
            click.echo(f"  example {ex.id}  {ex.source}  face {ex.face_index} {list(ex.box)}")
        for f in found:
            how = "confirmed" if f.confirmed else "recognised"
            click.echo(f"  face {f.id}  {f.path}  {list(f.box)}  {how}")
    if sheet is not None:
        from lookalike.sheet import grid_sheet

        if not examples and not found:
            fail(f"{person.name} has no example or face to show")
        tiles = [
            (engine.people.example_thumbnail(e.id), f"example {e.id} {Path(e.source).name}")
            for e in examples
        ]
        grid_sheet(tiles + face_tiles(engine, found), sheet)
        click.echo(f"contact sheet: {sheet}", err=True)


@people.command()
@click.argument("old")
@click.argument("new")
@json_option
@data_dir_option
@with_engine
def rename(engine: Lookalike, old: str, new: str, as_json: bool) -> None:
    """Rename person OLD to NEW.

    A NEW that exists already is refused: `people merge` makes two people one.
    """
    person = engine.people.rename(old, new)
    if as_json:
        echo_json(Person.of(person))
    else:
        click.echo(f"renamed {old} to {person.name}")


@people.command()
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@click.option("--into", required=True, metavar="NAME", help="The person who remains.")
@json_option
@data_dir_option
@with_engine
def merge(engine: Lookalike, names: Sequence[str], into: str, as_json: bool) -> None:
    """Make people NAME... one with --into NAME.

    Their examples and faces move to --into NAME.
    """
    person = engine.people.merge(list(names), into)
    if as_json:
        echo_json(Person.of(person))
    else:
        click.echo(f"merged into {person.name}: {_counts(person)}")


@people.command()
@click.argument("name")
@click.option(
    "--example",
    "example",
    type=int,
    default=None,
    metavar="ID",
    help="Remove only this example (ids: `people show NAME`).",
)
@data_dir_option
@with_engine
def remove(engine: Lookalike, name: str, example: int | None) -> None:
    """Forget a person, or one of their examples (--example ID).

    A forgotten person's faces become unknown again.
    """
    if example is None:
        engine.people.remove(name)
        click.echo(f"removed {name}")
        return
    engine.people.remove_example(name, example)
    click.echo(f"removed example {example} of {engine.people.person(name).name}")


@people.command(name="name-cluster")
@click.argument("cluster_id", metavar="CLUSTER", type=int)
@click.argument("name")
@click.option("--merge", is_flag=True, help="NAME exists: add the cluster's faces to them.")
@json_option
@data_dir_option
@with_engine
def name_cluster(engine: Lookalike, cluster_id: int, name: str, merge: bool, as_json: bool) -> None:
    """Make a cluster a person.

    Its faces are confirmed as NAME, and later photos of them recognised. An existing
    NAME is refused unless --merge: naming never silently adds faces to someone.
    """
    person = engine.people.name_cluster(cluster_id, name, merge=merge)
    if as_json:
        echo_json(Person.of(person))
    else:
        click.echo(f"cluster {cluster_id} is now {person.name} ({_counts(person)})")


@people.command()
@click.argument("name")
@click.argument("face_ids", metavar="FACE_ID...", nargs=-1, required=True, type=int)
@json_option
@data_dir_option
@with_engine
def assign(engine: Lookalike, name: str, face_ids: Sequence[int], as_json: bool) -> None:
    """Confirm indexed faces as NAME (created if new).

    They join NAME's known faces, against which new faces are recognised.
    """
    person = engine.people.assign(list(face_ids), name)
    if as_json:
        echo_json(Person.of(person))
    else:
        click.echo(
            f"{plural(len(face_ids), 'face')} confirmed as {person.name} ({_counts(person)})"
        )
