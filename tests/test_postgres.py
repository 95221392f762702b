"""The shared PostgreSQL catalog: what only it has (writers in many processes, a server that
may not answer, its own schema chain, nodes that share it). The catalog suite itself runs on
it too (tests/test_store.py)."""

from __future__ import annotations

import multiprocessing
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from click.testing import CliRunner

import lookalike
from lookalike.backends import open_catalog
from lookalike.cli.main import cli
from lookalike.errors import SchemaTooNew, Unavailable
from lookalike.settings import get_settings
from lookalike.store.base import NewImage
from lookalike.store.migrations.postgres import MIGRATIONS, SCHEMA_VERSION
from lookalike.store.postgres_db import PostgresDatabase
from lookalike.store.sql_catalog import SqlCatalog
from tests import servers

pytestmark = pytest.mark.postgres

IMAGES = 40
WRITERS = 4


def _items(order: int) -> list[NewImage]:
    """The same IMAGES images, each writer in its own order, under its own paths."""
    shas = [f"{i:064x}" for i in range(IMAGES)]
    if order % 2:
        shas.reverse()
    row = np.ones(4, np.float32)
    return [
        NewImage(sha, f"/node{order}/{sha[-4:]}.png", 1, 1, 4, 4, "PNG", {"cnn": ("v1", row)})
        for sha in shas
    ]


def _record_all(url: str, order: int) -> int:
    """Record every image in batches of 5, from a new process; returns how many it created."""
    catalog = SqlCatalog(PostgresDatabase(url))
    try:
        items = _items(order)
        for start in range(0, len(items), 5):
            catalog.record(items[start : start + 5])
        return sum(item.created for item in items)
    finally:
        catalog.close()


def test_writers_in_many_processes_store_each_image_once(postgres_url: str) -> None:
    # A new, empty database: the processes also race to create the schema.
    name = "lookalike_race"
    servers.postgres_admin(postgres_url, f"CREATE DATABASE {name}")
    url = servers.postgres_database(postgres_url, name)
    try:
        with multiprocessing.get_context("spawn").Pool(WRITERS) as pool:
            created = pool.starmap(_record_all, [(url, order) for order in range(WRITERS)])
        assert sum(created) == IMAGES  # each image created by exactly one writer
        catalog = SqlCatalog(PostgresDatabase(url))
        try:
            assert catalog.count_images() == IMAGES
            assert catalog.count_paths() == IMAGES * WRITERS
            assert len(catalog.vector_ids("cnn", "v1")) == IMAGES
            assert len(catalog.exact_duplicates()) == IMAGES
        finally:
            catalog.close()
    finally:
        servers.postgres_admin(postgres_url, f"DROP DATABASE {name} WITH (FORCE)")


def _where(url: str) -> str:
    return re.escape(url)


def test_a_newer_schema_is_refused_naming_the_catalog(postgres_catalog_url: str) -> None:
    url = postgres_catalog_url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = %s", [SCHEMA_VERSION + 1])
    refusal = (
        f"{_where(url)}: catalog schema version {SCHEMA_VERSION + 1} is newer than this "
        f"lookalike supports \\({SCHEMA_VERSION}\\); upgrade lookalike"
    )
    with pytest.raises(SchemaTooNew, match=refusal):
        PostgresDatabase(url)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT version FROM schema_version").fetchone()
    assert row == (SCHEMA_VERSION + 1,)  # left alone


def test_connections_the_server_dropped_are_replaced_without_an_error(
    postgres_catalog_url: str,
) -> None:
    # A restart, or an idle timeout, ends the pooled connections under the catalog's feet:
    # the next read and write each find theirs dead and run on a new one.
    database = PostgresDatabase(postgres_catalog_url)
    catalog = SqlCatalog(database)
    try:
        catalog.record(_items(0)[:2])
        for _ in range(2):
            with psycopg.connect(postgres_catalog_url, autocommit=True) as admin:
                dropped = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE pid <> pg_backend_pid() AND datname = current_database()"
                ).fetchone()
            assert dropped is not None and dropped[0] >= 1
            assert len(catalog.image_page(0, 10)) == 2
            assert catalog.record(_items(2)[:2]) == catalog.record(_items(0)[:2])
    finally:
        catalog.close()


def test_the_chain_is_numbered_in_order() -> None:
    assert [step.version for step in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))


def _unavailable(url: str, settings_dir: Path) -> str:
    """The one-line message opening the catalog at ``url`` fails with."""
    with pytest.raises(Unavailable) as caught:
        open_catalog(get_settings(data_dir=settings_dir, catalog_url=url))
    message = caught.value.message
    assert "\n" not in message
    return message


