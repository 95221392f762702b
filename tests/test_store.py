"""The catalog: idempotent writes, orphans, generations, schema versions and migrations.

The catalog tests take their catalog from the ``database`` fixture, one per backend, so every
backend runs the same suite; the migration tests are SQLite's own.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lookalike.errors import Conflict, NotFound, SchemaTooNew
from lookalike.store import sql_catalog
from lookalike.store.base import Catalog, FaceRecord, FaceScan, NewExample, NewImage, PathRow
from lookalike.store.database import Database, Handle
from lookalike.store.migrations.sqlite import MIGRATIONS, SCHEMA_VERSION
from lookalike.store.sql_catalog import SqlCatalog
from lookalike.store.sql_util import CHUNK
from lookalike.store.sqlite_db import SqliteDatabase


def _postgres(request: pytest.FixtureRequest, folder: Path) -> Database[Handle]:
    # Imported here: psycopg comes with the scale extra, which SQLite's tests do not need.
    from lookalike.store.postgres_db import PostgresDatabase

    return PostgresDatabase(request.getfixturevalue("postgres_catalog_url"))


# Backend name -> an empty catalog database in a temporary folder (or, for PostgreSQL, a new
# database on the session's server: fixture postgres_catalog_url).
DATABASES: dict[str, Callable[[pytest.FixtureRequest, Path], Database[Handle]]] = {
    "sqlite": lambda request, folder: SqliteDatabase(folder / "catalog.sqlite3"),
    "postgres": _postgres,
}
# Tests of a backend that needs a server carry its marker.
MARKS = {"postgres": [pytest.mark.postgres]}


def _item(sha: str, path: str, value: float = 1.0) -> NewImage:
    row = np.full(4, value, dtype=np.float32)
    return NewImage(sha, path, 10, 123, 8, 6, "PNG", {"cnn": ("v1", row)})


@pytest.fixture(params=[pytest.param(name, marks=MARKS.get(name, [])) for name in DATABASES])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database[Handle]]:
    opened = DATABASES[request.param](request, tmp_path)
    yield opened
    opened.close()


@pytest.fixture()
def catalog(database: Database[Handle]) -> Catalog:
    return SqlCatalog(database)


def test_same_content_twice_is_one_image_with_two_paths(catalog: Catalog) -> None:
    first, second = _item("aa", "/p/one.png"), _item("aa", "/p/two.png")
    a, b = catalog.record([first, second])
    assert a == b
    assert (first.created, second.created) == (True, False)  # only the first made the image
    assert catalog.count_images() == 1
    (dup,) = catalog.exact_duplicates()
    assert dup.paths == ("/p/one.png", "/p/two.png")


def test_recording_again_changes_nothing(catalog: Catalog) -> None:
    catalog.record([_item("aa", "/p/one.png")])
    gen = catalog.generation("cnn")
    catalog.record([_item("aa", "/p/one.png")])
    assert catalog.generation("cnn") == gen
    assert catalog.count_images() == 1


def test_vectors_round_trip_and_generation_bumps(catalog: Catalog) -> None:
    assert catalog.generation("cnn") == 0
    catalog.record([_item("aa", "/p/a.png", 1.0), _item("bb", "/p/b.png", 2.0)])
    _ids, raw = catalog.vectors("cnn", "v1")
    rows = raw.view(np.float32)
    assert rows.shape == (2, 4)
    assert rows[1, 0] == 2.0
    assert catalog.generation("cnn") > 0
    assert len(catalog.vectors("cnn", "v2")[0]) == 0  # another version is never mixed in


def test_known_sha256_names_the_contents_held(catalog: Catalog) -> None:
    catalog.record([_item("aa", "/p/a.png"), _item("bb", "/p/b.png")])
    asked = ["aa", "cc", "bb", "aa"] + [f"{i:064x}" for i in range(1200)]  # several chunks
    assert catalog.known_sha256(asked) == {"aa", "bb"}
    catalog.remove_paths(["/p/a.png"])
    assert catalog.known_sha256(["aa", "bb"]) == {"bb"}
    assert catalog.known_sha256([]) == set()


def test_removing_last_path_deletes_image_and_vectors(catalog: Catalog) -> None:
    catalog.record([_item("aa", "/p/a.png"), _item("aa", "/p/a2.png")])
    assert catalog.remove_paths(["/p/a.png"]) == []  # still reachable through a2
    gen = catalog.generation("cnn")
    (gone,) = catalog.remove_paths(["/p/a2.png"])
    assert catalog.count_images() == 0
    assert len(catalog.vector_ids("cnn", "v1")) == 0
    assert catalog.generation("cnn") > gen
    assert gone > 0


def test_changed_file_content_drops_old_image(catalog: Catalog) -> None:
    catalog.record([_item("aa", "/p/a.png")])
    catalog.record([_item("bb", "/p/a.png", 3.0)])
    assert catalog.count_images() == 1
    assert catalog.image_by_sha("aa") is None


def test_changed_content_drops_the_old_images_vectors_and_bumps_its_generation(
    catalog: Catalog,
) -> None:
    (old,) = catalog.record([_item("aa", "/p/a.png")])
    gen = catalog.generation("cnn")
    (new,) = catalog.record([_item("bb", "/p/a.png", 3.0)])
    assert catalog.vector_ids("cnn", "v1").tolist() == [new]
    assert catalog.images([old]) == {}
    assert catalog.generation("cnn") > gen


def test_one_sha_in_a_batch_is_created_once_and_stored_content_is_not_created(
    catalog: Catalog,
) -> None:
    (stored,) = catalog.record([_item("aa", "/p/a.png")])
    batch = [_item("aa", "/p/a2.png"), _item("bb", "/p/b.png"), _item("bb", "/p/b2.png")]
    ids = catalog.record(batch)
    assert [item.created for item in batch] == [False, True, False]
    assert ids[0] == stored and ids[1] == ids[2] != stored
    assert catalog.count_images() == 2


def test_one_path_twice_in_a_batch_ends_at_the_last_content(catalog: Catalog) -> None:
    first, last = _item("aa", "/p/a.png"), _item("bb", "/p/a.png", 2.0)
    last.size, last.mtime_ns = 99, 456
    gone, kept = catalog.record([first, last])
    assert (first.created, last.created) == (True, True)
    assert catalog.path_row("/p/a.png") == PathRow("/p/a.png", kept, 99, 456)
    assert catalog.images([gone]) == {}  # no path led to it any more: dropped
    assert catalog.vector_ids("cnn", "v1").tolist() == [kept]


def test_a_file_moved_in_the_batch_that_replaced_it_keeps_its_image(catalog: Catalog) -> None:
    # a.png was renamed z.png and a new a.png written; the run reads z.png's content as
    # stored (no vectors computed). Its image must keep its id and vectors, not be dropped
    # when a.png moves away from it and stored anew, empty, for z.png.
    (moved,) = catalog.record([_item("aa", "/p/a.png")])
    replaced, renamed = _item("bb", "/p/a.png", 2.0), _item("aa", "/p/z.png")
    renamed.vectors = {}
    ids = catalog.record([replaced, renamed])
    assert ids[1] == moved and not renamed.created
    assert sorted(catalog.vector_ids("cnn", "v1").tolist()) == sorted(ids)
    assert catalog.count_images() == 2


def test_batches_larger_than_a_statements_chunk_keep_order_and_flags(catalog: Catalog) -> None:
    half = CHUNK // 2  # each SHA-256 twice, far apart: in other chunks of every statement
    batch = [_item(f"{i % half:04x}", f"/p/{i}.png", float(i % half)) for i in range(2 * half)]
    ids = catalog.record(batch)
    assert [item.created for item in batch] == [True] * half + [False] * half
    assert ids[:half] == ids[half:] and len(set(ids)) == half
    assert catalog.count_paths() == 2 * half
    row = catalog.vectors_for("cnn", "v1", [ids[7]])[1].view(np.float32)
    assert row[0, 0] == 7.0


class _CountingHandle:
    """A transaction's handle that counts the statements run on it."""

    def __init__(self, db: Handle) -> None:
        self.db = db
        self.statements = 0

    def execute(self, sql: str, args: Sequence[Any] = (), /) -> Any:
        self.statements += 1
        return self.db.execute(sql, args)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> object:
        self.statements += 1
        return self.db.executemany(sql, rows)


