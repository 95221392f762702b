"""``lookalike faces detect`` and ``faces verify``: output formats and bad input."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from lookalike.cli.main import cli

from .conftest import sample


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_detect_json_lines(tmp_path: Path) -> None:
    sample("astronaut").save(tmp_path / "astronaut.jpg")
    sample("coffee").save(tmp_path / "coffee.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff")
    paths = [str(tmp_path / n) for n in ("astronaut.jpg", "coffee.png", "broken.jpg")]
    code, out, err = run("faces", "detect", *paths, "--json", "--embeddings")
    assert code == 1  # one of three images could not be read (the others are reported)
    astronaut, coffee, broken = (json.loads(line) for line in out.splitlines())
    assert [line["query"] for line in (astronaut, coffee, broken)] == paths
    (face,) = astronaut["faces"]
    assert face["face_index"] == 0
    left, top, right, bottom = face["box"]
    assert 150 < left < 200 and 60 < top < 100 and 240 < right < 290 and 150 < bottom < 190
    assert len(face["landmarks"]) == 5 and len(face["embedding"]) == 128
    assert 0 < face["quality"] <= 1 and face["usable"] is True
    assert coffee["faces"] == []  # no face is an empty list, not an error
    assert broken["error"]["code"] == "bad_image" and "broken.jpg" in err


def test_detect_68_landmarks_without_embeddings(tmp_path: Path) -> None:
    sample("astronaut").save(tmp_path / "a.png")
    code, out, _ = run("faces", "detect", str(tmp_path / "a.png"), "--json", "--landmarks", "68")
    assert code == 0
    (face,) = json.loads(out)["faces"]
    assert len(face["landmarks"]) == 68 and face["embedding"] is None


def test_verify_same_face_and_no_face(tmp_path: Path) -> None:
    image = sample("astronaut")
    image.save(tmp_path / "a.png")
    image.resize((300, 300), Image.Resampling.LANCZOS).save(tmp_path / "b.jpg", quality=80)
    sample("coffee").save(tmp_path / "coffee.png")
    code, out, _ = run(
        "faces", "verify", str(tmp_path / "a.png"), str(tmp_path / "b.jpg"), "--json"
    )
    result = json.loads(out)
    assert code == 0 and result["same"] is True and result["distance"] < 0.4
    assert result["threshold"] == 0.6
    code, _, err = run("faces", "verify", str(tmp_path / "a.png"), str(tmp_path / "coffee.png"))
    assert code == 1 and "no face found" in err
