"""Cross-site protection: what another site's page, or a DNS-rebinding one, may not do.

A server without keys (``serve --no-auth``, what the demo runs) on 127.0.0.1:8000: a page
elsewhere may POST simple requests to it (forms, ``fetch`` with ``mode: "no-cors"``) and a
rebinding page reaches it under its own host name. The Guard refuses both before any body
byte is read; curl-like clients (no ``Origin``) and the server's own page still work.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from lookalike.cli.main import cli
from lookalike.errors import BadInput
from lookalike.serve.app import create_app
from lookalike.serve.guard import is_loopback, split_host
from lookalike.serve.keys import create_key
from lookalike.settings import get_settings

from .conftest import sample

ORIGIN = "http://127.0.0.1:8000"
EVIL = "http://evil.example"


def small_jpeg() -> bytes:
    image = sample("astronaut")
    image.thumbnail((128, 128))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=85)
    return buf.getvalue()


@pytest.fixture()
def open_server(tmp_path: Path) -> Iterator[TestClient]:
    """``serve --no-auth`` on 127.0.0.1:8000, as the demo runs it."""
    app = create_app(get_settings(data_dir=tmp_path / "data"), auth=False, host="127.0.0.1")
    with TestClient(app, base_url=ORIGIN) as client:
        yield client


def engine(client: TestClient) -> Any:
    return client.app.state.engine  # type: ignore[attr-defined]


def stored_nothing(client: TestClient) -> bool:
    lk = engine(client)
    uploads = lk.settings.data_dir / "uploads"
    return (
        lk.catalog.count_images() == 0
        and not lk.people.people()
        and not (uploads.exists() and any(uploads.iterdir()))
    )


def assert_refused(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert not any(h.lower().startswith("access-control-") for h in response.headers)


# What a page on another site can send without a CORS preflight: forms (multipart,
# urlencoded, text/plain) and no-cors fetches with such bodies.
FORM_POSTS = [
    ("/v1/images", {"files": ("a.jpg", b"", "image/jpeg")}, None),
    ("/v1/people", {"files": ("a.jpg", b"", "image/jpeg")}, {"name": "Mallory"}),
    ("/v1/search", {"file": ("a.jpg", b"", "image/jpeg")}, None),
    ("/v1/clusters/run", None, {"full": "true"}),
    ("/v1/jobs", None, {"path": "/"}),
]


@pytest.mark.parametrize(("path", "files", "data"), FORM_POSTS)
def test_a_cross_site_form_post_is_refused_and_stores_nothing(
    open_server: TestClient, path: str, files: Any, data: Any
) -> None:
    photo = small_jpeg()
    if files is not None:
        files = {name: (f, photo, t) for name, (f, _, t) in files.items()}
    for headers in (
        {"Origin": EVIL},  # any browser
        {"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"},
        {"Sec-Fetch-Site": "cross-site"},  # Origin hidden by a referrer policy
        {"Origin": "null"},  # a sandboxed frame, a data: URL
        {"Origin": "http://127.0.0.1:3000"},  # another port of this machine
        {"Origin": "http://localhost:8000", "Sec-Fetch-Site": "same-site"},
        {"Origin": "http://[::1"},  # not even a URL
        {"Origin": "http://127.0.0.1:8000@evil.example"},
    ):
        r = open_server.post(path, files=files, data=data, headers=headers)
        assert_refused(r, 403, "cross_site")
    assert stored_nothing(open_server)


def test_the_same_upload_from_the_server_own_page_or_curl_is_stored(
    open_server: TestClient,
) -> None:
    photo = small_jpeg()
    same_origin = {"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}
    for headers in (same_origin, {}):  # the web page; curl, httpx, requests
        r = open_server.post(
            "/v1/images", files={"files": ("a.jpg", photo, "image/jpeg")}, headers=headers
        )
        assert r.status_code == 200, r.text
    assert engine(open_server).catalog.count_images() == 1
    # The Origin is compared with the Host the browser used: any loopback name will do.
    r = open_server.post(
        "/v1/clusters/run",
        headers={"Host": "localhost:8000", "Origin": "http://localhost:8000"},
    )
    assert r.status_code == 200, r.text


def test_a_refused_body_is_never_read(open_server: TestClient) -> None:
    read: list[bytes] = []

    def body() -> Iterator[bytes]:
        for chunk in (b"--b\r\n", b"x" * 1024):
            read.append(chunk)
            yield chunk

    multipart = {"Content-Type": "multipart/form-data; boundary=b"}
    for refused in ({"Origin": EVIL}, {"Host": "evil.example:8000"}):
        r = open_server.post("/v1/images", content=body(), headers={**multipart, **refused})
        assert r.status_code in (400, 403) and read == []


def test_cross_site_reads_are_refused_but_a_followed_link_is_not(
    open_server: TestClient,
) -> None:
    # <img src>, <script src>, a no-cors fetch: the page could not read the answer, but it
    # could tell which ids exist; refused.
    for mode in ("no-cors", "cors"):
        r = open_server.get(
            "/v1/images", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": mode}
        )
        assert_refused(r, 403, "cross_site")
    link = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Origin": EVIL}
    assert open_server.get("/v1/images", headers=link).status_code == 200
    # GETs change nothing: an Origin alone (a same-origin fetch sends none) is fine.
    assert open_server.get("/v1/images", headers={"Origin": EVIL}).status_code == 200


def test_no_page_may_be_framed_by_another_site(open_server: TestClient) -> None:
    # The web page in another site's invisible frame would take the user's clicks.
    for path in ("/", "/docs", "/v1/images"):
        r = open_server.get(path)
        assert r.status_code == 200, path
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["content-security-policy"] == "frame-ancestors 'none'"


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_a_rebinding_host_is_refused(open_server: TestClient, method: str) -> None:
    # evil.example resolved to 127.0.0.1: the page is same-origin with itself.
    rebound = {"Host": "evil.example:8000", "Origin": "http://evil.example:8000"}
    for path in ("/v1/images", "/v1/images/1", "/", "/healthz", "/openapi.json"):
        r = open_server.request(method, path, headers=rebound)
        assert_refused(r, 400, "bad_host")
    r = open_server.post(
        "/v1/images", files={"files": ("a.jpg", small_jpeg(), "image/jpeg")}, headers=rebound
    )
    assert_refused(r, 400, "bad_host")
    assert stored_nothing(open_server)


def test_loopback_host_names_with_or_without_the_port_are_answered(
    open_server: TestClient,
) -> None:
    for host in (
        "127.0.0.1",
        "127.0.0.1:8000",
        "localhost",
        "LocalHost:8000",
        "localhost.:8000",
        "[::1]:8000",
        "[::1]",
        "127.0.0.2:9000",
    ):
        assert open_server.get("/v1/images", headers={"Host": host}).status_code == 200, host
    for host in ("", "evil.example", "127.0.0.1.evil.example", "::1", "[::1", "a:b:c", "x:8o"):
        r = open_server.get("/healthz", headers={"Host": host})
        assert_refused(r, 400, "bad_host")


def test_allowed_hosts_on_another_address(tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path / "data")
    # A keyed server on every address, no names configured: any Host (keys protect it).
    app = create_app(settings, host="0.0.0.0")
    with TestClient(app, base_url="http://photos.lan:8000") as client:
        assert client.get("/healthz").status_code == 200
    named = settings.model_copy(update={"allowed_hosts": ["Photos.LAN", "10.0.0.5:8000"]})
    app = create_app(named, host="0.0.0.0")
    with TestClient(app, base_url="http://photos.lan:8000") as client:
        for host in ("photos.lan", "photos.lan:8000", "10.0.0.5:8000", "localhost:8000"):
            assert client.get("/healthz", headers={"Host": host}).status_code == 200, host
        assert_refused(client.get("/healthz", headers={"Host": "evil.example"}), 400, "bad_host")
    # No keys means the check, wherever the server is (the CLI allows loopback only).
    with TestClient(create_app(settings, auth=False)) as client:  # Host: testserver
        assert_refused(client.get("/healthz"), 400, "bad_host")
    with pytest.raises(BadInput, match="not a host name"):
        create_app(settings.model_copy(update={"allowed_hosts": ["a b:x"]}))


def test_keys_count_only_in_headers_and_no_cors_header_is_sent(tmp_path: Path) -> None:
    app = create_app(get_settings(data_dir=tmp_path / "data"), host="127.0.0.1")
    with TestClient(app, base_url=ORIGIN) as client:
        token, _ = create_key(engine(client).catalog.service, "admin")
        assert client.get("/v1/images", headers={"X-API-Key": token}).status_code == 200
        # What a browser could attach by itself, or a link could carry: not a key.
        client.cookies.set("X-API-Key", token)
        client.cookies.set("api_key", token)
        assert client.get("/v1/images").status_code == 401
        assert client.get("/v1/images", params={"api_key": token, "key": token}).status_code == 401
        client.cookies.clear()
        # A CORS preflight gets no permission; nor does a same-key answer to another origin.
        preflight = client.options(
            "/v1/images",
            headers={
                "Origin": EVIL,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key",
            },
        )
        assert preflight.status_code >= 400
        answer = client.get("/v1/images", headers={"X-API-Key": token, "Origin": EVIL})
        for response in (preflight, answer):
            assert not any(h.lower().startswith("access-control-") for h in response.headers)
        # A keyed server refuses a cross-site write too, key or not.
        r = client.post("/v1/clusters/run", headers={"X-API-Key": token, "Origin": EVIL})
        assert_refused(r, 403, "cross_site")


def test_host_parsing() -> None:
    assert split_host("Example.COM.:8080") == ("example.com", 8080)
    assert split_host("[::1]:80") == ("::1", 80) and split_host("[::1]") == ("::1", None)
    assert split_host("a:") == ("a", None)  # an empty port is allowed (RFC 3986)
    for bad in ("", ":80", "::1", "[::1]x", "a:\u00b2", "[::1", "a b", "u@h", "[1.2.3.4]"):
        assert split_host(bad) is None, bad
    assert is_loopback("127.8.9.10") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")


def test_serve_refuses_malformed_allowed_hosts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    def started(*_: Any) -> None:  # (a regression would serve, and this test hang)
        raise AssertionError("the server started with a malformed LOOKALIKE_ALLOWED_HOSTS")

    monkeypatch.setattr(uvicorn.Server, "run", started)
    monkeypatch.setenv("LOOKALIKE_ALLOWED_HOSTS", '["photos lan"]')
    result = CliRunner().invoke(cli, ["serve", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 1 and "not a host name" in result.output
