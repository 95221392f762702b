"""Real PostgreSQL and Redis servers for tests: each in its own temporary folder, on a free
loopback port, started and stopped by the test run (never a service of the machine).

Debian's packages provide the binaries (``.ci/run`` installs ``postgresql`` and
``redis-server``). PostgreSQL refuses to run as root, so under root its commands run as the
``postgres`` user (``runuser``), which then owns the server's folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
START_TIMEOUT_S = 60


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:port."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def missing_postgres() -> str | None:
    """Why PostgreSQL cannot be started here, or None."""
    if not (POSTGRES_BIN / "pg_ctl").exists():
        return f"PostgreSQL 15 is not installed ({POSTGRES_BIN}; apt-get install postgresql)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser to start PostgreSQL as postgres"
    return None


def missing_redis() -> str | None:
    """Why Redis cannot be started here, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install redis-server)"
    return None


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _wait_for(ready: Callable[[], bool], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        if time.monotonic() > deadline:
            text = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{what} did not start in {START_TIMEOUT_S} s:\n{text}")
        time.sleep(0.1)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server with its cluster in a new temporary folder (removed after);
    yields its URL (user postgres, database postgres, trust authentication, loopback only).

    The folder is made directly under the system's temporary folder: pytest's own are
    private to root, where the postgres user could not reach its files.
    """
    folder = Path(tempfile.mkdtemp(prefix="lookalike-test-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
        with _postgres_in(folder) as url:
            yield url
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _postgres_in(folder: Path) -> Iterator[str]:
    data, log, port = folder / "data", folder / "server.log", free_port()
    subprocess.run(
        _as_postgres(
            [str(POSTGRES_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
        ),
        check=True,
        capture_output=True,
    )
    options = f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off"
    pg_ctl = [str(POSTGRES_BIN / "pg_ctl"), "-D", str(data), "-l", str(log)]
    subprocess.run(
        _as_postgres([*pg_ctl, "-o", options, "-w", "start"]), check=True, capture_output=True
    )
    try:
        _wait_for(lambda: port_open(port), "PostgreSQL", log)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres([*pg_ctl, "-m", "immediate", "-w", "stop"]), capture_output=True
        )


@contextlib.contextmanager
def redis_server(folder: Path, port: int | None = None) -> Iterator[str]:
    """A Redis server with its files in ``folder``, nothing saved to disk, on ``port`` (or a
    free one); yields its URL."""
    port = port or free_port()
    server = _redis(folder, port)
    try:
        _wait_for(lambda: port_open(port), "Redis", folder / "server.log")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(server, timeout=30)


@contextlib.contextmanager
def redis_cluster(folder: Path, nodes: int = 3) -> Iterator[str]:
    """A Redis Cluster of ``nodes`` masters without replicas, each in a subfolder of
    ``folder`` with its own port and cluster-bus port, joined by ``redis-cli --cluster
    create``; yields its URL as the cache takes it (``redis+cluster://host:port,...``)."""
    started: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    try:
        for i in range(nodes):
            here, port = folder / f"node{i}", free_port()
            here.mkdir(parents=True, exist_ok=True)
            cluster = ["--cluster-enabled", "yes", "--cluster-port", str(free_port())]
            cluster += ["--cluster-config-file", str(here / "nodes.conf")]
            started.append(_redis(here, port, cluster))
            ports.append(port)
        for i, port in enumerate(ports):
            _wait_for(lambda p=port: port_open(p), "Redis", folder / f"node{i}" / "server.log")
        addresses = [f"127.0.0.1:{p}" for p in ports]
        create = ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0"]
        subprocess.run(
            [*create, "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT_S,
        )
        _wait_for(lambda: all(_cluster_ok(p) for p in ports), "Redis Cluster", folder / "node0")
        yield "redis+cluster://" + ",".join(addresses)
    finally:
        for server in started:
            stop(server, timeout=30)


def _redis(folder: Path, port: int, extra: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """``redis-server`` on 127.0.0.1:``port``, its files and log in ``folder``, no saving."""
    folder.mkdir(parents=True, exist_ok=True)
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder)]
    argv += ["--save", "", "--appendonly", "no", "--logfile", str(folder / "server.log")]
    return subprocess.Popen([*argv, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def _cluster_ok(port: int) -> bool:
    """Whether the cluster node on ``port`` says every slot is served."""
    info = subprocess.run(
        ["redis-cli", "-p", str(port), "cluster", "info"], capture_output=True, text=True
    )
    return "cluster_state:ok" in info.stdout


def stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Ends ``process``: asked to stop (SIGTERM), killed if it has not within ``timeout`` s."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
