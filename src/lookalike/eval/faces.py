"""Face recognition quality: verification from pair distances, identification from labels.

Pure functions on arrays, no model: callers embed the faces (``lookalike.eval.runner`` for
``lookalike eval faces``, and the benchmarks). Two faces are predicted to be one person when
their distance is at most the threshold. A pair whose image has no face is given an infinite
distance, so it is always predicted "different".
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from lookalike.errors import BadInput
from lookalike.faces.config import DEFAULT_THRESHOLD
from lookalike.people.cluster import cluster_faces, pairwise_scores

__all__ = [
    "DEFAULT_FAR",
    "DEFAULT_FOLDS",
    "ClusterScores",
    "Rank1",
    "TarAtFar",
    "VerificationScores",
    "accuracy",
    "best_threshold",
    "cluster_scores",
    "contiguous_folds",
    "cross_validate",
    "mixed_clusters",
    "rank1",
    "tar_at_far",
    "verification_scores",
]

# Folds for cross-validation when the pairs come without any.
DEFAULT_FOLDS = 10
# The false accept rate TAR is reported at.
DEFAULT_FAR = 0.001
# How far outside the observed distances a threshold accepting all or none of them is put.
_MARGIN = 1e-3

FoldSource = Literal["given", "contiguous"]


def _pairs(dist: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``dist`` as float64 (n,) and ``same`` as bool (n,), checked."""
    d = np.asarray(dist, dtype=np.float64)
    s = np.asarray(same, dtype=bool)
    if d.ndim != 1 or s.shape != d.shape:
        raise BadInput(f"need one label per distance, got shapes {d.shape} and {s.shape}")
    if np.isnan(d).any():
        raise BadInput("distances must not be NaN (use inf for a missing face)")
    return d, s


