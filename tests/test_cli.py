"""The command line: output formats, exit codes, bad input, interruption."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

import lookalike
from lookalike.cli.main import cli
from lookalike.errors import DataFolderError
from lookalike.store.migrations.sqlite import SCHEMA_VERSION
from lookalike.store.sql_catalog import SqlCatalog
from lookalike.store.sqlite_db import SqliteDatabase

from .conftest import sample


def run(data: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [*args, "--data-dir", str(data)])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def png_bomb(path: Path, side: int = 20000) -> None:
    """A valid PNG header claiming side x side pixels, with a tiny compressed body."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return len(body).to_bytes(4, "big") + kind + body + crc.to_bytes(4, "big")

    ihdr = side.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    body = zlib.compress(b"\0" * (side + 1) * 16)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body))


def test_index_json_summary_and_bad_files(photo_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "album"
    shutil.copytree(photo_dir, folder)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("not a picture")
    png_bomb(folder / "bomb.png")
    code, out, err = run(tmp_path / "data", "index", str(folder), "--json")
    assert code == 1, err  # some inputs failed; the others are indexed
    summary = json.loads(out)
    assert set(summary) >= {"indexed", "unchanged", "duplicates", "failed"}
    assert summary["indexed"] == 6
    failed = {Path(f["path"]).name: f["error"] for f in summary["failed"]}
    assert set(failed) == {"empty.jpg", "notes.jpg", "bomb.png"}
    assert "over the limit" in failed["bomb.png"]
    code, out, _ = run(tmp_path / "data", "index", str(folder), "--json")
    assert json.loads(out)["unchanged"] == 6


def test_exit_status_0_ok_1_some_inputs_failed_2_usage(photo_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    good = str(photo_dir / "chelsea.png")
    assert run(data, "index", good)[0] == 0
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    code, out, err = run(data, "index", str(bad), good)
    assert code == 1 and "bad.jpg" in err and "1 unchanged" in out
    assert run(data, "search", good, str(bad))[0] == 1
    assert run(data, "search", good, "-k", "0")[0] == 2
    assert run(data, "search", good, "--descriptor", "sift")[0] == 2
    assert run(data, "index")[0] == 2  # no PATHS: click's own usage error
    assert run(data, "search", good)[0] == 0


def test_the_command_line_starts_without_the_server() -> None:
    """Only ``lookalike serve`` imports the server (FastAPI, uvicorn): the answers the other
    commands print are ``lookalike.answers``, not the server's."""
    probe = (
        "import sys, lookalike.cli.main; print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('fastapi', 'starlette', 'uvicorn') or m == 'lookalike.serve.app'))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_search_json_lines_and_sheet(photo_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    run(data, "index", str(photo_dir))
    sheet = tmp_path / "sheet.png"
    queries = [str(photo_dir / "chelsea.png"), str(photo_dir / "rocket.jpg")]
    code, out, err = run(data, "search", *queries, "-k", "100", "--json", "--sheet", str(sheet))
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["query"] for line in lines] == queries
    for line, query in zip(lines, queries, strict=True):
        assert len(line["results"]) == 6  # k larger than the collection: all of it
        top = line["results"][0]
        assert top["rank"] == 1 and top["path"] == query and top["score"] > 0.99
        assert len(top["sha256"]) == 64
        assert set(line["timing_ms"]) == {"decode", "embed", "search"}
        scores = [r["score"] for r in line["results"]]
        assert scores == sorted(scores, reverse=True)
    for n in (1, 2):
        with Image.open(tmp_path / f"sheet-{n}.png") as im:
            assert im.format == "PNG" and im.width > 300


def test_search_measures_and_expansion(photo_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    run(data, "index", str(photo_dir))
    query = str(photo_dir / "chelsea.png")
    code, out, err = run(data, "search", query, "--measure", "euclidean", "--json", "--expand")
    assert code == 0, err
    line = json.loads(out)
    assert (line["measure"], line["higher_is_better"], line["expanded"]) == (
        "euclidean",
        False,
        True,
    )
    distances = [r["score"] for r in line["results"]]
    assert distances == sorted(distances) and line["results"][0]["path"] == query
    code, out, _ = run(data, "search", query, "--measure", "pearson", "-k", "2")
    assert code == 0 and out.splitlines()[0].endswith("(Pearson correlation, higher is closer)")
    code, _, err = run(data, "search", query, "--measure", "pearson", "--descriptor", "phash")
    assert code == 2 and "phash descriptor compares by hamming only" in err
    code, _, err = run(data, "search", query, "--measure", "manhattan")
    assert code == 2 and "manhattan" in err


def test_search_rejects_bad_k_and_bad_query(photo_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    run(data, "index", str(photo_dir))
    code, _, err = run(data, "search", str(photo_dir / "chelsea.png"), "-k", "0")
    assert code == 2 and "k must be" in err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n")
    sheet = tmp_path / "sheet.png"
    queries = [str(bad), str(photo_dir / "coffee.png")]
    code, out, err = run(data, "search", *queries, "--json", "--sheet", str(sheet))
    assert code == 1  # one of two queries failed
    first, second = (json.loads(line) for line in out.splitlines())
    # The failed query's line: the API's error body, with the query it is about.
    assert set(first) == {"query", "error"} and first["query"] == str(bad)
    assert first["error"]["code"] == "bad_image" and "bad.png" in first["error"]["message"]
    assert Path(second["results"][0]["path"]).name == "coffee.png"
    assert "bad.png" in err
    # Sheets are numbered by query: the second query's is sheet-2 whatever the first did.
    assert (tmp_path / "sheet-2.png").is_file() and not (tmp_path / "sheet-1.png").exists()
    code, _, _ = run(data, "search", str(bad))
    assert code == 1


def test_descriptor_choice_and_unknown_descriptor(photo_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    run(data, "index", str(photo_dir))
    code, out, _ = run(data, "search", str(photo_dir / "coffee.png"), "--descriptor", "phash")
    assert code == 0 and "coffee.png" in out.splitlines()[1]
    code, _, err = run(data, "search", str(photo_dir / "coffee.png"), "--descriptor", "sift")
    assert code == 2 and "unknown descriptor" in err


def test_duplicates_remove_reindex(photo_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    folder = tmp_path / "album"
    shutil.copytree(photo_dir, folder)
    shutil.copy(folder / "rocket.jpg", folder / "rocket-copy.jpg")
    sample("coffee").resize((300, 200)).save(folder / "coffee-small.jpg")
    run(data, "index", str(folder))
    code, out, _ = run(data, "duplicates", "--json")
    report = json.loads(out)
    assert [sorted(Path(p).name for p in g["paths"]) for g in report["exact"]] == [
        ["rocket-copy.jpg", "rocket.jpg"]
    ]
    near = [sorted(Path(i["paths"][0]).name for i in g["images"]) for g in report["near"]]
    assert near == [["coffee-small.jpg", "coffee.png"]]
    code, out, _ = run(data, "remove", str(folder / "coffee-small.jpg"))
    assert code == 0 and "1 paths removed" in out
    code, out, _ = run(data, "reindex")
    assert "cnn: 6 vectors" in out
    code, _, err = run(data, "remove", str(folder / "coffee-small.jpg"))
    assert code == 1 and "not in the catalog" in err


def test_data_dir_from_environment(photo_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "env-data"
    env = {**os.environ, "LOOKALIKE_DATA_DIR": str(data)}
    subprocess.run(
        [sys.executable, "-m", "lookalike.cli", "index", str(photo_dir / "coffee.png")],
        env=env,
        check=True,
        capture_output=True,
    )
    assert (data / "catalog.sqlite3").exists()


def test_newer_schema_is_a_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run(data, "reindex")
    db = sqlite3.connect(data / "catalog.sqlite3")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    db.close()
    code, _, err = run(data, "reindex")
    assert code == 1 and "newer" in err and "upgrade" in err


def test_eval_retrieval(photo_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "labelled"
    folder.mkdir()
    rows = ["path,group"]
    for name in ("chelsea", "coffee", "astronaut"):
        image = sample(name)
        image.save(folder / f"{name}-a.jpg")
        image.crop((20, 20, image.width - 20, image.height - 20)).save(folder / f"{name}-b.jpg")
        rows += [f"{name}-a.jpg,{name}", f"{name}-b.jpg,{name}"]
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    code, out, err = run(
        tmp_path / "data", "eval", "retrieval", "--labels", str(folder / "labels.csv"), "--json"
    )
    assert code == 0, err
    scores = json.loads(out)
    assert scores["mAP"] == 1.0 and scores["p@1"] == 1.0 and scores["n_queries"] == 6


def _lookalike_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "lookalike.cli", *args]


def _distinct_photos(folder: Path, name: str, n: int, size: tuple[int, int]) -> None:
    """``n`` PNGs of one sample photo, each with one pixel changed: ``n`` distinct images."""
    folder.mkdir()
    base = sample(name).resize(size)
    for i in range(n):
        image = base.copy()
        image.putpixel((i % size[0], i // size[0]), (i % 256, 1, 2))
        image.save(folder / f"{i:04d}.png")


def _count_images(catalog: Path) -> int:
    db = sqlite3.connect(catalog, timeout=5)
    try:
        return int(db.execute("SELECT COUNT(*) FROM images").fetchone()[0])
    finally:
        db.close()


def _wait_until_committed(proc: subprocess.Popen[str], catalog: Path, n: int) -> int:
    """Poll the catalog while ``proc`` indexes; return the image count once it reaches ``n``."""
    deadline = time.monotonic() + 120
    committed = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if not catalog.exists():
            continue
        try:
            committed = _count_images(catalog)
        except sqlite3.OperationalError:  # the schema may not exist yet
            continue
        if committed >= n:
            break
    return committed


@pytest.mark.slow
def test_killed_index_keeps_what_was_committed_and_resumes(tmp_path: Path) -> None:
    folder = tmp_path / "many"
    _distinct_photos(folder, "astronaut", 400, (256, 256))
    data = tmp_path / "data"
    env = {**os.environ, "LOOKALIKE_COMMIT_EVERY": "16", "LOOKALIKE_BATCH_SIZE": "8"}
    proc = subprocess.Popen(
        _lookalike_cmd("index", str(folder), "--data-dir", str(data)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    catalog = data / "catalog.sqlite3"
    committed = _wait_until_committed(proc, catalog, 48)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < committed < 400, "the run should be killed part-way"
    db = sqlite3.connect(catalog)
    (images,) = db.execute("SELECT COUNT(*) FROM images").fetchone()
    (vectors,) = db.execute("SELECT COUNT(*) FROM vectors WHERE descriptor = 'cnn'").fetchone()
    (orphans,) = db.execute(
        "SELECT COUNT(*) FROM images WHERE id NOT IN (SELECT image_id FROM paths)"
    ).fetchone()
    (scanned,) = db.execute("SELECT COUNT(*) FROM face_scans").fetchone()
    (faces,) = db.execute("SELECT COUNT(DISTINCT image_id) FROM faces").fetchone()
    db.close()
    # Nothing half-written: every stored image has its vectors and its faces.
    assert images == vectors == scanned == faces and orphans == 0
    done = subprocess.run(
        # Without faces: the resume is what is tested (and ~0.1 s per photo less).
        _lookalike_cmd("index", str(folder), "--data-dir", str(data), "--json", "--no-faces"),
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    summary = json.loads(done.stdout)
    assert summary["unchanged"] >= images
    assert summary["indexed"] + summary["unchanged"] == 400
    out = subprocess.run(
        _lookalike_cmd(
            "search", str(folder / "0399.png"), "-k", "1", "--json", "--data-dir", str(data)
        ),
        check=True,
        capture_output=True,
        text=True,
    )
    assert json.loads(out.stdout)["results"][0]["path"] == str(folder / "0399.png")


@pytest.mark.slow
def test_ctrl_c_reports_and_exits_130(tmp_path: Path) -> None:
    folder = tmp_path / "many"
    _distinct_photos(folder, "coffee", 300, (300, 200))
    data = tmp_path / "data"
    env = {**os.environ, "LOOKALIKE_COMMIT_EVERY": "8", "LOOKALIKE_BATCH_SIZE": "8"}
    proc = subprocess.Popen(
        _lookalike_cmd("index", str(folder), "--data-dir", str(data), "--json"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    catalog = data / "catalog.sqlite3"
    assert _wait_until_committed(proc, catalog, 16) >= 16
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    summary = json.loads(out)
    assert summary["indexed"] == _count_images(catalog)


def _without_root_read_override() -> list[str]:
    """A command prefix under which permission bits apply even to root (as for a user)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("root without setpriv (util-linux) cannot be denied a folder")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}"]


def test_unreadable_folder_is_reported_and_the_rest_indexed(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    (root / "open").mkdir(parents=True)
    (root / "locked").mkdir()
    sample("coffee").save(root / "open" / "coffee.jpg")
    sample("chelsea").save(root / "locked" / "cat.jpg")
    (root / "locked").chmod(0)
    try:
        done = subprocess.run(
            [
                *_without_root_read_override(),
                *_lookalike_cmd("index", str(root), "--data-dir", str(tmp_path / "d"), "--json"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        (root / "locked").chmod(0o755)
    assert done.returncode == 1, done.stderr  # one input failed
    summary = json.loads(done.stdout)
    assert summary["indexed"] == 1
    (failure,) = summary["failed"]
    assert failure["path"].endswith("locked") and "cannot read folder" in failure["error"]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "index-is-a-file", "data-is-a-file"])
def test_a_damaged_data_folder_is_one_error_line_not_a_traceback(
    photo_dir: Path, tmp_path: Path, damage: str
) -> None:
    data = tmp_path / "data"
    query = str(photo_dir / "chelsea.png")
    assert run(data, "index", "--no-faces", str(photo_dir))[0] == 0
    catalog = data / "catalog.sqlite3"
    if damage == "garbage":
        catalog.write_bytes(b"this is not a database at all " * 200)
    elif damage == "truncated":
        catalog.write_bytes(catalog.read_bytes()[: catalog.stat().st_size // 3])
        for extra in data.glob("catalog.sqlite3-*"):  # the WAL would fill the gap back in
            extra.unlink()
    elif damage == "index-is-a-file":
        shutil.rmtree(data / "index")
        (data / "index").write_text("oops")
    else:
        shutil.rmtree(data)
        data.write_text("oops")
    for args in (("search", query), ("index", str(photo_dir)), ("faces", "stats")):
        code, out, err = run(data, *args)
        assert "Traceback" not in err
        if damage == "data-is-a-file":  # click refuses the option itself: a usage error
            assert code == 2 and "is a file" in err
            continue
        assert code == 1, (args, out, err)
        (line,) = err.strip().splitlines()
        assert line.startswith("lookalike: error: ") and str(data) in line


def test_a_data_folder_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("oops")
    with pytest.raises(DataFolderError, match="is a file, not a folder"):
        lookalike.open(tmp_path / "data")


def test_status_says_what_the_folder_holds_and_which_indexes_are_current(
    photo_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    assert run(data, "index", "--no-faces", str(photo_dir))[0] == 0
    code, out, _ = run(data, "status", "--json")
    found = json.loads(out)
    assert code == 0 and found["schema_version"] == SCHEMA_VERSION
    assert (found["image_count"], found["path_count"], found["faces"]["face_count"]) == (6, 6, 0)
    states = {s["name"]: s for s in found["indexes"]}
    assert {n: states[n]["state"] for n in states} == {
        "cnn": "current",
        "color": "current",
        "phash": "current",
        "cnn-regions": "current",
        "face": "empty",
    }
    assert states["cnn-regions"]["vector_count"] == 6 * 9
    assert states["cnn"]["vector_count"] == 6 and found["current"] and found["size_bytes"] > 0
    # The embedded default: the data folder's catalog, no cache, no broker.
    assert found["parts"] == [
        {
            "part": "catalog",
            "kind": "sqlite",
            "where": str(data / "catalog.sqlite3"),
            "answers": True,
            "error": None,
        },
        {"part": "cache", "kind": "none", "where": None, "answers": None, "error": None},
        {"part": "broker", "kind": "none", "where": None, "answers": None, "error": None},
    ]
    # Another process forgets an image (the catalog changes, the index files do not), and
    # one index file is damaged: status says so without loading or repairing anything.
    other = SqlCatalog(SqliteDatabase(data / "catalog.sqlite3"))
    other.remove_paths([str(photo_dir / "chelsea.png")])
    other.close()
    (data / "index" / "color.idx").write_bytes(b"garbage")
    code, out, _ = run(data, "status")
    assert code == 0
    assert "5 images under 5 paths" in out
    assert "behind the catalog" in out and "damaged" in out and "phash" in out
    assert not json.loads(run(data, "status", "--json")[1])["current"]
    run(data, "search", str(photo_dir / "coffee.png"), "--descriptor", "color")
    states = {
        s["name"]: s["state"] for s in json.loads(run(data, "status", "--json")[1])["indexes"]
    }
    assert states["color"] == "current" and states["phash"] == "behind"
