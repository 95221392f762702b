"""Faces in the catalog, people and clusters: the store and the service under the CLI.

Clustering and recognition logic is checked on synthetic embeddings written through the
real catalog (tight blobs per identity, as dlib's embeddings are); detection and enrolment
on scikit-image's astronaut, the one real face shipped offline.
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lookalike
from lookalike.errors import BadInput, Conflict, NotFound
from lookalike.faces import Encoder
from lookalike.index.faiss_index import FloatIndex
from lookalike.search.engine import Lookalike
from lookalike.settings import clear_settings_cache
from lookalike.store.base import FaceRecord, FaceScan, NewImage
from lookalike.store.migrations.sqlite import MIGRATIONS, SCHEMA_VERSION
from lookalike.store.sql_catalog import SqlCatalog
from lookalike.store.sqlite_db import SqliteDatabase

from .conftest import converted_models, sample

RNG = np.random.default_rng(7)
# Identity centres ~1.3 apart; faces scattered ~0.3 around them (dlib: same < 0.6).
CENTRES = RNG.normal(0.0, 0.08, size=(4, 128)).astype(np.float32)


def embedding(person: int) -> np.ndarray:
    out: np.ndarray = CENTRES[person] + RNG.normal(0.0, 0.02, 128).astype(np.float32)
    return out


def _thumb() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (90, 90, 90)).save(buf, "JPEG")
    return buf.getvalue()


def face(person: int, x: int = 0, quality: float = 0.9) -> FaceRecord:
    return FaceRecord(
        box=(x, 0, x + 100, 100),
        score=1.0,
        quality=quality,
        usable=True,
        flags=[],
        landmarks=[(x + 30.0, 40.0), (x + 70.0, 40.0)],
        embedding=embedding(person),
        thumb=_thumb(),
    )


def add_photo(lk: Lookalike, name: str, *people: int) -> int:
    """Record an image (no file needed) holding faces of ``people``; returns its id."""
    scan = FaceScan(lk.people.version, [face(p, x=120 * i) for i, p in enumerate(people)])
    sha = f"{abs(hash(name)):064x}"[:64]
    (image_id,) = lk.catalog.record(
        [NewImage(sha, f"/photos/{name}", 1, 1, 640, 480, "JPEG", {}, scan)]
    )
    return image_id


@pytest.fixture()
def lk(tmp_path: Path) -> Iterator[Lookalike]:
    with lookalike.open(tmp_path / "data") as engine:
        yield engine


def clusters_of(lk: Lookalike) -> dict[int, set[int]]:
    """cluster id -> image ids of its faces."""
    return {c.id: {f.image_id for f in lk.people.cluster_faces(c.id)} for c in lk.people.clusters()}


# -- store --------------------------------------------------------------------------------


def test_people_of_a_v3_catalog_get_caseless_names_on_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    database = SqliteDatabase(path, MIGRATIONS[:3])
    with database.transaction() as db:
        # NOCASE let these in: two spellings of one name, and a name the renaming must avoid.
        for name in ("Élodie", "élodie", "élodie (2)", "Bob"):
            db.execute("INSERT INTO people (name, created_at) VALUES (?, 0)", [name])
    database.close()
    catalog = SqlCatalog(SqliteDatabase(path))
    try:
        assert catalog.schema_version() == SCHEMA_VERSION
        people = catalog.faces
        assert [(p.id, p.name) for p in sorted(people.people(), key=lambda p: p.id)] == [
            (1, "Élodie"),
            (2, "élodie (3)"),  # kept, under a name of its own: nothing merged unasked
            (3, "élodie (2)"),
            (4, "Bob"),
        ]
        found = people.person("ÉLODIE")
        assert found is not None and found.id == 1
        bob = people.person("BOB")
        assert bob is not None and bob.name == "Bob"
    finally:
        catalog.close()


def test_two_processes_cannot_both_create_one_caseless_name(tmp_path: Path) -> None:
    first = SqlCatalog(SqliteDatabase(tmp_path / "catalog.sqlite3"))
    second = SqlCatalog(SqliteDatabase(tmp_path / "catalog.sqlite3"))
    try:
        first.faces.add_person("Straße")
        with pytest.raises(Conflict, match="Straße"):
            second.faces.add_person("STRASSE")
        assert second.faces.add_person("strasse", exist_ok=True).name == "Straße"
        # The database itself refuses it, whoever writes.
        with pytest.raises(sqlite3.IntegrityError), second.database.transaction() as db:
            db.execute(
                "INSERT INTO people (name, name_key, created_at) VALUES ('STRASSE', 'strasse', 0)"
            )
        assert [p.name for p in first.faces.people()] == ["Straße"]
    finally:
        first.close()
        second.close()


def test_faces_are_stored_once_per_version_and_go_with_their_image(lk: Lookalike) -> None:
    image_id = add_photo(lk, "a.jpg", 0, 1)
    store = lk.catalog.faces
    first = [f.id for f in store.faces_of_image(image_id)]
    assert len(first) == 2 and store.face_scanned(image_id, lk.people.version)
    generation = store.generation("face")
    add_photo(lk, "a.jpg", 0, 1)  # the same content again: nothing changes
    assert [f.id for f in store.faces_of_image(image_id)] == first
    assert store.generation("face") == generation
    assert not store.face_scanned(image_id, "another-model/v9")
    lk.catalog.remove_paths(["/photos/a.jpg"])
    assert store.faces(first) == {}
    assert store.generation("face") > generation


def test_an_image_without_faces_is_recorded_as_scanned(lk: Lookalike) -> None:
    image_id = add_photo(lk, "empty.jpg")
    assert lk.catalog.faces.face_scanned(image_id, lk.people.version)
    assert lk.catalog.faces.faces_of_image(image_id) == []


def test_l2_index_returns_squared_distances_and_keeps_its_metric() -> None:
    rows = RNG.normal(size=(50, 16)).astype(np.float32)
    ids = np.arange(100, 150, dtype=np.int64)
    index = FloatIndex.build(ids, rows, ann_threshold=1000, nprobe=4, metric="l2")
    scores, got = index.search(rows[3:4] + 0.01, 5)
    expected = ((rows - (rows[3] + 0.01)) ** 2).sum(axis=1)
    assert got[0, 0] == 103
    assert scores[0] == pytest.approx(np.sort(expected)[:5], rel=1e-4)
    again = FloatIndex.from_bytes(index.to_bytes(), index.ids(), kind="flat", nprobe=4)
    assert again.metric == "l2"
    assert again.search(rows[3:4], 1)[1][0, 0] == 103


# -- clustering ---------------------------------------------------------------------------


def test_clusters_group_people_and_never_two_faces_of_one_photo(lk: Lookalike) -> None:
    for i in range(4):
        add_photo(lk, f"p0-{i}.jpg", 0)
        add_photo(lk, f"p1-{i}.jpg", 1)
    twins = add_photo(lk, "twins.jpg", 0, 0)  # two faces of person 0 in one photo
    report = lk.people.cluster()
    assert report.faces == 10 and report.recognised == 0
    groups = clusters_of(lk)
    assert all(
        twins not in members or sum(f.image_id == twins for f in lk.people.cluster_faces(c)) == 1
        for c, members in groups.items()
    )
    sizes = sorted(c.size for c in lk.people.clusters())
    assert sizes == [1, 4, 5]


def test_clustering_is_incremental(lk: Lookalike) -> None:
    for i in range(3):
        add_photo(lk, f"a{i}.jpg", 0)
    lk.people.cluster()
    before = {
        f.id: f.cluster_id for c in lk.people.clusters() for f in lk.people.cluster_faces(c.id)
    }
    again = lk.people.cluster()
    assert again.faces == 0  # nothing new: nothing looked at
    new = add_photo(lk, "a-new.jpg", 0)
    add_photo(lk, "b-new.jpg", 2)
    report = lk.people.cluster()
    assert (report.faces, report.joined, report.started) == (2, 1, 1)
    after = {
        f.id: f.cluster_id for c in lk.people.clusters() for f in lk.people.cluster_faces(c.id)
    }
    assert all(after[f] == c for f, c in before.items())
    (new_face,) = lk.catalog.faces.faces_of_image(new)
    assert new_face.cluster_id == next(iter(before.values()))


def test_full_recluster_merges_a_split_person(lk: Lookalike) -> None:
    for i in range(3):
        add_photo(lk, f"a{i}.jpg", 0)
    lk.people.cluster()
    faces = lk.people.cluster_faces(lk.people.clusters()[0].id)
    lk.people.move_faces([faces[0].id], None)  # split by hand
    assert len(lk.people.clusters()) == 2
    report = lk.people.cluster(full=True)
    assert report.faces == 3 and len(lk.people.clusters()) == 1


def test_merge_and_move(lk: Lookalike) -> None:
    add_photo(lk, "a.jpg", 0)
    add_photo(lk, "b.jpg", 1)
    lk.people.cluster()
    a, b = (c.id for c in lk.people.clusters())
    moved = lk.people.merge_clusters([a, b])
    assert moved == 1 and [c.id for c in lk.people.clusters()] == [a]
    (face_id,) = lk.people.clusters()[0].sample[:1]
    target = lk.people.move_faces([face_id], None)
    assert {c.id for c in lk.people.clusters()} == {a, target}
    with pytest.raises(NotFound):
        lk.people.move_faces([face_id], 999)
    with pytest.raises(NotFound):
        lk.people.move_faces([424242], a)
    with pytest.raises(BadInput):
        lk.people.merge_clusters([a])


# -- people -------------------------------------------------------------------------------


def test_naming_a_cluster_makes_a_person_and_later_photos_are_recognised(lk: Lookalike) -> None:
    for i in range(3):
        add_photo(lk, f"a{i}.jpg", 0)
    lk.people.cluster()
    (cluster,) = lk.people.clusters()
    person = lk.people.name_cluster(cluster.id, "  Ada   Lovelace ")
    assert person.name == "Ada Lovelace" and person.faces == 3
    assert lk.people.clusters() == []
    later = add_photo(lk, "later.jpg", 0, 1)
    report = lk.people.cluster()
    assert report.recognised == 1 and report.people == {"Ada Lovelace": 1}
    faces = lk.catalog.faces.faces_of_image(later)
    assert [f.person for f in faces] == ["Ada Lovelace", None]
    assert not faces[0].confirmed and faces[1].cluster_id is not None


def test_naming_with_an_existing_name_asks_for_merge(lk: Lookalike) -> None:
    add_photo(lk, "a.jpg", 0)
    add_photo(lk, "b.jpg", 0)
    lk.people.cluster()
    lk.people.move_faces([lk.people.clusters()[0].sample[0]], None)
    first, second = (c.id for c in lk.people.clusters())
    lk.people.name_cluster(first, "Ada")
    with pytest.raises(Conflict, match="merge"):
        lk.people.name_cluster(second, "ada")  # names are case-insensitive
    assert lk.people.person("Ada").faces == 1
    assert lk.people.name_cluster(second, "ada", merge=True).faces == 2


def test_rename_merge_remove(lk: Lookalike) -> None:
    add_photo(lk, "a.jpg", 0)
    add_photo(lk, "b.jpg", 1)
    lk.people.cluster()
    ca, cb = (c.id for c in lk.people.clusters())
    lk.people.name_cluster(ca, "A")
    lk.people.name_cluster(cb, "B")
    with pytest.raises(Conflict):
        lk.people.rename("A", "b")
    lk.people.rename("A", "Anne")
    merged = lk.people.merge(["B"], into="Anne")
    assert merged.faces == 2 and [p.name for p in lk.people.people()] == ["Anne"]
    lk.people.remove("Anne")
    assert lk.people.people() == []
    with pytest.raises(NotFound):
        lk.people.person("Anne")
    # Its faces are unknown again, and clustered with the others next time.
    assert lk.people.cluster().faces == 2


def test_identify_vectors_gives_person_distance_and_candidates(lk: Lookalike) -> None:
    for p, name in enumerate(("A", "B", "C")):
        add_photo(lk, f"{name}.jpg", p)
    lk.people.cluster()
    for c in lk.people.clusters():
        (f,) = lk.people.cluster_faces(c.id)
        lk.people.assign([f.id], ["A", "B", "C"][f.image_id - 1])
    ((pid, dist, ranked),) = lk.people.identify_vectors(embedding(1)[None, :])
    assert lk.catalog.faces.person_by_id(pid or 0).name == "B"  # type: ignore[union-attr]
    assert dist is not None and dist < 0.6
    assert [d for _, d in ranked] == sorted(d for _, d in ranked) and len(ranked) == 3
    ((pid, _, _),) = lk.people.identify_vectors(embedding(3)[None, :])
    assert pid is None  # a stranger


# -- real faces ---------------------------------------------------------------------------


def _two_faces() -> Image.Image:
    """The astronaut twice, side by side: two faces in one photo."""
    one = sample("astronaut")
    both = Image.new("RGB", (one.width * 2, one.height))
    both.paste(one, (0, 0))
    both.paste(one.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (one.width, 0))
    return both


def test_enrol_identify_and_search_with_a_real_face(lk: Lookalike, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    astronaut = sample("astronaut")
    astronaut.save(photos / "astronaut.jpg", quality=92)
    astronaut.resize((384, 384)).save(photos / "small.png")
    sample("coffee").save(photos / "coffee.png")
    report = lk.index([photos], progress=False)
    assert report.faces == 2 and report.people is not None and report.people.started == 1

    example = tmp_path / "mirror.png"
    astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(example)
    person, ids = lk.people.enrol("Eileen Collins", [example])
    assert person.examples == 1 and len(ids) == 1
    again, _ = lk.people.enrol("Eileen Collins", [example])  # idempotent by content
    assert again.examples == 1

    (who,) = lk.people.identify(photos / "astronaut.jpg")
    assert who.person == "Eileen Collins" and who.distance is not None and who.distance < 0.4
    assert lk.people.identify(photos / "coffee.png") == []

    found = lk.people.search(example, k=5)
    assert [Path(h.path).name for h in found.results] == ["astronaut.jpg", "small.png"] or [
        Path(h.path).name for h in found.results
    ] == ["small.png", "astronaut.jpg"]
    assert [h.distance for h in found.results] == sorted(h.distance for h in found.results)
    with pytest.raises(BadInput, match="no face"):
        lk.people.search(photos / "coffee.png")


def test_enrolment_refuses_no_face_and_several_faces_with_the_count(
    lk: Lookalike, tmp_path: Path
) -> None:
    coffee = tmp_path / "coffee.png"
    sample("coffee").save(coffee)
    both = tmp_path / "both.png"
    _two_faces().save(both)
    with pytest.raises(BadInput, match="no face"):
        lk.people.enrol("X", [coffee])
    with pytest.raises(BadInput, match="2 faces found, 2 usable"):
        lk.people.enrol("X", [both])
    assert lk.people.people() == []  # nothing half-stored
    person, _ = lk.people.enrol("X", [both], face=1)
    assert person.examples == 1
    with pytest.raises(BadInput, match="--face must be 0 to 1"):
        lk.people.enrol("X", [both], face=2)


def test_two_faces_of_one_photo_are_not_clustered_together(lk: Lookalike, tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    _two_faces().save(folder / "both.png")
    lk.index([folder], progress=False)
    clusters = lk.people.clusters()
    assert sorted(c.size for c in clusters) == [1, 1]


@pytest.mark.parametrize("mode", ["L", "CMYK", "I;16"])
def test_faces_are_found_in_any_image_mode(lk: Lookalike, mode: str) -> None:
    image = sample("astronaut").convert(mode)
    if mode == "I;16":  # the full 16-bit range, as a real 16-bit scan has
        grey = np.asarray(sample("astronaut").convert("L"), dtype=np.uint16) * 257
        image = Image.fromarray(grey)  # uint16: mode I;16
    buf = io.BytesIO()
    image.save(buf, "TIFF" if mode != "L" else "PNG")
    (found,) = lk.people.faces_of(buf.getvalue())
    assert found.usable and found.embedding is not None


def test_tiny_and_faceless_images_give_no_faces(lk: Lookalike) -> None:
    assert lk.people.faces_of(Image.new("RGB", (20, 20), (128, 100, 90))) == []
    assert lk.people.faces_of(sample("rocket")) == []


@pytest.mark.slow
def test_a_crowd_of_faces_is_stored_whole(lk: Lookalike, tmp_path: Path) -> None:
    head = sample("astronaut").crop((140, 20, 260, 170)).resize((90, 112))
    crowd = Image.new("RGB", (10 * 100, 5 * 125), (200, 200, 200))
    for i in range(50):
        crowd.paste(head, ((i % 10) * 100 + 5, (i // 10) * 125 + 6))
    folder = tmp_path / "crowd"
    folder.mkdir()
    crowd.save(folder / "crowd.png")
    report = lk.index([folder], progress=False)
    assert report.faces is not None and report.faces >= 40
    stats = lk.people.stats()
    assert stats["faces"] == report.faces
    # All of one photo: no two in a cluster.
    assert all(c.size == 1 for c in lk.people.clusters())


@pytest.mark.slow
def test_a_30_megapixel_photo_gives_boxes_in_its_own_pixels(lk: Lookalike, tmp_path: Path) -> None:
    small = sample("astronaut")
    (reference,) = lk.people.faces_of(small)
    big = tmp_path / "big.jpg"
    small.resize((6000, 6000), Image.Resampling.BICUBIC).save(big, quality=90)
    (found,) = lk.people.faces_of(big)  # decoded at 1/4 scale (draft), boxes scaled back
    scale = 6000 / small.width
    assert found.box == pytest.approx([v * scale for v in reference.box], abs=0.06 * 6000 / 4)
    assert found.landmarks[0] == pytest.approx(
        (reference.landmarks[0][0] * scale, reference.landmarks[0][1] * scale), abs=60
    )
    assert found.embedding is not None and reference.embedding is not None
    assert float(np.linalg.norm(found.embedding - reference.embedding)) < 0.3


def test_a_person_named_in_a_photo_is_not_recognised_again_in_it(lk: Lookalike) -> None:
    add_photo(lk, "a0.jpg", 0)
    add_photo(lk, "a1.jpg", 0)
    twins = add_photo(lk, "twins.jpg", 0, 0)
    lk.people.cluster()
    biggest = max(lk.people.clusters(), key=lambda c: c.size)
    lk.people.name_cluster(biggest.id, "Ada")
    report = lk.people.cluster(full=True)
    assert report.recognised == 0  # the other twin looks like Ada, but Ada is already there
    assert sorted(f.person or "" for f in lk.catalog.faces.faces_of_image(twins)) == ["", "Ada"]


def test_names_are_one_person_in_any_case_of_any_script(lk: Lookalike) -> None:
    faces = [add_photo(lk, f"p{i}.jpg", i) for i in range(4)]
    face_ids = [f.id for i in faces for f in lk.catalog.faces.faces_of_image(i)]
    elodie = lk.people.assign(face_ids[:1], "Élodie")
    # The same name typed otherwise, or encoded decomposed (E + combining acute): one person.
    for spelling in ("ÉLODIE", "élodie", "E\u0301lodie"):
        assert lk.people.person(spelling).id == elodie.id
    assert lk.people.assign(face_ids[1:2], "E\u0301LODIE").id == elodie.id
    lk.people.assign(face_ids[2:3], "Straße")
    with pytest.raises(Conflict):
        lk.people.rename("Élodie", "STRASSE")
    lk.people.cluster()
    (cluster,) = lk.people.clusters()
    with pytest.raises(Conflict, match="merge"):
        lk.people.name_cluster(cluster.id, "strasse")
    assert lk.people.name_cluster(cluster.id, "STRASSE", merge=True).faces == 2
    # Shown as first typed; a person may change the case of their own name.
    assert [p.name for p in lk.people.people()] == ["Élodie", "Straße"]
    assert lk.people.rename("élodie", "ÉLODIE").name == "ÉLODIE"


def test_open_runs_the_face_model_from_the_settings_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``model_cache_dir`` and ``inference_threads`` given to open() reach the face encoder,
    while indexing and when asked who is in a photo; the environment's folder stays unused."""
    env_cache, xdg_cache = tmp_path / "env-cache", tmp_path / "xdg-cache"
    monkeypatch.setenv("LOOKALIKE_MODEL_CACHE_DIR", str(env_cache))
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg_cache))
    clear_settings_cache()
    photos, chosen = tmp_path / "photos", tmp_path / "models"
    photos.mkdir()
    sample("astronaut").save(photos / "astronaut.png")
    with lookalike.open(tmp_path / "data", model_cache_dir=chosen, inference_threads=1) as lk:
        assert lk.people.encoder == Encoder(chosen, 1)
        report = lk.index([photos], descriptors=["color"], progress=False)
        assert report.faces == 1
        (found,) = lk.people.identify(photos / "astronaut.png")
        assert found.face.embedding is not None
        assert lk.people.encoder.session().loaded
        with lk.people.encoder.session().use() as session:
            assert session.get_session_options().intra_op_num_threads == 1
        with lk.people.encoder.detector_session().use() as session:
            assert session.get_session_options().intra_op_num_threads == 1
    # The face ResNet and the CNN detector, converted into the folder given.
    assert converted_models(chosen) == ["face", "mmod"]
    # (ONNX Runtime keeps a device id of its own under XDG_CACHE_HOME.)
    assert not env_cache.exists() and not (xdg_cache / "lookalike").exists()


def test_names_are_cleaned_and_control_characters_refused(lk: Lookalike) -> None:
    add_photo(lk, "a.jpg", 0)
    lk.people.cluster()
    (cluster,) = lk.people.clusters()
    for bad in ("", "   ", "Ada\x00", "A\u200bda", "x" * 201):
        with pytest.raises(BadInput):
            lk.people.name_cluster(cluster.id, bad)
