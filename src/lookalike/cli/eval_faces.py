"""``lookalike eval faces``: verification (pairs CSV) or identification (labels CSV) scores."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, cast

import click

from lookalike.cli.common import fail_with
from lookalike.errors import LookalikeError
from lookalike.eval.runner import (
    FaceLabelsReport,
    FacePairsReport,
    MainFaces,
    run_face_labels_eval,
    run_face_pairs_eval,
)
from lookalike.faces.config import DEFAULT_CLUSTER_THRESHOLD, DEFAULT_THRESHOLD, Detector
from lookalike.settings import get_settings

csv_file = click.Path(exists=True, dir_okay=False, path_type=Path)


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.2f}%"


def _finite(value: Any) -> Any:
    """``value`` with every NaN replaced by None (JSON has no NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _table(rows: list[tuple[str, str]]) -> None:
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")


def _images(faces: MainFaces) -> str:
    """Lists images without a face and unreadable ones on stderr; returns the counts."""
    for path in faces.no_face:
        click.echo(f"no face: {path}", err=True)
    for error in faces.unreadable.values():
        click.echo(f"unreadable: {error}", err=True)
    return (
        f"{len(faces.faces)} ({len(faces.no_face)} without a face, "
        f"{len(faces.unreadable)} unreadable)"
    )


@click.command(name="faces")
@click.option("--pairs", type=csv_file, help="CSV: path_a, path_b, same (1/0)[, fold].")
@click.option("--labels", type=csv_file, help="CSV: path, person.")
@click.option(
    "--threshold",
    type=float,
    default=None,
    help=f"Pairs: verification distance (default: the face_threshold setting, "
    f"{DEFAULT_THRESHOLD}). Labels: clustering distance (default: the "
    f"face_cluster_threshold setting, {DEFAULT_CLUSTER_THRESHOLD}).",
)
@click.option("--crop", is_flag=True, help="Images are face crops: no detector.")
@click.option(
    "--detector",
    type=click.Choice(["hog", "cnn"]),
    default=None,
    help="Face detector: cnn (default: the face_detector setting) or hog (fast, frontal).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def eval_faces(
    pairs: Path | None,
    labels: Path | None,
    threshold: float | None,
    crop: bool,
    detector: str | None,
    as_json: bool,
) -> None:
    """Face verification (--pairs) or identification and clustering (--labels) scores.

    Each image's main face is used (the largest usable one). Paths in the CSV are relative
    to its folder.
    """
    if (pairs is None) == (labels is None):
        raise click.UsageError("give exactly one of --pairs CSV and --labels CSV")
    chosen = cast(Detector | None, detector)
    settings = get_settings()
    report: FacePairsReport | FaceLabelsReport
    try:
        if pairs is not None:
            report = run_face_pairs_eval(
                pairs, settings, threshold=threshold, detector=chosen, crop=crop
            )
        else:
            assert labels is not None
            report = run_face_labels_eval(
                labels, settings, threshold=threshold, detector=chosen, crop=crop
            )
    except LookalikeError as exc:
        fail_with(exc)
    if as_json:
        click.echo(json.dumps(_finite(report.as_dict())))
    elif isinstance(report, FacePairsReport):
        _print_pairs(report)
    else:
        _print_labels(report)


def _print_pairs(report: FacePairsReport) -> None:
    s, tar = report.scores, report.scores.tar
    if tar.resolved:
        tar_note = f"{tar.accepted} of {tar.impostors} impostor pairs accepted"
    else:
        tar_note = (
            f"only {tar.impostors} impostor pairs: FAR {tar.far:g} is below their resolution "
            f"of 1/{tar.impostors}, so this is the TAR with no impostor accepted"
        )
    _table(
        [
            ("pairs", f"{s.pairs} ({s.same} same, {s.different} different)"),
            (f"accuracy @ {s.threshold:g}", _pct(s.accuracy)),
            (
                "CV accuracy",
                f"{_pct(s.cv_accuracy)} ± {100 * s.cv_std:.2f} "
                f"({len(s.cv_thresholds)} {s.folds} folds)",
            ),
            ("CV thresholds", " / ".join(f"{t:.3f}" for t in s.cv_thresholds) or "n/a"),
            ("best threshold", f"{s.best_threshold:.3f} ({_pct(s.best_accuracy)} on all pairs)"),
            (f"TAR @ FAR {tar.far:g}", f"{_pct(tar.tar)} ({tar_note})"),
            ("images", _images(report.faces)),
            ("pairs missing a face", f"{report.missing_pairs} (predicted 'different')"),
        ]
    )


def _print_labels(report: FaceLabelsReport) -> None:
    c, r1 = report.clusters, report.rank1
    _table(
        [
            ("images", f"{_images(report.faces)}; {report.people} people"),
            (
                "rank-1",
                f"{_pct(r1.accuracy)} ({r1.hits} of {r1.queries} queries, leave-one-out; "
                "no face = miss)",
            ),
            (
                f"clusters @ {c.threshold:g}",
                f"{c.clusters} for {c.people} people, {c.mixed} mixing people",
            ),
            ("pairwise P / R / F1", f"{c.precision:.3f} / {c.recall:.3f} / {c.f1:.3f}"),
        ]
    )
