"""Shared fixtures: photos built here or shipped in scikit-image's wheel, never downloaded."""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from PIL import Image, ImageFilter

import lookalike
from lookalike.search.engine import Lookalike
from lookalike.settings import clear_settings_cache
from tests import servers


@pytest.fixture(scope="session", autouse=True)
def isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """No ``LOOKALIKE_*`` variable of the developer's leaks in; the model cache, other
    caches and the default data folder live in a temporary folder for the whole session
    (converted models are made once per session, never in the user's own cache).
    Subprocesses and servers started by tests inherit the same environment."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("LOOKALIKE_"):
                mp.delenv(name)
        mp.setenv("XDG_DATA_HOME", str(home / "share"))
        mp.setenv("XDG_CACHE_HOME", str(home / "cache"))
        mp.setenv("LOOKALIKE_MODEL_CACHE_DIR", str(home / "models"))
        clear_settings_cache()
        yield home
    clear_settings_cache()


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """Settings read from the environment are read again by each test."""
    clear_settings_cache()
    yield
    clear_settings_cache()


SAMPLES = ("astronaut", "chelsea", "rocket", "coffee", "motorcycle_left", "hubble_deep_field")


def skimage_data() -> Path:
    """The photo folder inside scikit-image's wheel (no download involved)."""
    spec = importlib.util.find_spec("skimage")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def converted_models(folder: Path) -> list[str]:
    """The models converted into a model cache folder, by kind: ``["face", "mmod"]`` once
    the face ResNet and the CNN detector have run (anything else there shows up too)."""
    return sorted(p.name.split("-")[1] if p.suffix == ".onnx" else p.name for p in folder.iterdir())


def sample(name: str) -> Image.Image:
    """A scikit-image sample photo (file stem, e.g. "chelsea") as an RGB PIL image."""
    (path,) = skimage_data().glob(f"{name}.*")
    with Image.open(path) as image:
        return image.convert("RGB")


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six distinct colour photos as JPEG/PNG files, plus nothing else."""
    folder = tmp_path_factory.mktemp("photos")
    for i, name in enumerate(SAMPLES):
        image = sample(name)
        if i % 2:
            image.save(folder / f"{name}.png")
        else:
            image.save(folder / f"{name}.jpg", quality=92)
    return folder


def variants(image: Image.Image) -> dict[str, Image.Image]:
    """Near-duplicate copies of ``image``: the kinds ``duplicates`` must link."""
    w, h = image.size
    return {
        "small": image.resize((w // 3, h // 3)),
        "crop": image.crop((w // 10, h // 10, w - w // 10, h - h // 10)),
        "mirror": image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "rot90": image.transpose(Image.Transpose.ROTATE_90),
        "blur": image.filter(ImageFilter.GaussianBlur(2)),
    }


@pytest.fixture()
def engine(tmp_path: Path) -> Iterator[Lookalike]:
    with lookalike.open(tmp_path / "data") as lk:
        yield lk


# -- real servers (tests marked postgres / redis) ---------------------------------------


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of a PostgreSQL server started for this test session (tests/servers.py)."""
    why = servers.missing_postgres()
    if why:
        pytest.skip(why)
    with servers.postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_template(postgres_url: str) -> str:
    """The name of a database on the session's server holding a new, migrated catalog:
    what ``postgres_catalog_url`` copies (CREATE DATABASE ... TEMPLATE, much faster than
    migrating each time)."""
    from lookalike.store.postgres_db import PostgresDatabase

    name = "lookalike_template"
    servers.postgres_admin(postgres_url, f"CREATE DATABASE {name}")
    PostgresDatabase(servers.postgres_database(postgres_url, name)).close()
    return name


@pytest.fixture()
def postgres_catalog_url(postgres_url: str, postgres_template: str) -> Iterator[str]:
    """The URL of a new database with a new, empty catalog, of this test alone (dropped
    after)."""
    name = f"lookalike_{uuid.uuid4().hex}"
    servers.postgres_admin(postgres_url, f"CREATE DATABASE {name} TEMPLATE {postgres_template}")
    yield servers.postgres_database(postgres_url, name)
    servers.postgres_admin(postgres_url, f"DROP DATABASE {name} WITH (FORCE)")


def _redis_started(start: Callable[[], AbstractContextManager[str]]) -> Iterator[str]:
    """The URL of the Redis ``start()`` starts, for the session (skipped without Redis)."""
    why = servers.missing_redis()
    if why:
        pytest.skip(why)
    with start() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a Redis server started for this test session (tests/servers.py)."""
    yield from _redis_started(lambda: servers.redis_server(tmp_path_factory.mktemp("redis")))


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a 3-node Redis Cluster started for this test session (tests/servers.py)."""
    folder = tmp_path_factory.mktemp("redis-cluster")
    yield from _redis_started(lambda: servers.redis_cluster(folder))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--screenshots",
        type=Path,
        default=None,
        help="folder the browser tests keep the README's screenshots in "
        "(docs/screenshots to refresh them; default: a temporary folder)",
    )
