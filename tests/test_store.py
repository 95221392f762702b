"""The catalog: idempotent writes, orphans, generations, schema versions and migrations.

The catalog tests take their catalog from the ``database`` fixture, one per backend, so every
backend runs the same suite; the migration tests are SQLite's own.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lookalike.errors import SchemaTooNew
from lookalike.store.base import Catalog, NewImage
from lookalike.store.database import Database
from lookalike.store.migrations.sqlite import MIGRATIONS, SCHEMA_VERSION
from lookalike.store.sqlite import SqliteCatalog
from lookalike.store.sqlite_db import SqliteDatabase

# Backend name -> an empty catalog database in a temporary folder.
DATABASES: dict[str, Callable[[Path], Database[Any]]] = {
    "sqlite": lambda folder: SqliteDatabase(folder / "catalog.sqlite3"),
}


def _item(sha: str, path: str, value: float = 1.0) -> NewImage:
    row = np.full(4, value, dtype=np.float32)
    return NewImage(sha, path, 10, 123, 8, 6, "PNG", {"cnn": ("v1", row)})


@pytest.fixture(params=sorted(DATABASES))
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database[Any]]:
    opened = DATABASES[request.param](tmp_path)
    yield opened
    opened.close()


@pytest.fixture()
def catalog(database: Database[Any]) -> Catalog:
    assert isinstance(database, SqliteDatabase)  # the only backend so far
    return SqliteCatalog(database)


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


def test_paths_under_is_a_folder_prefix(catalog: Catalog) -> None:
    catalog.record([_item("aa", "/p/x/a.png"), _item("bb", "/p/xy/b.png"), _item("cc", "/p/x")])
    assert catalog.paths_under("/p/x") == ["/p/x", "/p/x/a.png"]


def test_missing_vectors_names_what_to_compute(catalog: Catalog) -> None:
    (i,) = catalog.record([_item("aa", "/p/a.png")])
    assert catalog.missing_vectors(i, {"cnn": "v1"}) == []
    assert catalog.missing_vectors(i, {"cnn": "v2", "color": "c1"}) == ["cnn", "color"]


def test_failed_transaction_leaves_nothing(catalog: Catalog) -> None:
    bad = _item("bb", "/p/b.png")
    bad.vectors = {"cnn": (["not a version"], np.zeros(4, np.float32))}  # type: ignore[dict-item]
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
    migrated = SqliteCatalog.open(old)
    try:
        assert migrated.schema_version() == SCHEMA_VERSION
        found = migrated.image_by_sha("ab")
        assert found is not None and (found.width, found.format) == (1, "PNG")
        assert migrated.faces.people() == []
    finally:
        migrated.close()
    SqliteCatalog.open(new).close()
    assert _schema(old) == _schema(new)


def _refusal(path: Path, found: int, supported: int) -> str:
    return re.escape(
        f"{path}: catalog schema version {found} is newer than this lookalike supports "
        f"({supported}); upgrade lookalike"
    )


def test_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    SqliteCatalog.open(path).close()
    schema = _schema(path)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(SchemaTooNew, match=_refusal(path, SCHEMA_VERSION + 1, SCHEMA_VERSION)):
        SqliteCatalog.open(path)
    # Code that knows fewer steps than the file has (an older lookalike) refuses it alike.
    with pytest.raises(SchemaTooNew, match=_refusal(path, SCHEMA_VERSION + 1, 2)):
        SqliteDatabase(path, MIGRATIONS[:2])
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    db.close()
    assert _schema(path) == schema
