"""``lookalike serve`` (the HTTP API and web page) and ``lookalike keys`` (API keys)."""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import tempfile
from pathlib import Path

import click

from lookalike.answers import Key, Keys, NewKey, RevokedKey
from lookalike.cli.common import (
    USAGE,
    command_settings,
    data_dir_option,
    echo_json,
    fail,
    fail_with,
    with_engine,
)
from lookalike.errors import LookalikeError
from lookalike.search.engine import Lookalike
from lookalike.serve.keys import create_key, revoke_key
from lookalike.store.base import SCOPES


def _tcp_socket(host: str, port: int) -> socket.socket:
    """The listening socket shared by the workers, made with ``IPPROTO_TCP``.

    uvicorn (0.54) makes it without, and asyncio then leaves Nagle's algorithm on for the
    workers' connections: every keep-alive request after the first waited ~40 ms for the
    client's delayed ACK (uvicorn issue #3149; BENCHMARKS.md, http).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    sock.set_inheritable(True)
    return sock


# Seconds a worker may take to answer the supervisor's health ping before it is replaced.
WORKER_HEALTHCHECK_S = 60


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--no-auth",
    is_flag=True,
    help="Admit requests without an API key (only when listening on loopback).",
)
@data_dir_option
def serve(host: str, port: int, workers: int, no_auth: bool, data_dir: Path | None) -> None:
    """Serve the REST API (/v1, docs at /docs) and the web page (/)."""
    # The server is imported by this command only: the others start without FastAPI.
    import uvicorn

    from lookalike.serve.app import AUTH_ENV, HOST_ENV
    from lookalike.serve.guard import host_policy, is_loopback

    try:
        settings = command_settings(data_dir)
    except LookalikeError as exc:
        fail_with(exc)
    if no_auth and not is_loopback(host):
        fail(f"--no-auth is only allowed on a loopback address, not {host!r}", USAGE)
    try:  # a malformed LOOKALIKE_ALLOWED_HOSTS stops here, not in every worker
        host_policy(settings.allowed_hosts, bound=host, auth=not no_auth)
    except LookalikeError as exc:
        fail_with(exc)
    # Worker processes build the app from the environment.
    os.environ["LOOKALIKE_DATA_DIR"] = str(settings.data_dir)
    for part in ("catalog_url", "cache_url", "broker_url"):
        url = getattr(settings, part)
        if url is not None:
            os.environ[f"LOOKALIKE_{part.upper()}"] = url
    os.environ[AUTH_ENV] = "0" if no_auth else "1"
    os.environ[HOST_ENV] = host
    metrics_dir: str | None = None
    if workers > 1:
        metrics_dir = tempfile.mkdtemp(prefix="lookalike-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    if not no_auth:
        with Lookalike(settings) as engine:
            if not any(k.revoked_at is None for k in engine.catalog.service.api_keys()):
                click.echo(
                    "lookalike: no API key yet: create one with "
                    "`lookalike keys create --scope admin`",
                    err=True,
                )
    # Each worker's ONNX Runtime gets its share of the cores, not all of them each.
    if workers > 1 and "LOOKALIKE_INFERENCE_THREADS" not in os.environ:
        os.environ["LOOKALIKE_INFERENCE_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    config = uvicorn.Config(
        "lookalike.serve.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        # uvicorn kills a worker that misses a health ping for this long. Its default, 5 s,
        # killed busy workers mid-request on a loaded 2-core machine (a worker answers the
        # ping from a thread, which waits for the GIL and the CPU like everything else).
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
    )
    try:
        if workers > 1:
            from uvicorn.supervisors import Multiprocess

            Multiprocess(config, sockets=[_tcp_socket(host, port)]).run()
        else:
            uvicorn.Server(config).run()
    except KeyboardInterrupt:
        pass
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


@click.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command()
@click.option("--scope", type=click.Choice(SCOPES), required=True, help="What the key may do.")
@click.option("--name", default="", help="A note: who or what uses the key.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@data_dir_option
@with_engine
def create(engine: Lookalike, scope: str, name: str, as_json: bool) -> None:
    """Create a key; it is shown once (only its hash is stored)."""
    token, row = create_key(engine.catalog.service, scope, name)
    if as_json:
        echo_json(NewKey.of(row, key=token))
    else:
        click.echo(token)
        click.echo(f"key {row.id} ({row.scope}): store it now, it cannot be shown again", err=True)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M")


@keys.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@data_dir_option
@with_engine
def list_keys(engine: Lookalike, as_json: bool) -> None:
    """The keys: id, scope, name, created, last used, revoked."""
    rows = engine.catalog.service.api_keys()
    if as_json:
        echo_json(Keys(keys=[Key.of(k) for k in rows]))
        return
    for k in rows:
        state = "revoked" if k.revoked_at is not None else "live"
        click.echo(
            f"{k.id}\tlka_{k.prefix}_…\t{k.scope}\t{state}\tcreated {_when(k.created_at)}"
            f"\tlast used {_when(k.last_used_at)}\t{k.name}"
        )


@keys.command()
@click.argument("key_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@data_dir_option
@with_engine
def revoke(engine: Lookalike, key_id: int, as_json: bool) -> None:
    """Revoke key KEY_ID: it stops working at once, in every server process."""
    revoke_key(engine.catalog.service, key_id)
    if as_json:
        echo_json(RevokedKey(key_id=key_id, revoked=True))
    else:
        click.echo(f"key {key_id} revoked")
