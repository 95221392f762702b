"""``lookalike eval retrieval`` and ``eval faces``: run lookalike on labelled data, score it.

Retrieval indexes a labelled folder and ranks it for every query. Faces decode each image
once, keep its main face and score verification (pairs CSV) or identification (labels CSV).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from lookalike.errors import BadInput, ImageError
from lookalike.eval.faces import (
    ClusterScores,
    Rank1,
    VerificationScores,
    cluster_scores,
    rank1,
    verification_scores,
)
from lookalike.eval.retrieval import (
    RetrievalScores,
    _resolve,
    _rows,
    evaluate,
    read_labels,
    read_queries,
)
from lookalike.faces import Face, api, face_distance, main_face
from lookalike.faces.config import Detector
from lookalike.search.engine import Lookalike
from lookalike.settings import Settings


def run_retrieval_eval(
    engine: Lookalike,
    labels_csv: Path,
    queries_csv: Path | None = None,
    *,
    descriptor: str | None = None,
    progress: bool | None = None,
) -> RetrievalScores:
    """Index the labelled images (idempotent), rank the collection for every query, score.

    Rankings keep only labelled images, so other images in the data folder don't count.
    Returns mAP (query left out of its own ranking), precision@1, @10 and recall@10.
    """
    groups = read_labels(labels_csv)
    report = engine.index(list(groups), faces=False, progress=progress)
    failed = {f.path for f in report.failed}
    groups = {p: g for p, g in groups.items() if p not in failed}
    if not groups:
        raise BadInput(f"{labels_csv}: none of the labelled images could be indexed")
    queries = read_queries(queries_csv) if queries_csv is not None else list(groups)
    ranked: dict[str, list[str]] = {}
    for query in tqdm(
        queries, desc="searching", unit="query", disable=None if progress is None else not progress
    ):
        if query not in groups:
            raise BadInput(f"query {query} is not among the labelled images")
        result = engine.search_one(query, k=len(groups) + 1, descriptor=descriptor)
        ranked[query] = [hit.path for hit in result.results if hit.path in groups]
    return evaluate(ranked, groups, queries)


@dataclass(frozen=True)
class MainFaces:
    """The main face of each image (``lookalike.faces.main_face``), None where there is none."""

    faces: dict[str, Face | None]  # by path, in the order given
    unreadable: dict[str, str]  # path -> why it could not be decoded

    @property
    def no_face(self) -> list[str]:
        """Readable images in which no face was found."""
        return [p for p, f in self.faces.items() if f is None and p not in self.unreadable]

    def embedding(self, path: str) -> np.ndarray | None:
        """The main face's embedding (float32 (128,)), or None."""
        face = self.faces[path]
        return None if face is None else face.embedding


def main_faces(
    paths: Sequence[str],
    settings: Settings,
    *,
    detector: Detector | None = None,
    crop: bool = False,
    progress: bool | None = None,
) -> MainFaces:
    """Decode each distinct image once, find and embed its faces, keep the main one.

    Faces are read as indexing reads them (:func:`lookalike.faces.api.embed`, under
    ``settings``); ``detector`` defaults to the settings' and ``crop`` means the images are
    face crops (no detector). Unreadable images are recorded, not raised.
    """
    faces: dict[str, Face | None] = dict.fromkeys(paths)
    unreadable: dict[str, str] = {}
    for path in tqdm(
        list(faces), desc="faces", unit="image", disable=None if progress is None else not progress
    ):
        try:
            found = api.embed(Path(path), settings, detector=detector, crop=crop)
        except (ImageError, BadInput) as exc:
            unreadable[path] = exc.message
            continue
        faces[path] = main_face(found)
    return MainFaces(faces=faces, unreadable=unreadable)


def _images_json(faces: MainFaces) -> dict[str, Any]:
    return {
        "images": len(faces.faces),
        "no_face": faces.no_face,
        "unreadable": [{"path": p, "error": e} for p, e in faces.unreadable.items()],
    }


@dataclass(frozen=True)
class FacePairsReport:
    """Verification scores of a pairs CSV and what happened to its images."""

    scores: VerificationScores
    faces: MainFaces
    missing_pairs: int  # pairs with an image without a face: predicted "different"

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.scores.as_dict(),
            **_images_json(self.faces),
            "missing_pairs": self.missing_pairs,
            "missing_pairs_predicted": "different",
        }


