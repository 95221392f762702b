"""Face evaluation: metrics on small arrays with known answers, clustering, ``eval faces``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from lookalike.cli.main import cli
from lookalike.errors import BadInput
from lookalike.eval.faces import (
    accuracy,
    best_threshold,
    cluster_scores,
    contiguous_folds,
    cross_validate,
    mixed_clusters,
    rank1,
    tar_at_far,
    verification_scores,
)
from lookalike.eval.runner import run_face_pairs_eval
from lookalike.people.cluster import cluster_faces, pairwise_scores
from lookalike.settings import clear_settings_cache, get_settings

from .conftest import converted_models, sample

# --------------------------------------------------------------------------- verification


def test_accuracy_accepts_up_to_the_threshold() -> None:
    dist = np.array([0.1, 0.6, 0.7, 0.9])
    same = np.array([True, True, False, True])
    # Predicted same: 0.1 and 0.6 (inclusive); 0.9 is a false reject.
    assert accuracy(dist, same, 0.6) == 0.75


def test_a_missing_face_is_predicted_different() -> None:
    dist = np.array([0.2, np.inf, np.inf])
    same = np.array([True, True, False])
    assert accuracy(dist, same, 10.0) == pytest.approx(2 / 3)
    threshold, acc = best_threshold(dist, same)
    assert np.isfinite(threshold) and acc == pytest.approx(2 / 3)


def test_best_threshold_sits_in_the_gap() -> None:
    dist = np.array([0.4, 0.1, 0.3, 0.2])
    same = np.array([False, True, False, True])
    assert best_threshold(dist, same) == (pytest.approx(0.25), 1.0)


def test_best_threshold_never_cuts_between_equal_distances() -> None:
    # The two 0.2 pairs cannot be told apart: accept both or neither (2/3 either way).
    dist = np.array([0.2, 0.2, 0.5])
    same = np.array([True, False, False])
    threshold, acc = best_threshold(dist, same)
    assert acc == pytest.approx(2 / 3)
    assert accuracy(dist, same, threshold) == pytest.approx(acc)


def test_best_threshold_achieves_its_accuracy() -> None:
    rng = np.random.default_rng(0)
    dist = np.round(rng.uniform(0, 1, 200), 2)  # many ties
    same = rng.uniform(0, 1, 200) < 1.2 - dist
    threshold, acc = best_threshold(dist, same)
    assert accuracy(dist, same, threshold) == pytest.approx(acc)
    for t in np.linspace(-0.1, 1.1, 121):
        assert accuracy(dist, same, float(t)) <= acc + 1e-12


def test_cross_validation_picks_the_threshold_on_the_other_folds() -> None:
    dist = np.array([0.1, 0.5, 0.3, 0.7])
    same = np.array([True, False, True, False])
    folds = np.array([0, 0, 1, 1])
    accs, thresholds = cross_validate(dist, same, folds)
    # Fold 0 is scored at 0.5 (chosen on fold 1): its 0.5 impostor is accepted.
    assert thresholds == pytest.approx([0.5, 0.3])
    assert accs == pytest.approx([0.5, 1.0])
    with pytest.raises(BadInput):
        cross_validate(dist, same, np.zeros(4))


def test_contiguous_folds() -> None:
    assert contiguous_folds(10, 3).tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert contiguous_folds(0).tolist() == []


def test_verification_scores_fold_choice() -> None:
    dist = np.tile([0.2, 0.9], 10) + np.arange(20) * 0.001
    same = dist < 0.5
    scores = verification_scores(dist, same, threshold=0.5)
    assert scores.folds == "contiguous" and len(scores.cv_thresholds) == 10
    assert scores.accuracy == 1.0 and scores.cv_accuracy == 1.0
    assert (scores.pairs, scores.same, scores.different) == (20, 10, 10)
    given = verification_scores(dist, same, folds=np.arange(20) // 2 % 2)
    assert given.folds == "given" and len(given.cv_thresholds) == 2
    assert given.cv_accuracy == 1.0 and given.best_accuracy == 1.0
    one_fold = verification_scores(dist, same, folds=np.zeros(20, dtype=int))
    assert one_fold.folds == "contiguous"


def test_tar_at_far_resolved() -> None:
    impostors = np.linspace(0.5, 1.5, 1000)
    genuine = np.array([0.2, 0.5, 0.55, 0.6])
    dist = np.concatenate([impostors, genuine])
    same = np.arange(len(dist)) >= len(impostors)
    result = tar_at_far(dist, same, 0.001)
    # One impostor (0.5) may be accepted: the limit is the second smallest, ~0.501.
    assert result.resolved and result.impostors == 1000 and result.accepted == 1
    assert result.tar == 0.5


def test_tar_at_far_below_resolution_accepts_no_impostor() -> None:
    impostors = np.linspace(0.5, 1.5, 841)
    dist = np.concatenate([impostors, [0.2, 0.5, 0.55]])
    same = np.arange(len(dist)) >= len(impostors)
    result = tar_at_far(dist, same, 0.001)
    assert not result.resolved and result.impostors == 841 and result.accepted == 0
    assert result.tar == pytest.approx(1 / 3)
    assert np.isnan(tar_at_far(np.array([0.1]), np.array([True])).tar)


# --------------------------------------------------------------------------- identification


def _line(*xs: float) -> list[np.ndarray]:
    return [np.array([x, 0.0], dtype=np.float32) for x in xs]


def test_rank1_leave_one_out() -> None:
    people = ["a", "a", "b", "b", "c"]
    vectors = _line(0.0, 0.1, 1.0, 0.3, 10.0)
    # b2 (0.3) is nearest to a2; c has no other image and is not a query.
    assert rank1(vectors, people).hits == 3 and rank1(vectors, people).queries == 4
    missing: list[np.ndarray | None] = [None, *vectors[1:]]
    # a1 has no face (a miss); a2's nearest is now b2.
    assert rank1(missing, people).accuracy == pytest.approx(1 / 4)
    assert rank1([None, None], ["a", "a"]).accuracy == 0.0
    assert np.isnan(rank1([], []).accuracy)


def test_mixed_clusters() -> None:
    assert mixed_clusters(["a", "a", "b", "b", "c"], [1, 1, 1, 2, 2]) == 2
    assert mixed_clusters(["a", "a", "b", "b", "c"], [1, 1, 2, 2, 3]) == 0


def test_pairwise_scores_known_example() -> None:
    # Predicted pairs: 1 + 3; true pairs: 3 + 1; shared: (a, a) in 1 and (b, b) in 2.
    scores = pairwise_scores(["a", "a", "a", "b", "b"], [1, 1, 2, 2, 2])
    assert scores["precision"] == 0.5 and scores["recall"] == 0.5 and scores["f1"] == 0.5
    perfect = pairwise_scores(["a", "a", "b"], ["x", "x", "y"])
    assert perfect["f1"] == 1.0


def _blobs(people: int, each: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Tight groups of 128-d points, one per person, centres ~1.4 apart."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, 128))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rows = np.repeat(centres, each, axis=0) + rng.normal(scale=0.01, size=(people * each, 128))
    return rows.astype(np.float32), [f"p{i}" for i in range(people) for _ in range(each)]


def test_cluster_faces_groups_tight_blobs() -> None:
    rows, people = _blobs(3, 5)
    order = np.random.default_rng(1).permutation(len(people))
    labels = cluster_faces(rows[order], list(range(len(people))), threshold=0.5)
    truth = [people[i] for i in order]
    assert len(set(labels.tolist())) == 3 and mixed_clusters(truth, labels.tolist()) == 0
    scores = cluster_scores(rows, people, threshold=0.5, quality=[1.0] * len(people))
    assert (scores.clusters, scores.mixed, scores.f1) == (3, 0, 1.0)
    assert (scores.faces, scores.people) == (15, 3)


def test_cluster_faces_keeps_faces_of_one_photo_apart() -> None:
    rows = np.repeat(_blobs(1, 1)[0], 6, axis=0)  # one person's face, six times
    photos = ["x", "x", "y", "y", "z", "x"]
    for merge in (False, True):
        labels = cluster_faces(rows, photos, threshold=0.5, merge=merge).tolist()
        for cluster in set(labels):
            in_it = [p for p, c in zip(photos, labels, strict=True) if c == cluster]
            assert len(in_it) == len(set(in_it))
        assert len(set(labels)) == 3  # photo x has three faces


def test_cluster_faces_empty_input() -> None:
    labels = cluster_faces(np.zeros((0, 128), dtype=np.float32), [], threshold=0.5)
    assert labels.dtype == np.int64 and labels.shape == (0,)
    scores = cluster_scores(np.zeros((0, 128)), [], threshold=0.5)
    assert (scores.faces, scores.clusters, scores.mixed) == (0, 0, 0)
    with pytest.raises(BadInput):
        cluster_faces(np.zeros((2, 128)), ["a"], threshold=0.5)


# --------------------------------------------------------------------------- CLI


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def face_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The astronaut, a smaller JPEG copy and a mirrored copy; coffee (no face); a bad file."""
    folder = tmp_path_factory.mktemp("faces")
    image = sample("astronaut")
    image.save(folder / "a.png")
    image.resize((300, 300), Image.Resampling.LANCZOS).save(folder / "small.jpg", quality=85)
    image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "mirror.png")
    sample("coffee").save(folder / "coffee.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff")
    return folder


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_eval_faces_labels(face_dir: Path) -> None:
    labels = _write_csv(
        face_dir / "labels.csv",
        ["path", "person"],
        # coffee is labelled as the astronaut: a photo of her in which no face is found.
        [
            ["a.png", "eileen"],
            ["small.jpg", "eileen"],
            ["mirror.png", "eileen"],
            ["coffee.png", "eileen"],
            ["broken.jpg", "nobody"],
        ],
    )
    code, out, err = _invoke("eval", "faces", "--labels", str(labels), "--json")
    assert code == 0
    result = json.loads(out)
    assert (result["hits"], result["queries"]) == (3, 4)  # coffee is a miss
    assert result["images"] == 5 and result["people"] == 2
    assert [Path(p).name for p in result["no_face"]] == ["coffee.png"]
    assert [Path(u["path"]).name for u in result["unreadable"]] == ["broken.jpg"]
    clusters = result["clusters"]
    assert (clusters["faces"], clusters["clusters"], clusters["mixed_clusters"]) == (3, 1, 0)
    assert clusters["f1"] == 1.0 and clusters["threshold"] == 0.5
    code, out, err = _invoke("eval", "faces", "--labels", str(labels), "--threshold", "0.4")
    assert code == 0 and "rank-1" in out and "75.00%" in out and "clusters @ 0.4" in out
    assert "no face:" in err and "coffee.png" in err and "broken.jpg" in err


