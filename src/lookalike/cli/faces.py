"""``lookalike faces ...``: detect, verify, identify and search faces; group unknown ones.

``detect`` and ``verify`` work on files alone; the other commands open the data folder
(``Lookalike.people``: the indexed faces, the people and the clusters).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import click
from PIL import Image
from tqdm import tqdm

from lookalike.annotate import KNOWN, MUTED, UNKNOWN, Mark, save_annotated
from lookalike.answers import (
    Cluster,
    ClusterDetail,
    ClusterRunReport,
    Clusters,
    Detected,
    FaceSearchAnswer,
    FaceStats,
    Failed,
    IdentifiedFaces,
    MergedClusters,
    MovedFaces,
    VerifyAnswer,
)
from lookalike.cli.common import (
    FAILED,
    cluster_summary,
    data_dir_option,
    echo_json,
    fail_with,
    plural,
    with_engine,
)
from lookalike.decode import decode, read_file
from lookalike.errors import LookalikeError
from lookalike.faces import api
from lookalike.faces.config import (
    DEFAULT_CLUSTER_THRESHOLD,
    DEFAULT_THRESHOLD,
    Detector,
    LandmarkCount,
)
from lookalike.people.recognise import Identified
from lookalike.search.engine import Lookalike
from lookalike.settings import get_settings
from lookalike.store.base import ClusterRow, FaceRow


def _decode_full(path: Path, max_pixels: int) -> Image.Image:
    """``path`` decoded at full resolution, upright, in RGB (what boxes refer to)."""
    return decode(read_file(path), str(path), min_side=None, max_pixels=max_pixels).image


def _annotation_targets(images: Sequence[Path], out: Path) -> list[Path]:
    """Where each image's annotated copy goes: ``out`` itself for one image (unless it is a
    folder), ``out/<stem>.png`` for several (``<stem>-2.png``... when stems repeat)."""
    if len(images) == 1 and not out.is_dir():
        return [out]
    used: set[str] = set()
    targets: list[Path] = []
    for path in images:
        name, n = path.stem, 2
        while name in used:
            name, n = f"{path.stem}-{n}", n + 1
        used.add(name)
        targets.append(out / f"{name}.png")
    return targets


def _write_annotation(image: Image.Image, marks: Sequence[Mark], target: Path) -> bool:
    """Save the annotated copy; on failure say why on stderr and return False."""
    try:
        save_annotated(image, marks, target)
    except OSError as exc:
        click.echo(f"lookalike: error: cannot write {target}: {exc.strerror or exc}", err=True)
        return False
    click.echo(f"annotated: {target}", err=True)
    return True


def _failed(path: Path, exc: LookalikeError, as_json: bool) -> None:
    """Say on stderr that ``path`` could not be used (and, with --json, in its line)."""
    click.echo(f"lookalike: error: {exc.message}", err=True)
    if as_json:
        echo_json(Failed.of(str(path), exc))


def _sheet_written(path: Path) -> None:
    click.echo(f"contact sheet: {path}", err=True)


detector_option = click.option(
    "--detector",
    type=click.Choice(["hog", "cnn"]),
    default=None,
    help="Face detector: cnn (default: the face_detector setting) or hog (fast, frontal).",
)
crop_option = click.option("--crop", is_flag=True, help="Images are face crops: no detector.")
annotate_option = click.option(
    "--annotate",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the photo with its faces drawn: OUT.png for one image, OUT_DIR/<stem>.png "
    "for several.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
sheet_option = click.option(
    "--sheet",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a contact sheet PNG of the faces.",
)


@click.group()
def faces() -> None:
    """Find, compare and recognise faces; group the unknown ones."""


# -- files alone --------------------------------------------------------------------------


@faces.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image, per line.")
@click.option("--embeddings", is_flag=True, help="Include the 128-d embeddings.")
@click.option("--landmarks", type=click.Choice(["5", "68"]), default="5", show_default=True)
@detector_option
@crop_option
@annotate_option
def detect(
    images: Sequence[Path],
    as_json: bool,
    embeddings: bool,
    landmarks: str,
    detector: str | None,
    crop: bool,
    annotate: Path | None,
) -> None:
    """Detect the faces in IMAGES: boxes, scores, quality, landmarks."""
    settings = get_settings()
    targets = _annotation_targets(images, annotate) if annotate is not None else None
    failures = 0
    for n, path in enumerate(images):
        try:
            found = api.detect(
                path,
                settings,
                detector=cast(Detector | None, detector),
                landmarks=cast(LandmarkCount, int(landmarks)),
                crop=crop,
                embeddings=embeddings,
            )
            # Boxes are in the photo's full pixels; the copy to draw on must be too.
            image = _decode_full(path, settings.max_image_pixels) if targets is not None else None
        except LookalikeError as exc:
            failures += 1
            _failed(path, exc, as_json)
            continue
        if as_json:
            echo_json(Detected.of(str(path), found))
        else:
            click.echo(f"{path}: {len(found)} face(s)")
            for f in found:
                note = "" if f.usable else f"  (not usable: {', '.join(f.flags)})"
                click.echo(f"  box {list(f.box)} score {f.score:.2f} quality {f.quality:.2f}{note}")
        if targets is not None and image is not None:
            marks = [
                Mark(f.box, f"{i}: {f.score:.2f} q{f.quality:.2f}", KNOWN if f.usable else MUTED)
                for i, f in enumerate(found)
            ]
            if not _write_annotation(image, marks, targets[n]):
                failures += 1
    if failures:
        sys.exit(FAILED)


@faces.command()
@click.argument("image_a", type=click.Path(path_type=Path))
@click.argument("image_b", type=click.Path(path_type=Path))
@click.option(
    "--threshold",
    type=float,
    default=None,
    help=f"Same person at or below this distance (default: the face_threshold setting, "
    f"{DEFAULT_THRESHOLD}).",
)
@json_option
@detector_option
@crop_option
def verify(
    image_a: Path,
    image_b: Path,
    threshold: float | None,
    as_json: bool,
    detector: str | None,
    crop: bool,
) -> None:
    """Whether the main faces of IMAGE_A and IMAGE_B are the same person."""
    try:
        result = api.verify(
            image_a,
            image_b,
            get_settings(),
            threshold=threshold,
            detector=cast(Detector | None, detector),
            crop=crop,
        )
    except LookalikeError as exc:
        fail_with(exc)
    if as_json:
        echo_json(VerifyAnswer.of(result))
    else:
        verdict = "same person" if result.same else "different people"
        click.echo(f"{verdict}: distance {result.distance:.4f} (threshold {result.threshold})")


# -- against the data folder ----------------------------------------------------------------


def _who(found: Identified) -> str:
    """``Eileen, distance 0.213; next: Bob 0.712`` or ``unknown; nearest: Bob 0.652``."""
    others = ", ".join(f"{c.person} {c.distance:.3f}" for c in found.candidates)
    if found.person is not None:
        head = f"{found.person}, distance {found.distance:.3f}"
        return f"{head}; next: {others}" if others else head
    return f"unknown; nearest: {others}" if others else "unknown"


def _identified_mark(found: Identified) -> Mark:
    if found.person is not None:
        return Mark(found.face.box, f"{found.person} {found.distance:.2f}", KNOWN)
    nearest = found.candidates[0] if found.candidates else None
    label = "unknown" if nearest is None else f"unknown ({nearest.person} {nearest.distance:.2f})"
    return Mark(found.face.box, label, UNKNOWN if found.face.usable else MUTED)


@faces.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image, per line.")
@click.option(
    "--threshold",
    type=click.FloatRange(min=0),
    default=None,
    help="Distance under which a face is a known person (default: the face_threshold "
    f"setting, {DEFAULT_THRESHOLD}).",
)
@crop_option
@annotate_option
@data_dir_option
@with_engine
def identify(
    engine: Lookalike,
    images: Sequence[Path],
    as_json: bool,
    threshold: float | None,
    crop: bool,
    annotate: Path | None,
) -> None:
    """Name every face in IMAGES, or say unknown.

    Each face gets the person it shows (or unknown), its distance, and the next nearest
    people.
    """
    targets = _annotation_targets(images, annotate) if annotate is not None else None
    failures = 0
    for n, path in enumerate(images):
        try:
            found = engine.people.identify(str(path), threshold=threshold, crop=crop)
            # Boxes are in the photo's full pixels; the copy to draw on must be too.
            image = (
                _decode_full(path, engine.settings.max_image_pixels)
                if targets is not None
                else None
            )
        except LookalikeError as exc:
            failures += 1
            _failed(path, exc, as_json)
            continue
        if as_json:
            echo_json(IdentifiedFaces.of(str(path), found))
        else:
            click.echo(f"{path}: {plural(len(found), 'face')}")
            for f in found:
                note = "" if f.face.usable else f"  (not usable: {', '.join(f.face.flags)})"
                click.echo(f"  face {f.index} {list(f.face.box)}: {_who(f)}{note}")
        if targets is not None and image is not None:
            marks = [_identified_mark(f) for f in found]
            if not _write_annotation(image, marks, targets[n]):
                failures += 1
    if failures:
        sys.exit(FAILED)


@faces.command()
@click.argument("image", type=click.Path(path_type=Path))
@click.option("-k", "k", type=int, default=10, show_default=True, help="Most faces shown.")
@click.option(
    "--face",
    "face",
    type=click.IntRange(min=0),
    default=None,
    help="Which face of IMAGE, from 0 as `faces detect` lists them (default: the main one).",
)
@click.option(
    "--max-distance",
    type=click.FloatRange(min=0),
    default=None,
    help=f"Farthest face shown (default: the face_threshold setting, {DEFAULT_THRESHOLD}).",
)
@json_option
@sheet_option
@crop_option
@data_dir_option
@with_engine
def search(
    engine: Lookalike,
    image: Path,
    k: int,
    face: int | None,
    max_distance: float | None,
    as_json: bool,
    sheet: Path | None,
    crop: bool,
) -> None:
    """Indexed faces like the face in IMAGE, nearest first.

    Every indexed face within --max-distance of IMAGE's main face (or its face --face N),
    with its photo and distance.
    """
    result = engine.people.search(str(image), k=k, face=face, max_distance=max_distance, crop=crop)
    if as_json:
        echo_json(FaceSearchAnswer.of(result))
    else:
        click.echo(f"{result.query} (face {list(result.face.box)}): {len(result.results)} found")
        for hit in result.results:
            who = hit.person or (f"cluster {hit.cluster_id}" if hit.cluster_id else "-")
            click.echo(
                f"  {hit.rank:3d}  {hit.distance:.4f}  {hit.path}  {list(hit.box)}  "
                f"face {hit.face_id}  {who}"
            )
    if sheet is not None:
        from lookalike.sheet import contact_sheet

        chip = result.face.chip
        query = (
            Image.fromarray(chip)
            if chip is not None
            else _decode_full(image, engine.settings.max_image_pixels).crop(result.face.box)
        )
        tiles = [
            (engine.people.thumbnail(h.face_id), f"#{h.rank} {h.distance:.3f} {Path(h.path).name}")
            for h in result.results
        ]
        contact_sheet(query, image.name, tiles, sheet)
        _sheet_written(sheet)


def _print_clusters(rows: Sequence[ClusterRow]) -> None:
    for row in rows:
        sample = ", ".join(str(i) for i in row.sample)
        more = ", ..." if row.size > len(row.sample) else ""
        click.echo(f"  cluster {row.id}: {plural(row.size, 'face')} ({sample}{more})")


@faces.command()
@click.option(
    "--full",
    is_flag=True,
    help="Start again: forget every cluster and recognised name, group all faces anew "
    "(names you gave are kept; cluster edits are lost).",
)
@click.option(
    "--threshold",
    type=click.FloatRange(min=0),
    default=None,
    help="Mean distance under which a face joins a cluster (default: the "
    f"face_cluster_threshold setting, {DEFAULT_CLUSTER_THRESHOLD}).",
)
@json_option
@data_dir_option
@with_engine
def cluster(engine: Lookalike, full: bool, threshold: float | None, as_json: bool) -> None:
    """Group unnamed faces into clusters.

    Only faces not yet grouped are placed, unless --full. New faces of a known person
    are recognised first; the rest join the nearest cluster or start one. Two faces of
    one photo are never put in one cluster.
    """
    # A full re-cluster of a large library takes minutes: show the faces placed.
    quiet = True if not full or as_json else None  # None: a bar on a terminal only
    with tqdm(total=0, unit="face", disable=quiet, file=sys.stderr) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        report = engine.people.cluster(full=full, threshold=threshold, on_progress=progress)
    if as_json:
        echo_json(ClusterRunReport.of(report))
        return
    click.echo(cluster_summary(report))
    _print_clusters(engine.people.clusters())


@faces.command()
@click.option(
    "--min-size", type=click.IntRange(min=1), default=1, show_default=True, help="Smallest shown."
)
@json_option
@data_dir_option
@with_engine
def clusters(engine: Lookalike, min_size: int, as_json: bool) -> None:
    """List the clusters of unnamed faces, largest first."""
    rows = engine.people.clusters(min_size=min_size)
    if as_json:
        echo_json(Clusters(clusters=[Cluster.of(c) for c in rows]))
        return
    click.echo(plural(len(rows), "cluster"))
    _print_clusters(rows)


def _face_line(face: FaceRow) -> str:
    who = ""
    if face.person is not None:
        who = f"  {face.person} ({'confirmed' if face.confirmed else 'recognised'})"
    elif face.cluster_id is not None:
        who = f"  cluster {face.cluster_id}"
    flags = "" if face.usable else f"  (not usable: {', '.join(face.flags)})"
    return (
        f"  face {face.id}  {face.path}  {list(face.box)}  quality {face.quality:.2f}{who}{flags}"
    )


# Faces on one contact sheet at most (the best first): 300 tiles make a ~1,000 x 9,000 PNG.
SHEET_MAX_FACES = 300


def face_tiles(engine: Lookalike, rows: Sequence[FaceRow]) -> list[tuple[Image.Image, str]]:
    """Contact-sheet tiles of indexed faces: thumbnail, "face ID photo-name"; at most
    ``SHEET_MAX_FACES`` (the rows come best quality first), saying so on stderr."""
    if len(rows) > SHEET_MAX_FACES:
        click.echo(f"the sheet shows the best {SHEET_MAX_FACES} of {len(rows)} faces", err=True)
        rows = rows[:SHEET_MAX_FACES]
    return [(engine.people.thumbnail(f.id), f"face {f.id} {Path(f.path).name}") for f in rows]


@faces.command(name="cluster-show")
@click.argument("cluster_id", metavar="CLUSTER", type=int)
@json_option
@sheet_option
@data_dir_option
@with_engine
def cluster_show(engine: Lookalike, cluster_id: int, as_json: bool, sheet: Path | None) -> None:
    """The faces of one cluster, best quality first."""
    rows = engine.people.cluster_faces(cluster_id)
    if as_json:
        echo_json(ClusterDetail.of(cluster_id, rows))
    else:
        click.echo(f"cluster {cluster_id}: {plural(len(rows), 'face')}")
        for face in rows:
            click.echo(_face_line(face))
    if sheet is not None:
        from lookalike.sheet import grid_sheet

        grid_sheet(face_tiles(engine, rows), sheet)
        _sheet_written(sheet)


@faces.command(name="merge-clusters")
@click.argument("cluster_ids", metavar="CLUSTER CLUSTER...", nargs=-1, required=True, type=int)
@json_option
@data_dir_option
@with_engine
def merge_clusters(engine: Lookalike, cluster_ids: Sequence[int], as_json: bool) -> None:
    """Merge clusters into the first one given."""
    merged = MergedClusters.of(cluster_ids, engine.people.merge_clusters(list(cluster_ids)))
    if as_json:
        echo_json(merged)
    else:
        names = ", ".join(str(c) for c in merged.merged_cluster_ids)
        moved = plural(merged.faces_moved, "face")
        click.echo(f"merged {names} into cluster {merged.cluster_id}: {moved} moved")


@faces.command()
@click.argument("face_ids", metavar="FACE_ID...", nargs=-1, required=True, type=int)
@click.option("--to", "to", type=int, default=None, metavar="CLUSTER", help="An existing cluster.")
@click.option("--new", "new", is_flag=True, help="A new cluster of their own.")
@json_option
@data_dir_option
@with_engine
def move(
    engine: Lookalike, face_ids: Sequence[int], to: int | None, new: bool, as_json: bool
) -> None:
    """Move faces to another cluster or a new one (--to CLUSTER, --new).

    A face that had a name loses it: you say it belongs elsewhere.
    """
    if (to is None) == (not new):
        raise click.UsageError("give exactly one of --to CLUSTER and --new")
    cluster_id = engine.people.move_faces(list(face_ids), to)
    if as_json:
        echo_json(MovedFaces(cluster_id=cluster_id, face_ids=list(face_ids)))
    else:
        click.echo(f"{plural(len(face_ids), 'face')} moved to cluster {cluster_id}")


@faces.command()
@json_option
@data_dir_option
@with_engine
def stats(engine: Lookalike, as_json: bool) -> None:
    """Counts of faces, people and clusters."""
    counts = engine.people.stats()
    if as_json:
        echo_json(FaceStats.of(counts))
        return
    for key, value in counts.items():
        click.echo(f"{key}: {value}")