@dataclass(frozen=True)
class FaceLabelsReport:
    """Identification scores of a labels CSV and what happened to its images."""

    rank1: Rank1  # images without a face count as misses
    clusters: ClusterScores  # over the images with a face
    people: int  # in the CSV
    faces: MainFaces

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.rank1.as_dict(),
            "clusters": self.clusters.as_dict(),
            "people": self.people,
            **_images_json(self.faces),
        }


def _same(value: str, csv_path: Path) -> bool:
    text = value.strip().lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("0", "false", "no"):
        return False
    raise BadInput(f"{csv_path}: 'same' must be 1 or 0, not {value!r}")


def run_face_pairs_eval(
    pairs_csv: Path,
    settings: Settings,
    *,
    threshold: float | None = None,
    detector: Detector | None = None,
    crop: bool = False,
    progress: bool | None = None,
) -> FacePairsReport:
    """Verification on a CSV of ``path_a, path_b, same[, fold]`` (paths relative to it),
    accuracy at ``threshold`` (default: the settings' ``face_threshold``).

    Uses the CSV's folds for cross-validation when it has a ``fold`` column, otherwise 10
    contiguous folds; a pair with an image without a face is predicted "different".
    """
    rows = _rows(pairs_csv)
    if not rows:
        raise BadInput(f"{pairs_csv}: no pairs")
    if not {"path_a", "path_b", "same"} <= set(rows[0]):
        raise BadInput(f"{pairs_csv}: needs 'path_a', 'path_b' and 'same' columns")
    folder = pairs_csv.parent
    a = [_resolve(folder, r["path_a"]) for r in rows]
    b = [_resolve(folder, r["path_b"]) for r in rows]
    same = np.array([_same(r["same"], pairs_csv) for r in rows])
    folds = np.array([r["fold"].strip() for r in rows]) if "fold" in rows[0] else None
    found = main_faces(a + b, settings, detector=detector, crop=crop, progress=progress)
    dist = np.full(len(rows), np.inf)
    for i, (pa, pb) in enumerate(zip(a, b, strict=True)):
        ea, eb = found.embedding(pa), found.embedding(pb)
        if ea is not None and eb is not None:
            dist[i] = float(face_distance(ea, eb))
    cut = settings.face_threshold if threshold is None else threshold
    scores = verification_scores(dist, same, threshold=cut, folds=folds)
    return FacePairsReport(scores=scores, faces=found, missing_pairs=int(np.isinf(dist).sum()))


def run_face_labels_eval(
    labels_csv: Path,
    settings: Settings,
    *,
    threshold: float | None = None,
    detector: Detector | None = None,
    crop: bool = False,
    progress: bool | None = None,
) -> FaceLabelsReport:
    """Identification on a CSV of ``path, person`` (paths relative to it), one face per image.

    Rank-1 leave-one-out (an image without a face is a miss) and the clusters that
    :func:`lookalike.people.cluster.cluster_faces` makes of the faces found, at
    ``threshold`` (default: the settings' ``face_cluster_threshold``).
    """
    rows = _rows(labels_csv)
    if rows and not {"path", "person"} <= set(rows[0]):
        raise BadInput(f"{labels_csv}: needs 'path' and 'person' columns")
    people = {_resolve(labels_csv.parent, r["path"]): r["person"].strip() for r in rows}
    if not people:
        raise BadInput(f"{labels_csv}: no images")
    cut = settings.face_cluster_threshold if threshold is None else threshold
    found = main_faces(list(people), settings, detector=detector, crop=crop, progress=progress)
    paths = list(people)
    vectors: list[np.ndarray] = []
    quality: list[float] = []
    who: list[str] = []
    for path in paths:
        face = found.faces[path]
        if face is not None and face.embedding is not None:
            vectors.append(face.embedding)
            quality.append(face.quality)
            who.append(people[path])
    clusters = cluster_scores(
        np.stack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32),
        who,
        threshold=cut,
        quality=quality,
    )
    return FaceLabelsReport(
        rank1=rank1([found.embedding(p) for p in paths], [people[p] for p in paths]),
        clusters=clusters,
        people=len(set(people.values())),
        faces=found,
    )
