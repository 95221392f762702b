"""Schema-driven fuzzing: every operation of the OpenAPI description, called with inputs
schemathesis generates from it, against an app over a data folder with a few indexed
photos, their faces and one enrolled person, with an admin key: no answer may be a 5xx,
and every answer must match the description (status code, content type, body schema:
errors included).

Each operation gets schemathesis' examples, coverage (boundary values, missing and
wrongly typed fields, other methods) and fuzzing phases, in positive and negative
(invalid input) modes. Generated "files" are short strings, which only test the decoder's
refusals: every other positive case with uploads gets real photos instead, so that the
other fields (k, descriptor, threshold, face, crop, ...) reach decoding, embedding, search
and the face pipeline.

Deterministic (a fixed seed, derandomized Hypothesis) and bounded (MAX_EXAMPLES generated
cases per operation in the fuzzing phase, plus the coverage phase's): about 2,300 requests
over 40 operations, some 20 s on two cores.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from itertools import count
from typing import Any

import hypothesis
import pytest

schemathesis = pytest.importorskip("schemathesis")

from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode  # noqa: E402
from schemathesis.python import asgi  # noqa: E402

import lookalike  # noqa: E402
from lookalike.serve.app import create_app  # noqa: E402
from lookalike.serve.keys import check_key, create_key  # noqa: E402
from lookalike.settings import Settings, get_settings  # noqa: E402

from .conftest import sample  # noqa: E402

MAX_EXAMPLES = 30
SEED = 20240601
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")  # astronaut: one face
# Multipart fields holding uploads (each a file, or a list of files).
FILE_FIELDS = frozenset({"file", "file_a", "file_b", "files"})
MAX_FILES = 3
REVOKE_KEY = "DELETE /v1/keys/{key_id}"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]

# The description does not depend on the data folder: built here, with nothing opened,
# so that pytest lists one test per operation.
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi())
schema.config.seed = SEED
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=MAX_EXAMPLES,
    deterministic=True,
    database="none",
)


def small_jpeg(name: str) -> bytes:
    image = sample(name)
    image.thumbnail((320, 320))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    return buf.getvalue()


class Server:
    """The app under test (started: its engine open), reached in-process, with an admin
    key and real photos to upload."""

    def __init__(self, app: Any, client: Any, photos: list[bytes]) -> None:
        self.app = app
        self.client = client
        self.photos = photos
        self._turn = count()
        self._pick = count()
        self.new_key()

    @property
    def store(self) -> Any:
        return self.app.state.engine.catalog.service

    def new_key(self) -> None:
        self.token, _ = create_key(self.store, "admin", "fuzz")
        self.headers = {"X-API-Key": self.token}

    def keep_key(self) -> None:
        """A fresh admin key if a fuzzed DELETE /v1/keys/{id} revoked ours."""
        if check_key(self.store, self.token) is None:
            self.new_key()

    def real_uploads(self, case: Any) -> None:
        """Every other positive case with uploads: real photos in its file fields (a list
        of files gets 1 to MAX_FILES)."""
        body = case.body
        mode = case.meta.generation.mode if case.meta is not None else None
        if mode is not GenerationMode.POSITIVE or not isinstance(body, dict):
            return
        fields = FILE_FIELDS & body.keys()
        if not fields or next(self._turn) % 2:
            return
        for name in sorted(fields):
            value = body[name]
            if isinstance(value, list):
                body[name] = [self.photo() for _ in range(min(max(len(value), 1), MAX_FILES))]
            else:
                body[name] = self.photo()

    def photo(self) -> bytes:
        """The astronaut (a face) every other time, else the other photos in turn."""
        i = next(self._pick)
        return self.photos[0] if i % 2 == 0 else self.photos[1 + (i // 2) % (len(self.photos) - 1)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("fuzz")
    folder = root / "photos"
    folder.mkdir()
    photos = [small_jpeg(name) for name in PHOTOS]
    for name, data in zip(PHOTOS, photos, strict=True):
        (folder / f"{name}.jpg").write_bytes(data)
    settings = get_settings(data_dir=root / "data", allowed_roots=[folder])
    with lookalike.open(settings.data_dir) as lk:
        lk.index([folder], progress=False)
        lk.people.enrol("Eileen", [folder / "astronaut.jpg"])
        assert lk.catalog.count_images() == len(PHOTOS) and lk.people.stats()["people"] == 1
    app = create_app(settings)
    try:
        with asgi.get_client(app) as client:  # runs the app's lifespan: opens the engine
            yield Server(app, client, photos)
    finally:
        asgi.shutdown_lifespans()  # closes the engine


@pytest.mark.slow
@schema.parametrize()
@hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_no_input_makes_a_server_error(case: Any, server: Server) -> None:
    server.real_uploads(case)
    case.call_and_validate(
        base_url=f"http://{asgi.HOST}",
        session=server.client,
        headers=server.headers,
        checks=CHECKS,
    )
    if case.operation.label == REVOKE_KEY:
        server.keep_key()
