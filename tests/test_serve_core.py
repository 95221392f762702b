"""The server's frame: health, API keys and scopes, the one error shape, metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lookalike.cli.serve import is_loopback
from lookalike.serve.app import create_app
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


def test_no_auth_is_for_loopback_only() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