def accuracy(dist: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """Share of pairs decided right when "same person" means distance <= ``threshold``."""
    d, s = _pairs(dist, same)
    if not len(d):
        raise BadInput("accuracy needs at least one pair")
    return float(np.mean((d <= threshold) == s))


def best_threshold(dist: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy) maximising accuracy on these pairs.

    Candidates lie halfway between consecutive distinct distances (and just outside the
    finite ones); among equally good candidates the middle one is taken.
    """
    d, s = _pairs(dist, same)
    if not len(d):
        raise BadInput("a threshold needs at least one pair")
    order = np.argsort(d, kind="stable")
    d, pos = d[order], s[order].astype(np.int64)
    finite = int(np.isfinite(d).sum())
    # Accepting the k nearest pairs (k = 0..finite): right = positives among them + the
    # negatives after them. Infinite distances are never accepted.
    pos_before = np.concatenate([[0], np.cumsum(pos[:finite])])
    neg_before = np.arange(finite + 1) - pos_before
    correct = pos_before + (len(pos) - int(pos.sum())) - neg_before
    # A cut between two equal distances cannot be made by any threshold.
    correct[1:finite][d[: finite - 1] >= d[1:finite]] = -1
    best = int(correct.max())
    ks = np.flatnonzero(correct == best)
    k = int(ks[len(ks) // 2])
    if finite == 0:
        return 0.0, best / len(d)
    lo = d[k - 1] if k > 0 else d[0] - 2 * _MARGIN
    hi = d[k] if k < finite else d[finite - 1] + 2 * _MARGIN
    return float((lo + hi) / 2), best / len(d)


def contiguous_folds(n: int, k: int = DEFAULT_FOLDS) -> np.ndarray:
    """Fold numbers (int64, (n,)) splitting n pairs into ``k`` contiguous, near-equal runs."""
    if n < 0 or k < 1:
        raise BadInput(f"cannot split {n} pairs into {k} folds")
    return (np.arange(n, dtype=np.int64) * k) // max(n, 1)


def cross_validate(
    dist: np.ndarray, same: np.ndarray, folds: np.ndarray
) -> tuple[list[float], list[float]]:
    """Per fold, in fold order: (held-out accuracies, thresholds chosen on the other folds)."""
    d, s = _pairs(dist, same)
    f = np.asarray(folds)
    if f.shape != d.shape:
        raise BadInput(f"need one fold per pair, got shapes {f.shape} and {d.shape}")
    names = np.unique(f)
    if len(names) < 2:
        raise BadInput("cross-validation needs at least two folds")
    accs: list[float] = []
    thresholds: list[float] = []
    for name in names:
        test = f == name
        threshold, _ = best_threshold(d[~test], s[~test])
        thresholds.append(threshold)
        accs.append(accuracy(d[test], s[test], threshold))
    return accs, thresholds


@dataclass(frozen=True)
class TarAtFar:
    """True accept rate at the strictest false accept rate not above ``far``."""

    far: float  # the false accept rate asked for
    tar: float  # share of same-person pairs accepted (NaN without pairs of both kinds)
    impostors: int  # different-person pairs the FAR is measured on
    accepted: int  # impostors accepted at that operating point

    @property
    def resolved(self) -> bool:
        """Whether there are enough impostors to accept one at ``far`` (else FAR is 0)."""
        return self.impostors * self.far >= 1.0 - 1e-9

    def as_dict(self) -> dict[str, Any]:
        return {
            "far": self.far,
            "tar": self.tar,
            "impostors": self.impostors,
            "impostors_accepted": self.accepted,
            "resolved": self.resolved,
        }


def tar_at_far(dist: np.ndarray, same: np.ndarray, far: float = DEFAULT_FAR) -> TarAtFar:
    """TAR at the threshold accepting at most ``far`` of the impostor pairs.

    With fewer than ``1 / far`` impostors no impostor may be accepted: the TAR is then the
    one at FAR 0, and the result says so (``resolved`` is False).
    """
    if not 0.0 <= far <= 1.0:
        raise BadInput(f"FAR must be in [0, 1], not {far}")
    d, s = _pairs(dist, same)
    impostors = np.sort(d[~s])
    genuine = d[s]
    if not len(impostors) or not len(genuine):
        return TarAtFar(far=far, tar=float("nan"), impostors=len(impostors), accepted=0)
    allowed = math.floor(far * len(impostors) + 1e-9)
    # Accept d < limit, the (allowed + 1)-th smallest impostor distance.
    limit = impostors[allowed] if allowed < len(impostors) else np.inf
    return TarAtFar(
        far=far,
        tar=float(np.mean(genuine < limit)),
        impostors=len(impostors),
        accepted=int(np.sum(impostors < limit)),
    )


@dataclass(frozen=True)
class VerificationScores:
    """Verification quality of a set of pairs."""

    pairs: int
    same: int  # same-person pairs
    threshold: float  # the threshold ``accuracy`` is measured at
    accuracy: float
    cv_accuracy: float  # mean of the held-out folds' accuracies (NaN below two pairs)
    cv_std: float  # their population standard deviation
    cv_thresholds: tuple[float, ...]  # chosen on the other folds, one per held-out fold
    folds: FoldSource  # the pairs' own folds, or contiguous runs of them
    best_threshold: float  # maximises accuracy on all the pairs (optimistic)
    best_accuracy: float
    tar: TarAtFar

    @property
    def different(self) -> int:
        return self.pairs - self.same

    def as_dict(self) -> dict[str, Any]:
        """The scores as a plain dict (for JSON reports)."""
        return {
            "pairs": self.pairs,
            "same": self.same,
            "different": self.different,
            "threshold": self.threshold,
            "accuracy": self.accuracy,
            "cv_accuracy": self.cv_accuracy,
            "cv_std": self.cv_std,
            "cv_folds": len(self.cv_thresholds),
            "cv_fold_source": self.folds,
            "cv_thresholds": list(self.cv_thresholds),
            "best_threshold": self.best_threshold,
            "best_accuracy": self.best_accuracy,
            "tar_at_far": self.tar.as_dict(),
        }


def verification_scores(
    dist: np.ndarray,
    same: np.ndarray,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    folds: np.ndarray | None = None,
    k: int = DEFAULT_FOLDS,
    far: float = DEFAULT_FAR,
) -> VerificationScores:
    """Accuracy at ``threshold``, cross-validated and best-threshold accuracy, TAR at ``far``.

    ``folds`` (one label per pair) are used when they name at least two folds; otherwise
    the pairs are split, in the order given, into ``k`` contiguous folds.
    """
    d, s = _pairs(dist, same)
    if not len(d):
        raise BadInput("no pairs to score")
    source: FoldSource = "given"
    if folds is None or len(np.unique(np.asarray(folds))) < 2:
        source = "contiguous"
        folds = contiguous_folds(len(d), min(k, len(d)))
    accs: list[float] = []
    thresholds: list[float] = []
    if len(d) >= 2:
        accs, thresholds = cross_validate(d, s, folds)
    best_t, best_acc = best_threshold(d, s)
    return VerificationScores(
        pairs=len(d),
        same=int(s.sum()),
        threshold=threshold,
        accuracy=accuracy(d, s, threshold),
        cv_accuracy=statistics.mean(accs) if accs else float("nan"),
        cv_std=statistics.pstdev(accs) if accs else float("nan"),
        cv_thresholds=tuple(thresholds),
        folds=source,
        best_threshold=best_t,
        best_accuracy=best_acc,
        tar=tar_at_far(d, s, far),
    )


def _distance_matrix(x: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``x`` (n, d): float64 (n, n)."""
    x = np.asarray(x, dtype=np.float64)
    sq = (x * x).sum(axis=1)
    out: np.ndarray = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0))
    return out


