"""The Redis result cache (``LOOKALIKE_CACHE_URL``): query vectors, faces and rankings.

Real Redis servers only (tests/servers.py: a single node for the session, a 3-node cluster,
and private ones for the tests that stop or pause them), real photos (scikit-image's, as in
test_api_faces). Each test keys its entries under a prefix of its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

import lookalike
from lookalike.backends import catalog_identity
from lookalike.cache.codec import pack_array, unpack_array
from lookalike.cache.redis_cache import parse_url
from lookalike.errors import Unavailable
from lookalike.faces.read import NamedBytes
from lookalike.search.engine import Lookalike
from lookalike.serve.app import create_app
from lookalike.settings import get_settings
from lookalike.store.sql_catalog import SqlCatalog
from lookalike.store.sqlite_db import SqliteDatabase

from . import servers
from .test_api_faces import make_photos

DESCRIPTOR = "phash"  # the cheapest to embed: these tests are about the cache, not the model


class Events:
    """The cache events of an engine, as ``(kind, outcome)``."""

    def __init__(self, engine: Lookalike) -> None:
        self.seen: list[tuple[str, str]] = []
        engine.cache.on_event = lambda kind, outcome: self.seen.append((kind, outcome))

    def take(self) -> list[tuple[str, str]]:
        """The events since the last call."""
        out, self.seen = self.seen, []
        return out


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return make_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, photos: dict[str, bytes]) -> Path:
    """A data folder with astronaut.png, pair.jpg and coffee.png indexed (phash, color, faces) and
    Eileen enrolled from astronaut.png; tests work on copies (``data``)."""
    root = tmp_path_factory.mktemp("indexed")
    album = root / "album"
    album.mkdir()
    for name in ("astronaut.png", "pair.jpg", "coffee.png"):
        (album / name).write_bytes(photos[name])
    with lookalike.open(root / "data") as lk:
        lk.index([album], descriptors=[DESCRIPTOR, "color"], progress=False)
        lk.people.enrol("Eileen", [NamedBytes(photos["astronaut.png"], "astronaut.png")])
    return root / "data"


@pytest.fixture()
def data(indexed: Path, tmp_path: Path) -> Path:
    shutil.copytree(indexed, tmp_path / "data")
    return tmp_path / "data"


def cached(data: Path, url: str, **settings: Any) -> Lookalike:
    """An engine on ``data`` with the cache at ``url``, under a prefix of its own."""
    return lookalike.open(data, cache_url=url, cache_prefix=f"test-{uuid.uuid4().hex}", **settings)


def ranked(result: Any) -> list[tuple[int, str, float]]:
    return [(h.image_id, h.path, h.score) for h in result.results]


def keys_of(url: str, prefix: str) -> list[bytes]:
    client = redis.Redis.from_url(url)
    try:
        return list(client.scan_iter(f"{prefix}:*"))
    finally:
        client.close()


# -- URLs, bytes, the default path (no server needed) ---------------------------------------


@pytest.mark.parametrize(
    ("url", "cluster", "nodes", "db", "shown"),
    [
        ("redis://127.0.0.1:6380/2", False, [("127.0.0.1", 6380)], 2, "redis://127.0.0.1:6380/2"),
        (
            "rediss://:s3cret@cache.lan",
            False,
            [("cache.lan", 6379)],
            0,
            "rediss://:***@cache.lan/0",
        ),
        (
            "redis+cluster://a:7000,[::1]:7001,b",
            True,
            [("a", 7000), ("::1", 7001), ("b", 6379)],
            0,
            "redis+cluster://a:7000,[::1]:7001,b",
        ),
    ],
)
def test_cache_urls_name_the_servers(
    url: str, cluster: bool, nodes: list[tuple[str, int]], db: int, shown: str
) -> None:
    target = parse_url(url)
    assert (target.cluster, list(target.nodes), target.db, target.shown) == (
        cluster,
        nodes,
        db,
        shown,
    )


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("localhost:6379", "scheme"),
        ("http://localhost", "scheme"),
        ("redis://:pw@host:99999/0", "port"),
        ("redis://host:6379/db", "database"),
        ("redis://a:1,b:2", "cluster"),
        ("redis+cluster://a:1/3", "database 0"),
        ("redis://", "host"),
        ("redis://host?timeout=1", "options"),
    ],
)
def test_a_malformed_cache_url_is_refused_naming_the_cache(url: str, why: str) -> None:
    with pytest.raises(Unavailable) as err:
        parse_url(url)
    assert "cache URL" in err.value.message and why in err.value.message
    assert "pw" not in err.value.message


def test_a_malformed_cache_url_stops_a_command_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lookalike.cli", "--cache-url", "redis://:hunter2@h:0", "status"],
        capture_output=True,
        text=True,
        env={**os.environ, "LOOKALIKE_DATA_DIR": str(tmp_path / "data")},
    )
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("lookalike: error: cache URL") and "port" in done.stderr
    assert "hunter2" not in done.stderr


def test_without_a_cache_url_nothing_of_redis_is_imported(tmp_path: Path) -> None:
    script = (
        "import sys, lookalike\n"
        f"with lookalike.open({str(tmp_path / 'data')!r}) as lk:\n"
        "    assert not lk.cache.enabled\n"
        "print(sorted(m for m in sys.modules if m == 'redis' or m.startswith('redis.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"LKA1",
        b"LKA1\xff\xff\xff\xff{}",
        pack_array(np.zeros((2, 8), np.uint8))[:-1],  # one byte short
        b"LKA1\x00\x00\x00\x2f" + b'{"dtype":"object","shape":[1],"meta":null}    ' + b"\x00" * 8,
        b"LKA1\x00\x00\x00\x2b" + b'{"dtype":"uint8","shape":[4294967296,4294967296]}',
    ],
)
def test_packed_arrays_refuse_garbage(garbage: bytes) -> None:
    with pytest.raises(ValueError):
        unpack_array(garbage)


def test_packed_arrays_come_back_as_they_went() -> None:
    rows = np.arange(12, dtype=np.float32).reshape(3, 4)
    back, meta = unpack_array(pack_array(rows, {"faces": [1]}))
    assert back.dtype == np.float32 and np.array_equal(back, rows) and meta == {"faces": [1]}


def test_a_cache_that_does_not_answer_is_a_miss(data: Path, photos: dict[str, bytes]) -> None:
    """Nothing listens on the URL's port: every search answers, each lookup an error (the
    first asks Redis, the others wait for ``cache_retry_s``)."""
    url = f"redis://127.0.0.1:{servers.free_port()}/0"
    with lookalike.open(data) as plain:
        expected = ranked(plain.search_one(photos["pair.jpg"], descriptor=DESCRIPTOR))
    with cached(data, url, cache_retry_s=60.0) as lk:
        events = Events(lk)
        for _ in range(3):
            assert ranked(lk.search_one(photos["pair.jpg"], descriptor=DESCRIPTOR)) == expected
        assert events.take() == [("answers", "error"), ("vectors", "error")] * 3


# -- a real Redis ---------------------------------------------------------------------------


@pytest.mark.redis
def test_a_hit_answers_as_the_miss_did(
    data: Path, photos: dict[str, bytes], redis_url: str
) -> None:
    with lookalike.open(data) as plain:
        expected = ranked(plain.search_one(photos["pair.jpg"], k=3, descriptor=DESCRIPTOR))
    with cached(data, redis_url) as lk:
        events = Events(lk)
        miss = lk.search_one(photos["pair.jpg"], k=3, descriptor=DESCRIPTOR)
        assert events.take() == [("answers", "miss"), ("vectors", "miss")]
        assert {"decode", "embed", "search", "cache"} <= set(miss.timing_ms)
        hit = lk.search_one(photos["pair.jpg"], k=3, descriptor=DESCRIPTOR)
        assert events.take() == [("answers", "hit")]
        assert set(hit.timing_ms) == {"cache"}
        # Another k is another answer, from the same vectors.
        lk.search_one(photos["pair.jpg"], k=2, descriptor=DESCRIPTOR)
        assert events.take() == [("answers", "miss"), ("vectors", "hit")]
    assert ranked(miss) == ranked(hit) == expected


@pytest.mark.redis
def test_rankings_are_cached_per_measure_and_expansion(
    data: Path, photos: dict[str, bytes], redis_url: str
) -> None:
    query = photos["pair.jpg"]
    with cached(data, redis_url) as lk:
        events = Events(lk)
        cosine = lk.search_one(query, k=3, descriptor="color")
        assert events.take() == [("answers", "miss"), ("vectors", "miss")]
        for measure, expand in (("euclidean", None), ("cosine", True), ("pearson", None)):
            miss = lk.search_one(query, k=3, descriptor="color", measure=measure, expand=expand)
            assert events.take() == [("answers", "miss"), ("vectors", "hit")], measure
            hit = lk.search_one(query, k=3, descriptor="color", measure=measure, expand=expand)
            assert events.take() == [("answers", "hit")]
            assert ranked(hit) == ranked(miss)
            assert (hit.measure, hit.expanded) == (measure, bool(expand))
            if measure == "euclidean":  # distances, nearest (the image itself) first
                distances = [s for _, _, s in ranked(hit)]
                assert distances == sorted(distances) and distances[0] < 1e-3
        again = lk.search_one(query, k=3, descriptor="color")
        assert events.take() == [("answers", "hit")] and ranked(again) == ranked(cosine)


@pytest.mark.redis
def test_a_new_image_changes_the_answer(
    data: Path, photos: dict[str, bytes], redis_url: str, tmp_path: Path
) -> None:
    """The catalog's generation is in the key: an image indexed after a search is found by
    the next one (and the query's vectors still come from the cache)."""
    with cached(data, redis_url) as lk:
        events = Events(lk)
        before = lk.search_one(photos["mirror.jpg"], k=5, descriptor=DESCRIPTOR)
        assert all(not h.path.endswith("mirror.jpg") for h in before.results)
        lk.search_one(photos["mirror.jpg"], k=5, descriptor=DESCRIPTOR)
        events.take()
        new = tmp_path / "new"
        new.mkdir()
        (new / "mirror.jpg").write_bytes(photos["mirror.jpg"])
        lk.index([new], descriptors=[DESCRIPTOR], faces=False, progress=False)
        after = lk.search_one(photos["mirror.jpg"], k=5, descriptor=DESCRIPTOR)
        assert events.take() == [("answers", "miss"), ("vectors", "hit")]
        assert "decode" not in after.timing_ms
    assert after.results[0].path == str(new / "mirror.jpg") and after.results[0].score == 1.0
    assert len(after.results) == len(before.results) + 1


@pytest.mark.redis
def test_faces_are_identified_and_searched_through_the_cache(
    data: Path, photos: dict[str, bytes], redis_url: str
) -> None:
    pair = NamedBytes(photos["pair.jpg"], "pair.jpg")
    with lookalike.open(data) as plain:
        identified = [(f.person, f.distance, f.face.box) for f in plain.people.identify(pair)]
        found = plain.people.search(pair, k=5)
        verified = plain.people.verify(pair, NamedBytes(photos["mirror.jpg"], "m.jpg"))
    with cached(data, redis_url) as lk:
        events = Events(lk)
        for outcome in ("miss", "hit"):
            again = [(f.person, f.distance, f.face.box) for f in lk.people.identify(pair)]
            assert again == identified
            assert ("answers", outcome) in events.take()
        # A renamed person is named anew by a cached answer.
        lk.people.rename("Eileen", "Eileen Collins")
        named = {f.person for f in lk.people.identify(pair)}
        assert events.take() == [("vectors", "hit"), ("answers", "hit")]
        assert "Eileen Collins" in named and "Eileen" not in named
        for outcome in ("miss", "hit"):
            hits = lk.people.search(pair, k=5)
            assert ("answers", outcome) in events.take()
            assert [(h.face_id, h.distance) for h in hits.results] == [
                (h.face_id, h.distance) for h in found.results
            ]
            assert hits.face.box == found.face.box
        check = lk.people.verify(pair, NamedBytes(photos["mirror.jpg"], "m.jpg"))
        assert (check.distance, check.same) == (verified.distance, verified.same)


@pytest.mark.redis
def test_garbage_in_the_cache_is_computed_again(
    data: Path, photos: dict[str, bytes], redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    queries = [NamedBytes(photos[n], n) for n in ("pair.jpg", "coffee.png")]
    with cached(data, redis_url) as lk:
        events = Events(lk)
        expected = [ranked(lk.search_one(q.data, descriptor=DESCRIPTOR)) for q in queries]
        faces = [[f.person for f in lk.people.identify(q)] for q in queries]
        client = redis.Redis.from_url(redis_url)
        keys = keys_of(redis_url, lk.cache.prefix)
        # Bytes that are no entry, and a well-formed array of the wrong width.
        for i, key in enumerate(keys):
            bad = pack_array(np.zeros((1, 3), np.float32)) if i % 2 else b"\x80garbage"
            client.set(key, bad)
        client.close()
        events.take()
        with caplog.at_level(logging.WARNING, logger="lookalike.cache"):
            rounds = []
            for _ in range(2):
                searched = [ranked(lk.search_one(q.data, descriptor=DESCRIPTOR)) for q in queries]
                assert searched == expected
                assert [[f.person for f in lk.people.identify(q)] for q in queries] == faces
                rounds.append({outcome for _, outcome in events.take()})
        # Each entry read once as garbage, replaced, then read back.
        assert rounds == [{"error"}, {"hit"}]
    told = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    kinds = [re.search(r"unreadable (\S+) entry", m) for m in told]
    # Logged once per kind of entry, however many were unreadable.
    assert sorted(k[1] for k in kinds if k) == ["faces", "identify", "rows", "search"], told


@pytest.mark.redis
def test_a_paused_redis_costs_a_request_its_timeout_only(
    data: Path, photos: dict[str, bytes], tmp_path: Path
) -> None:
    with servers.redis_server(tmp_path / "redis") as url, cached(data, url) as lk:
        events = Events(lk)
        expected = ranked(lk.search_one(photos["pair.jpg"], descriptor=DESCRIPTOR))
        client = redis.Redis.from_url(url)
        client.execute_command("CLIENT", "PAUSE", "3000", "ALL")
        events.take()
        start = time.perf_counter()
        assert ranked(lk.search_one(photos["pair.jpg"], descriptor=DESCRIPTOR)) == expected
        took = time.perf_counter() - start
        client.close()
        assert events.take()[0] == ("answers", "error")
    # The default cache_timeout_s (0.1 s) for the lookup; the rest computed locally.
    assert took < 1.5


def _metric(client: TestClient, name: str, kind: str) -> float:
    text = client.get("/metrics").text
    found = re.search(rf'^{name}{{kind="{kind}"}} (\S+)$', text, re.MULTILINE)
    assert found, text[:2000]
    return float(found[1])


@pytest.mark.redis
def test_redis_stopped_in_the_middle_of_searches_over_http(
    data: Path, photos: dict[str, bytes], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Searches run without pause while Redis stops and comes back on its port: every one
    answers 200 with the same hits, the failure is logged once and counted, and the
    cache is used again once Redis is back."""
    port = servers.free_port()
    settings = get_settings(
        data_dir=data,
        cache_url=f"redis://127.0.0.1:{port}/0",
        cache_prefix=f"test-{uuid.uuid4().hex}",
        cache_timeout_s=0.2,
        cache_retry_s=0.2,
    )
    form = {"k": "3", "descriptor": DESCRIPTOR}
    upload = {"file": ("pair.jpg", photos["pair.jpg"], "image/jpeg")}
    answers: list[tuple[int, Any]] = []
    done = threading.Event()

    def search_without_pause(client: TestClient) -> None:
        while not done.is_set():
            r = client.post("/v1/search", files=upload, data=form)
            answers.append((r.status_code, r.json().get("results")))

    with (
        caplog.at_level(logging.INFO, logger="lookalike.cache"),
        TestClient(create_app(settings, auth=False), base_url="http://127.0.0.1") as client,
    ):
        with servers.redis_server(tmp_path / "r1", port):
            errors = _metric(client, "lookalike_cache_errors_total", "answers")
            searcher = threading.Thread(target=search_without_pause, args=(client,))
            searcher.start()
            time.sleep(1.0)
        time.sleep(1.5)  # searching while Redis is gone
        down = len(answers)
        with servers.redis_server(tmp_path / "r2", port):
            time.sleep(1.5)
            done.set()
            searcher.join()
            hits = _metric(client, "lookalike_cache_hits_total", "answers")
            for _ in range(2):
                assert client.post("/v1/search", files=upload, data=form).status_code == 200
            assert _metric(client, "lookalike_cache_hits_total", "answers") >= hits + 1
        assert _metric(client, "lookalike_cache_errors_total", "answers") > errors
    assert down > 5 and len(answers) > down
    assert {status for status, _ in answers} == {200}
    assert all(results == answers[0][1] for _, results in answers)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("does not answer" in m for m in messages) == 1, messages
    assert sum("answers again" in m for m in messages) == 1, messages


@pytest.fixture()
def cluster_keys(redis_cluster_url: str) -> Iterator[list[redis.Redis]]:
    """A client of each node of the session's cluster."""
    nodes = [
        redis.Redis(host=h, port=int(p))
        for h, p in (a.rsplit(":", 1) for a in redis_cluster_url.split("//")[1].split(","))
    ]
    yield nodes
    for node in nodes:
        node.close()


@pytest.mark.redis
def test_a_redis_cluster_serves_the_cache(
    data: Path,
    photos: dict[str, bytes],
    redis_cluster_url: str,
    cluster_keys: list[redis.Redis],
) -> None:
    with cached(data, redis_cluster_url) as lk:
        events = Events(lk)
        queries = [(q, d) for q in photos.values() for d in ("phash", "color")]
        first = [ranked(lk.search_one(q, descriptor=d)) for q, d in queries]
        assert {o for _, o in events.take()} == {"miss"}
        again = [ranked(lk.search_one(q, descriptor=d)) for q, d in queries]
        assert events.take() == [("answers", "hit")] * len(queries)
        prefix = lk.cache.prefix
    assert again == first
    held = [len(list(node.scan_iter(f"{prefix}:*"))) for node in cluster_keys]
    assert sum(held) == 2 * len(queries) and all(n > 0 for n in held), held


def test_a_catalog_made_anew_at_the_same_path_is_another_catalog(tmp_path: Path) -> None:
    # Answers are keyed by the catalog's generations, which a new catalog counts from 0
    # again: its identity must change, or it would be served the old one's rankings.
    path = tmp_path / "catalog.sqlite3"
    with contextlib.closing(SqlCatalog(SqliteDatabase(path))) as first:
        identity = catalog_identity(first)
    with contextlib.closing(SqlCatalog(SqliteDatabase(path))) as again:
        assert catalog_identity(again) == identity
    for leftover in tmp_path.glob("catalog.sqlite3*"):
        leftover.unlink()
    with contextlib.closing(SqlCatalog(SqliteDatabase(path))) as anew:
        assert catalog_identity(anew) != identity
