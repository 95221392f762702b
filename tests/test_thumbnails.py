"""Kept thumbnails follow the catalog: those of images that leave it are deleted, whichever
way they leave (an index run, ``remove``, a file whose content changed)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from PIL import Image

from lookalike import Lookalike, thumbnails


def _photo(path: Path, colour: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (48, 32), colour).save(path)
    return path


def _rewrite(path: Path, colour: tuple[int, int, int]) -> None:
    """Other content at the same path, its mtime a second later (whatever the filesystem's
    clock resolution)."""
    before = path.stat().st_mtime_ns
    _photo(path, colour)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def _kept(lk: Lookalike, path: Path) -> Path:
    """Make and keep the 128 px thumbnail of the indexed file ``path``; returns its file."""
    row = lk.catalog.path_row(str(path))
    assert row is not None
    image = lk.catalog.images([row.image_id])[row.image_id]
    thumbnails.thumbnail_jpeg(image, 128, lk.settings)
    kept = lk.settings.data_dir / "thumbnails" / image.sha256[:2] / f"{image.sha256}-128.jpg"
    assert kept.is_file()
    return kept


def test_thumbnails_of_images_that_leave_the_catalog_are_deleted(
    engine: Lookalike, tmp_path: Path
) -> None:
    album = tmp_path / "album"
    red = _photo(album / "red.png", (200, 0, 0))
    green = _photo(album / "green.png", (0, 200, 0))
    blue = _photo(album / "blue.png", (0, 0, 200))
    engine.index([album], descriptors=["phash"], faces=False, progress=False)
    kept = {p: _kept(engine, p) for p in (red, green, blue)}

    red.unlink()  # gone from the folder: the next index run drops it
    report = engine.index([album], descriptors=["phash"], faces=False, progress=False)
    assert report.removed == 1
    assert not kept[red].exists() and kept[green].exists() and kept[blue].exists()

    _rewrite(green, (0, 90, 0))  # same path, other content: the old content leaves
    report = engine.index([album], descriptors=["phash"], faces=False, progress=False)
    assert report.indexed == 1 and report.removed == 0
    assert not kept[green].exists() and kept[blue].exists()

    engine.remove([blue])
    assert not kept[blue].exists()


def test_prune_keeps_what_the_catalog_holds_and_fresh_partial_writes(
    engine: Lookalike, tmp_path: Path
) -> None:
    photo = _photo(tmp_path / "a.png", (10, 20, 30))
    engine.index([photo], descriptors=["phash"], faces=False, progress=False)
    kept = _kept(engine, photo)
    folder = kept.parent
    orphan = folder / f"{'0' * 64}-256.jpg"
    old_partial = folder / f".{'1' * 64}-128.jpg.x1y2.tmp"
    new_partial = folder / f".{'2' * 64}-128.jpg.z3w4.tmp"
    other = folder / "notes.txt"  # not the cache's: left alone
    for path in (orphan, old_partial, new_partial, other):
        path.write_bytes(b"x")
    hour_ago = time.time() - thumbnails.PARTIAL_AGE_S - 60
    os.utime(old_partial, (hour_ago, hour_ago))

    assert thumbnails.prune(engine.settings, engine.catalog.known_sha256) == 2
    assert kept.exists() and new_partial.exists() and other.exists()
    assert not orphan.exists() and not old_partial.exists()


def test_prune_without_a_thumbnail_folder_does_nothing(engine: Lookalike) -> None:
    assert thumbnails.prune(engine.settings, engine.catalog.known_sha256) == 0
    assert not (engine.settings.data_dir / "thumbnails").exists()


def test_a_run_that_only_adds_images_leaves_the_thumbnail_folder_unread(
    engine: Lookalike, tmp_path: Path
) -> None:
    # An upload is an index run of one new file: it must not list every kept thumbnail.
    orphan = engine.settings.data_dir / "thumbnails" / "00" / f"{'0' * 64}-128.jpg"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"x")
    album = tmp_path / "album"
    photo = _photo(album / "a.png", (1, 2, 3))
    engine.index([album], descriptors=["phash"], faces=False, progress=False)
    assert orphan.exists()
    _rewrite(photo, (90, 2, 3))  # the same path, other content: now the folder is pruned
    engine.index([album], descriptors=["phash"], faces=False, progress=False)
    assert not orphan.exists()
