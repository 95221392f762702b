"""The SQLite catalog: idempotent writes, orphans, generations, schema versions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from lookalike.errors import SchemaTooNew
from lookalike.store.base import NewImage
from lookalike.store.sqlite import SCHEMA_VERSION, SqliteCatalog


def _item(sha: str, path: str, value: float = 1.0) -> NewImage:
    row = np.full(4, value, dtype=np.float32)
    return NewImage(sha, path, 10, 123, 8, 6, "PNG", {"cnn": ("v1", row)})


@pytest.fixture()
def catalog(tmp_path: Path) -> SqliteCatalog:
    return SqliteCatalog(tmp_path / "catalog.sqlite3")


def test_same_content_twice_is_one_image_with_two_paths(catalog: SqliteCatalog) -> None:
    first, second = _item("aa", "/p/one.png"), _item("aa", "/p/two.png")
    a, b = catalog.record([first, second])
    assert a == b
    assert (first.created, second.created) == (True, False)  # only the first made the image
    assert catalog.count_images() == 1
    (dup,) = catalog.exact_duplicates()
    assert dup.paths == ("/p/one.png", "/p/two.png")


def test_recording_again_changes_nothing(catalog: SqliteCatalog) -> None:
    catalog.record([_item("aa", "/p/one.png")])
    gen = catalog.generation("cnn")
    catalog.record([_item("aa", "/p/one.png")])
    assert catalog.generation("cnn") == gen
    assert catalog.count_images() == 1


def test_vectors_round_trip_and_generation_bumps(catalog: SqliteCatalog) -> None:
    assert catalog.generation("cnn") == 0
    catalog.record([_item("aa", "/p/a.png", 1.0), _item("bb", "/p/b.png", 2.0)])
    _ids, raw = catalog.vectors("cnn", "v1")
    rows = raw.view(np.float32)
    assert rows.shape == (2, 4)
    assert rows[1, 0] == 2.0
    assert catalog.generation("cnn") > 0
    assert len(catalog.vectors("cnn", "v2")[0]) == 0  # another version is never mixed in


def test_removing_last_path_deletes_image_and_vectors(catalog: SqliteCatalog) -> None:
    catalog.record([_item("aa", "/p/a.png"), _item("aa", "/p/a2.png")])
    assert catalog.remove_paths(["/p/a.png"]) == []  # still reachable through a2
    gen = catalog.generation("cnn")
    (gone,) = catalog.remove_paths(["/p/a2.png"])
    assert catalog.count_images() == 0
    assert len(catalog.vector_ids("cnn", "v1")) == 0
    assert catalog.generation("cnn") > gen
    assert gone > 0


def test_changed_file_content_drops_old_image(catalog: SqliteCatalog) -> None:
    catalog.record([_item("aa", "/p/a.png")])
    catalog.record([_item("bb", "/p/a.png", 3.0)])
    assert catalog.count_images() == 1
    assert catalog.image_by_sha("aa") is None


def test_paths_under_is_a_folder_prefix(catalog: SqliteCatalog) -> None:
    catalog.record([_item("aa", "/p/x/a.png"), _item("bb", "/p/xy/b.png"), _item("cc", "/p/x")])
    assert catalog.paths_under("/p/x") == ["/p/x", "/p/x/a.png"]


def test_missing_vectors_names_what_to_compute(catalog: SqliteCatalog) -> None:
    (i,) = catalog.record([_item("aa", "/p/a.png")])
    assert catalog.missing_vectors(i, {"cnn": "v1"}) == []
    assert catalog.missing_vectors(i, {"cnn": "v2", "color": "c1"}) == ["cnn", "color"]


def test_failed_transaction_leaves_nothing(catalog: SqliteCatalog) -> None:
    bad = _item("bb", "/p/b.png")
    bad.vectors = {"cnn": (["not a version"], np.zeros(4, np.float32))}  # type: ignore[dict-item]
    with pytest.raises(Exception):  # noqa: B017
        catalog.record([_item("aa", "/p/a.png"), bad])
    assert catalog.count_images() == 0


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    SqliteCatalog(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(SchemaTooNew, match="newer"):
        SqliteCatalog(path)