def test_eval_faces_pairs(face_dir: Path) -> None:
    pairs = _write_csv(
        face_dir / "pairs.csv",
        ["path_a", "path_b", "same"],
        [
            ["a.png", "small.jpg", "1"],
            ["a.png", "mirror.png", "1"],
            ["a.png", "coffee.png", "0"],
            ["small.jpg", "coffee.png", "0"],
        ],
    )
    code, out, _ = _invoke("eval", "faces", "--pairs", str(pairs), "--json")
    assert code == 0
    result = json.loads(out)
    assert (result["pairs"], result["same"], result["different"]) == (4, 2, 2)
    # The two pairs with coffee have no face: predicted "different", which is right.
    assert result["missing_pairs"] == 2 and result["accuracy"] == 1.0
    assert result["threshold"] == 0.6 and result["images"] == 4
    assert result["cv_fold_source"] == "contiguous" and result["cv_folds"] == 4
    far = result["tar_at_far"]
    assert far["impostors"] == 2 and far["resolved"] is False and far["tar"] == 1.0
    code, out, _ = _invoke("eval", "faces", "--pairs", str(pairs))
    assert code == 0 and "accuracy @ 0.6" in out and "below their resolution" in out


def test_eval_faces_needs_exactly_one_csv(face_dir: Path) -> None:
    code, _, err = _invoke("eval", "faces")
    assert code == 2 and "exactly one of --pairs" in err
    csv_path = _write_csv(face_dir / "x.csv", ["path", "person"], [])
    code, _, err = _invoke("eval", "faces", "--pairs", str(csv_path), "--labels", str(csv_path))
    assert code == 2 and "exactly one of --pairs" in err
    code, _, err = _invoke("eval", "faces", "--labels", str(csv_path))
    assert code == 1 and "no images" in err


def test_eval_faces_works_under_the_settings_given(
    face_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pairs = _write_csv(
        tmp_path / "pairs.csv",
        ["path_a", "path_b", "same"],
        [
            [str(face_dir / "a.png"), str(face_dir / "small.jpg"), "1"],
            [str(face_dir / "a.png"), str(face_dir / "coffee.png"), "0"],
        ],
    )
    settings = get_settings(model_cache_dir=tmp_path / "models", face_threshold=0.01)
    report = run_face_pairs_eval(pairs, settings)
    # At 0.01 the two copies of one face are told apart: the settings' threshold was used.
    assert report.scores.threshold == 0.01 and report.scores.accuracy == 0.5
    assert converted_models(tmp_path / "models") == ["face", "mmod"]
    # The command line reads the settings once and passes them down the same way.
    monkeypatch.setenv("LOOKALIKE_FACE_THRESHOLD", "0.01")
    clear_settings_cache()
    code, out, _ = _invoke("eval", "faces", "--pairs", str(pairs), "--json")
    assert code == 0 and json.loads(out)["threshold"] == 0.01