@dataclass(frozen=True)
class Rank1:
    """Leave-one-out rank-1 identification: does the nearest other face show the person?"""

    hits: int
    queries: int  # images whose person has at least one other labelled image

    @property
    def accuracy(self) -> float:
        return self.hits / self.queries if self.queries else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {"rank1": self.accuracy, "hits": self.hits, "queries": self.queries}


def rank1(embeddings: Sequence[np.ndarray | None], people: Sequence[Hashable]) -> Rank1:
    """Rank-1 over every image whose person has another image; None is a missing face.

    A query without a face, or whose person has no other face found, is a miss.
    """
    if len(embeddings) != len(people):
        raise BadInput(f"need one person per image, got {len(embeddings)} and {len(people)}")
    counts = Counter(people)
    queries = [i for i, p in enumerate(people) if counts[p] > 1]
    found = [i for i, e in enumerate(embeddings) if e is not None]
    if len(found) < 2:
        return Rank1(hits=0, queries=len(queries))
    dist = _distance_matrix(np.stack([np.asarray(embeddings[i]).ravel() for i in found]))
    np.fill_diagonal(dist, np.inf)
    nearest = {i: found[int(j)] for i, j in zip(found, np.argmin(dist, axis=1), strict=True)}
    hits = sum(1 for i in queries if i in nearest and people[nearest[i]] == people[i])
    return Rank1(hits=hits, queries=len(queries))


def mixed_clusters(truth: Sequence[Hashable], labels: Sequence[Hashable]) -> int:
    """How many clusters hold faces of two or more people."""
    if len(truth) != len(labels):
        raise BadInput("truth and labels differ in length")
    members: dict[Hashable, set[Hashable]] = {}
    for person, label in zip(truth, labels, strict=True):
        members.setdefault(label, set()).add(person)
    return sum(1 for people in members.values() if len(people) > 1)


@dataclass(frozen=True)
class ClusterScores:
    """A clustering of faces scored against their people."""

    threshold: float
    merge: bool  # whether the merge pass ran
    faces: int
    people: int
    clusters: int
    mixed: int  # clusters holding two or more people
    precision: float  # pairwise (see lookalike.people.cluster.pairwise_scores)
    recall: float
    f1: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "merge": self.merge,
            "faces": self.faces,
            "people": self.people,
            "clusters": self.clusters,
            "mixed_clusters": self.mixed,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


def cluster_scores(
    embeddings: np.ndarray,
    people: Sequence[Hashable],
    *,
    threshold: float,
    photos: Sequence[Hashable] | None = None,
    quality: Sequence[float] | None = None,
    merge: bool = True,
) -> ClusterScores:
    """Cluster ``embeddings`` (n, d) with :func:`~lookalike.people.cluster.cluster_faces`
    and score the clusters against ``people``.

    ``photos`` defaults to one photo per face; ``quality`` orders the faces (best first).
    """
    rows = np.asarray(embeddings, dtype=np.float32)
    if rows.size == 0:
        rows = rows.reshape(0, 0)
    labels = cluster_faces(
        rows,
        list(range(len(people))) if photos is None else photos,
        threshold=threshold,
        quality=quality,
        merge=merge,
    )
    label_list = labels.tolist()
    pair = pairwise_scores(people, label_list)
    return ClusterScores(
        threshold=threshold,
        merge=merge,
        faces=len(people),
        people=len(set(people)),
        clusters=len(set(label_list)),
        mixed=mixed_clusters(people, label_list),
        precision=pair["precision"],
        recall=pair["recall"],
        f1=pair["f1"],
    )