def test_a_catalog_that_cannot_be_reached_is_one_line_without_the_password(
    postgres_url: str, tmp_path: Path
) -> None:
    base = postgres_url.rsplit("@", 1)[1].rsplit("/", 1)[0]  # 127.0.0.1:port
    port = servers.free_port()
    cases = {
        f"postgresql://alice:s3cret@127.0.0.1:{port}/photos": "refused",
        f"postgresql://postgres:s3cret@{base}/no_such_db": 'database "no_such_db" does not exist',
        f"postgresql://nobody:s3cret@{base}/postgres": 'role "nobody" does not exist',
        "postgresql://alice:s3cret@127.0.0.1:notaport/photos": "invalid integer value",
        "postgresql://alice:s3cret@127.0.0.1/photos?bogus=1": "malformed URL",
    }
    for url, reason in cases.items():
        message = _unavailable(url, tmp_path)
        assert message.startswith("catalog postgresql://") and reason in message, message
        assert "s3cret" not in message
    assert "not a PostgreSQL URL" in _unavailable("mysql://alice:s3cret@db/photos", tmp_path)


def test_the_cli_says_so_in_one_line(tmp_path: Path) -> None:
    url = f"postgresql://alice:s3cret@127.0.0.1:{servers.free_port()}/photos"
    data = tmp_path / "data"
    result = CliRunner().invoke(cli, ["--catalog-url", url, "status", "--data-dir", str(data)])
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("lookalike: error: catalog postgresql://alice@127.0.0.1:"), line
    assert "s3cret" not in line
    assert not (data / "catalog.sqlite3").exists()  # no embedded fallback


def _cut_off(admin_url: str, url: str) -> None:
    """Make the database at ``url`` go away: its connections ended, new ones refused."""
    name = url.rsplit("/", 1)[1]
    servers.postgres_admin(admin_url, f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false")
    servers.postgres_admin(
        admin_url,
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
    )


def _restore(admin_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    servers.postgres_admin(admin_url, f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true")


@pytest.mark.slow
def test_a_catalog_going_away_stops_the_run_and_keeps_what_was_committed(
    postgres_url: str, postgres_catalog_url: str, tmp_path: Path
) -> None:
    url = postgres_catalog_url
    catalog = SqlCatalog(PostgresDatabase(url))
    try:
        catalog.record(_items(0)[:5])
        _cut_off(postgres_url, url)
        with pytest.raises(Unavailable, match=f"^catalog {_where(url)}: ") as caught:
            catalog.record(_items(0)[5:10])
        assert "\n" not in caught.value.message
        _restore(postgres_url, url)
        # The pool replaced its dead connections: the catalog works again, and holds the
        # committed batch, nothing of the one that failed.
        assert catalog.count_images() == 5
        assert len(catalog.vector_ids("cnn", "v1")) == 5
    finally:
        catalog.close()


@pytest.fixture()
def two_nodes(
    postgres_catalog_url: str, tmp_path: Path
) -> Iterator[tuple[lookalike.Lookalike, lookalike.Lookalike]]:
    """Two engines, each with its own data folder (and index files), one shared catalog."""
    settings = {"catalog_url": postgres_catalog_url, "faces": False}
    with (
        lookalike.open(tmp_path / "a", **settings) as a,
        lookalike.open(tmp_path / "b", **settings) as b,
    ):
        yield a, b


@pytest.mark.slow
def test_an_image_indexed_on_one_node_is_found_on_another_within_a_second(
    two_nodes: tuple[lookalike.Lookalike, lookalike.Lookalike], photo_dir: Path
) -> None:
    a, b = two_nodes
    query = sorted(photo_dir.iterdir())[0]
    assert b.search([query], k=1)[0].results == []  # B's models loaded, its index empty
    report = a.index([photo_dir])
    assert not report.failed
    indexed = time.monotonic()
    (found,) = b.search([query], k=1)
    assert time.monotonic() - indexed < 1.0
    assert found.results[0].path == str(query) and found.results[0].score > 0.99
    assert b.status().images == len(list(photo_dir.iterdir()))
    assert (b.settings.data_dir / "index" / "cnn.idx").exists()  # B's own index file
    assert not (b.settings.data_dir / "catalog.sqlite3").exists()


@pytest.mark.slow
def test_an_index_run_stops_with_one_error_when_the_catalog_goes_away(
    postgres_url: str, postgres_catalog_url: str, photo_dir: Path, tmp_path: Path
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for i, photo in enumerate(sorted(photo_dir.iterdir())):
        folder = first if i < 2 else second
        folder.mkdir(exist_ok=True)
        shutil.copy(photo, folder / photo.name)
    with lookalike.open(tmp_path / "data", catalog_url=postgres_catalog_url, faces=False) as lk:
        lk.index([first])
        _cut_off(postgres_url, postgres_catalog_url)
        # Not one failure per file: the run itself cannot go on.
        with pytest.raises(Unavailable, match=f"^catalog {_where(postgres_catalog_url)}: "):
            lk.index([second])
        _restore(postgres_url, postgres_catalog_url)
        assert sorted(lk.catalog.all_paths()) == sorted(str(p) for p in first.iterdir())
