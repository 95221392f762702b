"""The server's frame: health, API keys and scopes, the one error shape, metrics."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import lookalike.serve
from lookalike.serve.app import create_app
from lookalike.serve.guard import is_loopback
from lookalike.serve.keys import allows, check_key, create_key
from lookalike.settings import get_settings


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(get_settings(data_dir=tmp_path / "data"))
    with TestClient(app) as c:
        yield c


def key(client: TestClient, scope: str) -> str:
    store = client.app.state.engine.catalog.service  # type: ignore[attr-defined]
    token, _ = create_key(store, scope, "test")
    return token


def test_healthz_needs_no_key(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert isinstance(r.json()["schema_version"], int)


def test_missing_wrong_and_revoked_keys_are_401_in_the_error_shape(client: TestClient) -> None:
    r = client.get("/metrics")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"
    for bad in ("nope", "lka_00000000_xyz", "lka_", "lka__", "é".encode("latin-1")):
        r = client.get("/metrics", headers={"X-API-Key": bad})  # type: ignore[dict-item]
        assert r.status_code == 401, bad
    token = key(client, "read")
    assert client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.get("/metrics", headers={"X-API-Key": token}).status_code == 200
    store = client.app.state.engine.catalog.service  # type: ignore[attr-defined]
    (row,) = store.api_keys()
    store.revoke_key(row.id)
    assert client.get("/metrics", headers={"X-API-Key": token}).status_code == 401


def test_keys_are_stored_hashed_and_scopes_nest(client: TestClient) -> None:
    store = client.app.state.engine.catalog.service  # type: ignore[attr-defined]
    token, row = create_key(store, "write")
    assert token not in repr(store.api_keys()) and row.digest != token
    assert check_key(store, token) == store.key_by_prefix(row.prefix)
    assert check_key(store, token + "x") is None
    assert allows("admin", "write") and allows("write", "read") and not allows("read", "write")
    assert not allows("bogus", "read")


def test_metrics_count_requests(client: TestClient) -> None:
    token = key(client, "read")
    client.get("/healthz")
    body = client.get("/metrics", headers={"X-API-Key": token}).text
    assert 'lookalike_http_requests_total{method="GET",route="/healthz",status="200"}' in body
    assert "lookalike_images 0" in body


def test_unknown_route_and_oversized_body_get_json_errors(client: TestClient) -> None:
    token = {"X-API-Key": key(client, "write")}
    r = client.get("/v1/nothing-here", headers=token)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    huge = str(10**12)
    # Without a key the body is not even looked at; with one, its announced size is refused.
    r = client.post("/v1/images", headers={"content-length": huge}, content=b"")
    assert r.status_code == 401
    r = client.post("/v1/images", headers={**token, "content-length": huge}, content=b"")
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"


def test_a_streamed_body_is_cut_off_at_the_limit(tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path / "data", upload_max_bytes=1000, upload_max_files=1)
    with TestClient(create_app(settings)) as c:
        token = {"X-API-Key": key(c, "write")}

        def chunks() -> Iterator[bytes]:
            yield b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\n\r\n'
            for _ in range(3000):  # no content-length: sent chunked
                yield b"x" * 1024

        form = {**token, "content-type": "multipart/form-data; boundary=b"}
        r = c.post("/v1/images", headers=form, content=chunks())
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"


def test_web_page_and_openapi(client: TestClient) -> None:
    assert "lookalike" in client.get("/").text
    assert client.get("/openapi.json").json()["info"]["title"] == "lookalike"


def test_the_page_preloads_every_module_it_is_made_of(client: TestClient) -> None:
    # index.html asks for every module at once (rel=modulepreload), not import by import:
    # a module added without its line there would load late, one round trip more.
    web = Path(lookalike.serve.__file__).parent / "web"
    modules = sorted(p.relative_to(web).as_posix() for p in (web / "js").rglob("*.js"))
    page = client.get("/").text
    assert sorted(re.findall(r'rel="modulepreload" href="/static/([^"]+)"', page)) == modules
    for module in ["app.js", *modules]:
        r = client.get(f"/static/{module}")
        assert r.status_code == 200 and "javascript" in r.headers["content-type"], module


# What a JSON schema says when it says nothing about a value (an "any").
SHAPING = {"type", "$ref", "anyOf", "allOf", "oneOf", "const", "enum"}


def _shapeless(schema: dict[str, Any], components: dict[str, Any], seen: set[str]) -> list[str]:
    """The places in ``schema`` (followed through $refs) where any value would do."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        if name in seen:
            return []
        seen.add(name)
        return [f"{name}.{p}" for p in _shapeless(components[name], components, seen)]
    if not SHAPING & schema.keys():
        return ["(any)"]
    if schema.get("type") == "object" and not schema.get("properties"):
        extra = schema.get("additionalProperties")
        if not isinstance(extra, dict):
            return ["(an object of anything)"]
        return _shapeless(extra, components, seen)
    found: list[str] = []
    for name, prop in schema.get("properties", {}).items():
        found += [f"{name}: {p}" for p in _shapeless(prop, components, seen)]
    for key in ("anyOf", "allOf", "oneOf"):
        for option in schema.get(key, []):
            found += _shapeless(option, components, seen)
    if "items" in schema:
        found += [f"[]{p}" for p in _shapeless(schema["items"], components, seen)]
    return found


def test_openapi_states_the_shape_of_every_answer(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    components = spec["components"]["schemas"]
    operations = [(m.upper(), p, op) for p, ops in spec["paths"].items() for m, op in ops.items()]
    assert len(operations) == 42
    for method, path, op in operations:
        answers = {c: r for c, r in op["responses"].items() if c in ("200", "201", "202")}
        if "204" in op["responses"]:
            assert not answers and not op["responses"]["204"].get("content"), (method, path)
            continue
        # One success answer, or two where the work may become a job (clusters/run: 200
        # with the report, 202 with the job of a full re-cluster); each with its shape.
        assert len(answers) == 1 or set(answers) == {"200", "202"}, (method, path, list(answers))
        for answer in answers.values():
            assert answer.get("content"), (method, path)
            for media, body in answer["content"].items():
                schema = body.get("schema", {})
                if media.startswith("image/"):
                    assert schema == {"type": "string", "format": "binary"}, (method, path)
                elif media.startswith("text/"):
                    assert schema == {"type": "string"}, (method, path)
                else:
                    assert media == "application/json" and "$ref" in schema, (method, path)
                    assert _shapeless(schema, components, set()) == [], (method, path)


def test_one_name_for_one_thing_in_every_answer(client: TestClient) -> None:
    """Ids are named after what they identify, everywhere: never a bare ``id``."""
    components = client.get("/openapi.json").json()["components"]["schemas"]
    fields = {
        (model, name): prop
        for model, schema in components.items()
        for name, prop in schema.get("properties", {}).items()
    }
    assert not [f for f in fields if f[1] in ("id", "ids", "cluster", "face", "into", "from")]
    for (model, name), prop in fields.items():
        if name.endswith("_id"):
            types = {o.get("type") for o in prop.get("anyOf", [prop])}
            assert types <= {"integer", "null"}, (model, name)
        if name == "person":
            types = {o.get("type") for o in prop.get("anyOf", [prop])}
            assert types <= {"string", "null"}, (model, name)  # a name, never an object


def test_no_auth_is_for_loopback_only() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
