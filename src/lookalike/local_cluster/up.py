"""A whole scale-out lookalike on this machine: one PostgreSQL catalog, Redis for the cache
(one node, or a 3-node Redis Cluster) and the Celery broker, API servers and workers, each
server and worker with a data folder of its own (its faiss index files) under one folder.

Every part runs on loopback. The servers run without API keys (``--no-auth``, which only a
loopback address allows), and share one uploads folder that the workers read.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lookalike.local_cluster.servers import (
    free_port,
    postgres_server,
    redis_cluster,
    redis_server,
    stop,
)

SERVER_START_S = 120


@dataclass
class LocalCluster:
    """Where the parts of a running local cluster answer."""

    folder: Path
    catalog_url: str
    cache_url: str
    broker_url: str
    servers: list[str] = field(default_factory=list)  # base URLs of the API servers
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def environment(self) -> dict[str, str]:
        """The ``LOOKALIKE_*`` variables that make any lookalike command a node of it."""
        return {
            "LOOKALIKE_CATALOG_URL": self.catalog_url,
            "LOOKALIKE_CACHE_URL": self.cache_url,
            "LOOKALIKE_BROKER_URL": self.broker_url,
            "LOOKALIKE_UPLOADS_DIR": str(self.folder / "uploads"),
        }


@contextlib.contextmanager
def local_cluster(
    folder: Path, *, servers: int = 2, workers: int = 2, cluster_cache: bool = False
) -> Iterator[LocalCluster]:
    """Start the parts (logs in ``folder/logs``), yield where they answer once every server
    answers its health check, and stop them all after."""
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        catalog_url = stack.enter_context(postgres_server())
        broker = stack.enter_context(redis_server(folder / "redis"))
        cache_url = (
            stack.enter_context(redis_cluster(folder / "redis-cluster"))
            if cluster_cache
            else broker.removesuffix("/0") + "/1"
        )
        running = LocalCluster(folder, catalog_url, cache_url, broker)
        env = {**os.environ, **running.environment()}
        for i in range(workers):
            running.workers.append(
                stack.enter_context(_process(folder, f"worker{i}", ["worker"], env))
            )
        for i in range(servers):
            port = free_port()
            args = ["serve", "--no-auth", "--host", "127.0.0.1", "--port", str(port)]
            stack.enter_context(_process(folder, f"server{i}", args, env))
            running.servers.append(f"http://127.0.0.1:{port}")
        for i, base in enumerate(running.servers):
            _wait_for_health(base, folder / "logs" / f"server{i}.log")
        yield running


@contextlib.contextmanager
def _process(
    folder: Path, name: str, args: list[str], env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """``lookalike --data-dir folder/name ARGS``, logging to ``folder/logs/name.log``."""
    cmd = [sys.executable, "-m", "lookalike.cli", "--data-dir", str(folder / name), *args]
    with (folder / "logs" / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        yield process
    finally:
        stop(process, timeout=30)


def _wait_for_health(base: str, log: Path) -> None:
    """Returns once ``base/healthz`` answers 200; RuntimeError with the log's end if not."""
    import httpx

    deadline = time.monotonic() + SERVER_START_S
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{base} did not answer in {SERVER_START_S} s:\n{tail}")
        time.sleep(0.2)