def test_a_batch_takes_as_many_statements_for_one_image_as_for_many(
    database: Database[Handle], monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a shared catalog every statement is a network round trip.
    counts: list[int] = []
    begin = database.transaction

    @contextmanager
    def counted() -> Iterator[Handle]:
        with begin() as db:
            handle = _CountingHandle(db)
            yield handle
        counts.append(handle.statements)

    monkeypatch.setattr(database, "transaction", counted)
    catalog = SqlCatalog(database)
    catalog.record([_item("00", "/p/0.png")])
    catalog.record([_item(f"{i:02x}", f"/p/{i}.png") for i in range(1, 64)])
    catalog.record([_item(f"{i:02x}", f"/p/{i}.png") for i in range(1, 2)])
    catalog.record([_item(f"{i:02x}", f"/p/{i}.png") for i in range(64)])
    assert counts[0] == counts[1] and counts[2] == counts[3]


def test_paths_under_is_a_folder_prefix(catalog: Catalog) -> None:
    catalog.record([_item("aa", "/p/x/a.png"), _item("bb", "/p/xy/b.png"), _item("cc", "/p/x")])
    assert catalog.paths_under("/p/x") == ["/p/x", "/p/x/a.png"]


def test_image_pages_go_either_way_and_keep_to_a_folder(catalog: Catalog) -> None:
    # /p/x: a.png and its copy, and a subfolder; /p/xy is a sibling, not inside /p/x.
    paths = ["/p/x/a.png", "/p/xy/b.png", "/p/x/sub/c.png", "/p/d.png", "/p/x/a-copy.png"]
    ids = catalog.record([_item(sha, p) for sha, p in zip("abcda", paths, strict=True)])
    a, b, c, d = ids[:4]

    def page(offset: int, limit: int, **kw: Any) -> list[int]:
        return [row.id for row in catalog.image_page(offset, limit, **kw)]

    assert page(0, 10) == [a, b, c, d]
    assert page(0, 10, newest=True) == [d, c, b, a]
    assert page(1, 2, newest=True) == [c, b]
    assert page(0, 10, newest=True, folder="/p/x") == [c, a]
    assert page(1, 10, folder="/p/x") == [c]
    assert page(0, 10, folder="/p/x/sub/c.png") == [c]
    assert page(0, 10, folder="/nowhere") == []
    # Keyset: the images after one in the order, either way, in a folder or not.
    assert page(0, 10, after=b) == [c, d]
    assert page(0, 1, newest=True, after=c) == [b]
    assert page(0, 10, newest=True, after=c, folder="/p/x") == [a]
    assert page(0, 10, newest=True, after=a) == []
    assert catalog.count_images() == 4
    assert catalog.count_images(folder="/p/x") == 2  # a.png and a-copy.png are one image
    assert catalog.count_images(folder="/p") == 4
    assert catalog.count_images(folder="/p/x/sub") == 1
    assert catalog.count_images(folder="/nowhere") == 0
    # Each folder holding a path, with the images under it (subfolders included).
    assert catalog.folders() == [("/p", 4), ("/p/x", 2), ("/p/x/sub", 1), ("/p/xy", 1)]


def test_an_image_in_several_folders_counts_once_in_each_above_them(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql_catalog, "FOLDER_RANGE", 2)  # paths read over several ranges
    paths = ["/q/one/a.png", "/q/two/b.png", "/q/two/deep/c.png", "/r/d.png", "/q/two/a.png"]
    catalog.record([_item(sha, p) for sha, p in zip("abcda", paths, strict=True)])
    assert catalog.folders() == [
        ("/q/one", 1),
        ("/q/two", 3),  # a, b and c
        ("/q/two/deep", 1),
        ("/r", 1),
    ]


def test_folders_of_names_that_are_not_utf8(catalog: Catalog) -> None:
    odd = os.fsdecode(b"/p/caf\xe9")
    catalog.record([_item("aa", f"{odd}/a.png"), _item("bb", "/p/b.png")])
    assert catalog.folders() == [("/p", 2), (odd, 1)]
    assert [row.paths for row in catalog.image_page(0, 10, folder=odd)] == [(f"{odd}/a.png",)]
    assert catalog.count_images(folder=odd) == 1


def test_missing_vectors_names_what_to_compute(catalog: Catalog) -> None:
    (i,) = catalog.record([_item("aa", "/p/a.png")])
    assert catalog.missing_vectors(i, {"cnn": "v1"}) == []
    assert catalog.missing_vectors(i, {"cnn": "v2", "color": "c1"}) == ["cnn", "color"]


def test_failed_transaction_leaves_nothing(catalog: Catalog) -> None:
    bad = _item("bb", "/p/b.png")
    bad.sha256 = None  # type: ignore[assignment]  # refused by NOT NULL, in any database
    with pytest.raises(Exception):  # noqa: B017
        catalog.record([_item("aa", "/p/a.png"), bad])
    assert catalog.count_images() == 0


def _schema(path: Path) -> str:
    """The SQL of every table, index and trigger in the SQLite file ``path``, in name order."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
        return "\n".join(f"{kind} {name} on {table}: {sql}" for kind, name, table, sql in rows)
    finally:
        db.close()


def test_a_chunk_counts_once_however_often_it_is_finished(catalog: Catalog) -> None:
    store = catalog.service
    job = store.add_job("index", "/photos")
    store.add_chunks(job.id, [3, 2])
    assert (store.job(job.id) or job).total == 5
    assert store.finish_chunk(job.id, 1, report={"added": 2})
    # A redelivered task finishes its chunk again: nothing changes.
    assert not store.finish_chunk(job.id, 1, report={"added": 2})
    half = store.job(job.id)
    assert half is not None and (half.done, half.status) == (2, "running")
    assert store.finish_chunk(job.id, 0, error="disk gone")
    whole = store.job(job.id)
    assert whole is not None and (whole.done, whole.status) == (5, "done")
    chunks = store.chunks(job.id)
    assert [(c.chunk, c.files, c.status, c.error) for c in chunks] == [
        (0, 3, "failed", "disk gone"),
        (1, 2, "done", None),
    ]
    assert chunks[1].report == {"added": 2}


def test_the_first_value_stored_under_a_meta_key_stays(catalog: Catalog) -> None:
    store = catalog.service
    assert store.meta("reference") is None
    assert store.put_meta_once("reference", b"\x00first") == b"\x00first"
    assert store.put_meta_once("reference", b"second") == b"\x00first"
    assert store.meta("reference") == b"\x00first"


# SHA-256 of ``_schema`` of a new catalog after each step, as released (recorded from
# a3f3aeb): a step's text is frozen, so these never change; a new step adds its own.
RELEASED_SCHEMAS = {
    1: "f0e25d9bbf2346b8a42d1130798e50f9fcb267a5bfc31291c1afadcb4f83ed16",
    2: "a5b991923d3d9c57f5ddf39b070d8d2d3a480d614e4943ca7dc870514a24905e",
    3: "124476ec6674e21de0ca0f70b7dc4c5697ab829e48ef3a24e16241ee17a54809",
    4: "03722b0423f6dbf1360a8fd55d07bc3394a9eeefbcbbc6e6a2bee9ae68e6b6fa",
    5: "bb4b69985a72971c25ed2689367ef5f809a0dd29a54f805e5c0a4aa52d142e46",
}


def test_the_steps_are_numbered_in_order_and_each_has_its_schema_recorded() -> None:
    assert [step.version for step in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))
    assert sorted(RELEASED_SCHEMAS) == list(range(1, SCHEMA_VERSION + 1))


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION + 1))
def test_each_released_step_still_gives_its_schema(tmp_path: Path, version: int) -> None:
    path = tmp_path / "catalog.sqlite3"
    SqliteDatabase(path, MIGRATIONS[:version]).close()
    digest = hashlib.sha256(_schema(path).encode()).hexdigest()
    assert digest == RELEASED_SCHEMAS[version], (
        f"schema step {version} changed: released steps are frozen, add a new one instead"
    )


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION))
def test_an_older_catalog_migrates_to_the_schema_of_a_new_one(tmp_path: Path, version: int) -> None:
    old, new = tmp_path / "old.sqlite3", tmp_path / "new.sqlite3"
    database = SqliteDatabase(old, MIGRATIONS[:version])
    assert database.schema_version() == version
    with database.transaction() as db:
        db.execute(
            "INSERT INTO images (sha256, width, height, format, size, added_at) "
            "VALUES ('ab', 1, 1, 'PNG', 1, 0)"
        )
    database.close()
    migrated = SqlCatalog(SqliteDatabase(old))
    try:
        assert migrated.schema_version() == SCHEMA_VERSION
        found = migrated.image_by_sha("ab")
        assert found is not None and (found.width, found.format) == (1, "PNG")
        assert migrated.faces.people() == []
    finally:
        migrated.close()
    SqlCatalog(SqliteDatabase(new)).close()
    assert _schema(old) == _schema(new)


def _refusal(path: Path, found: int, supported: int) -> str:
    return re.escape(
        f"{path}: catalog schema version {found} is newer than this lookalike supports "
        f"({supported}); upgrade lookalike"
    )


def test_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    SqlCatalog(SqliteDatabase(path)).close()
    schema = _schema(path)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(SchemaTooNew, match=_refusal(path, SCHEMA_VERSION + 1, SCHEMA_VERSION)):
        SqlCatalog(SqliteDatabase(path))
    # Code that knows fewer steps than the file has (an older lookalike) refuses it alike.
    with pytest.raises(SchemaTooNew, match=_refusal(path, SCHEMA_VERSION + 1, 2)):
        SqliteDatabase(path, MIGRATIONS[:2])
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    db.close()
    assert _schema(path) == schema


# -- the rest of the catalog's database, on every backend --------------------------------


def _face(x: int, value: float) -> FaceRecord:
    return FaceRecord(
        (x, 0, x + 10, 10),
        0.9,
        0.8,
        True,
        ["frontal"],
        [(1.5, 2.5)],
        np.full(128, value, np.float32),
        b"\xff\xd8jpeg",
    )


def _photo(sha: str, path: str, *values: float) -> NewImage:
    item = _item(sha, path)
    item.faces = FaceScan("f1", [_face(20 * i, v) for i, v in enumerate(values)])
    return item


def test_names_that_are_not_utf8_are_stored_and_found_exactly(catalog: Catalog) -> None:
    odd = os.fsdecode(b"/p/x/caf\xe9.png")  # a Latin-1 name, as os.walk gives it
    catalog.record([_item("aa", odd), _item("bb", "/p/x/b.png"), _item("cc", "/p/xy.png")])
    assert sorted(catalog.paths_under("/p/x")) == sorted([odd, "/p/x/b.png"])
    row = catalog.path_row(odd)
    assert row is not None and os.fsencode(row.path) == b"/p/x/caf\xe9.png"
    assert catalog.remove_paths([odd]) != []


def test_vector_batches_are_the_vectors_in_bounded_pieces(catalog: Catalog) -> None:
    catalog.record([_item(f"{i:02x}", f"/p/{i}.png", float(i)) for i in range(7)])
    ids, raw = catalog.vectors("cnn", "v1")
    batches = list(catalog.vector_batches("cnn", "v1", 3))
    assert [len(b) for b, _ in batches] == [3, 3, 1]
    assert np.array_equal(np.concatenate([b for b, _ in batches]), ids)
    assert np.array_equal(np.concatenate([r for _, r in batches]), raw)
    assert list(catalog.vector_batches("cnn", "v2", 3)) == []


def test_faces_go_with_their_image_and_bump_the_face_generation(catalog: Catalog) -> None:
    faces = catalog.faces
    (image_id,) = catalog.record([_photo("aa", "/p/a.png", 0.1, 0.2)])
    assert faces.face_scanned(image_id, "f1")
    stored = faces.faces_of_image(image_id)
    assert [(f.idx, f.box, f.flags, f.path) for f in stored] == [
        (0, (0, 0, 10, 10), ("frontal",), "/p/a.png"),
        (1, (20, 0, 30, 10), ("frontal",), "/p/a.png"),
    ]
    ids, rows = faces.vectors("face", "f1")
    assert rows.view(np.float32)[1, 0] == np.float32(0.2)
    assert [len(b) for b, _ in faces.vector_batches("face", "f1", 1)] == [1, 1]
    assert faces.count_faces("f1") == {
        "faces": 2,
        "usable": 2,
        "named": 0,
        "clustered": 0,
        "unprocessed": 2,
    }
    before = faces.generation("face")
    catalog.remove_paths(["/p/a.png"])
    assert faces.faces(ids.tolist()) == {}
    assert faces.generation("face") > before


def test_people_clusters_and_examples_on_the_catalogs_database(catalog: Catalog) -> None:
    faces = catalog.faces
    (image_id,) = catalog.record([_photo("aa", "/p/a.png", 0.1, 0.2, 0.3)])
    f0, f1, f2 = (f.id for f in faces.faces_of_image(image_id))
    ids = faces.assign_clusters([f0, f1], [-1, -1])
    (cluster,) = faces.clusters()
    assert cluster.id == ids[-1] and cluster.size == 2
    gallery = faces.generation("gallery")
    eileen = faces.add_person("Straße")
    with pytest.raises(Conflict):
        faces.add_person("STRASSE")
    faces.set_person([f0], eileen.id, confirmed=True)
    assert faces.generation("gallery") > gallery
    assert faces.clusters()[0].size == 1  # named, f0 left its cluster
    assert len(faces.gallery("f1").ids) == 1
    sam = faces.add_person("Sam")
    with pytest.raises(Conflict):
        faces.rename_person(sam.id, "strasse")
    faces.rename_person(sam.id, "Samuel")
    example = NewExample("ex", 0, "e.jpg", "f1", _face(0, 0.5))
    faces.add_examples(eileen.id, [example])
    faces.add_examples(sam.id, [example])  # the same face given for both
    faces.merge_people(eileen.id, [sam.id])
    assert [e.sha256 for e in faces.examples(eileen.id)] == ["ex"]  # kept once
    assert [p.name for p in faces.people()] == ["Straße"]
    with pytest.raises(NotFound):
        faces.set_person([f2 + 100], eileen.id, confirmed=True)
    assert faces.reset_clusters() == 1
    assert faces.count_faces("f1")["named"] == 1  # confirmed names survive


def test_images_of_a_person_and_of_a_cluster_are_paged_newest_first(catalog: Catalog) -> None:
    faces = catalog.faces
    photos = [_photo(f"{i:02x}", f"/p/{i}.png", 0.1, 0.2, 0.3) for i in range(4)]
    image_ids = catalog.record(photos)
    by_image = [[f.id for f in faces.faces_of_image(i)] for i in image_ids]
    sam = faces.add_person("Sam")
    # Sam twice in the first photo, once in the third; a cluster in the second and fourth.
    faces.set_person([by_image[0][0], by_image[0][2], by_image[2][1]], sam.id, confirmed=True)
    (cluster,) = set(faces.assign_clusters([by_image[1][1], by_image[3][0]], [-1, -1]).values())

    page = faces.images_of_person(sam.id, 0, 10)
    assert page.total == 2
    assert page.images == [
        (image_ids[2], (by_image[2][1],)),
        (image_ids[0], (by_image[0][0], by_image[0][2])),
    ]
    assert faces.images_of_person(sam.id, 1, 1).images == page.images[1:]
    assert faces.images_of_person(sam.id, 2, 10).images == []
    assert faces.images_of_cluster(cluster, 0, 1).images == [(image_ids[3], (by_image[3][0],))]
    assert faces.images_of_cluster(cluster, 0, 1).total == 2
    empty = faces.images_of_person(sam.id + 1, 0, 10)
    assert (empty.total, empty.images) == (0, [])


def test_keys_and_jobs_on_the_catalogs_database(catalog: Catalog) -> None:
    service = catalog.service
    key = service.add_key("ci", "pre", "digest", "read")
    assert service.key_by_prefix("pre") == key
    assert service.revoke_key(key.id) and not service.revoke_key(key.id)
    job = service.add_job("index", "/photos")
    service.update_job(job.id, status="running", done=1, total=2, report={"added": 1})
    found = service.job(job.id)
    assert found is not None and (found.status, found.report) == ("running", {"added": 1})
    assert [j.id for j in service.jobs()] == [job.id]
