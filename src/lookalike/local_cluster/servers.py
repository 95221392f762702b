"""PostgreSQL, Redis and a Redis Cluster, each in its own temporary folder on free loopback
ports, started and stopped by the caller (never a service of the machine).

Debian's packages provide the binaries (``postgresql``, ``redis-server``, which brings
``redis-cli``). PostgreSQL refuses to run as root, so under root its commands run as the
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
    for program in ("redis-server", "redis-cli"):
        if shutil.which(program) is None:
            return f"{program} is not installed (apt-get install redis-server)"
    return None


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def wait_for(ready: Callable[[], bool], what: str, log: Path | None = None) -> None:
    """Returns once ``ready()``; RuntimeError with the end of ``log`` after START_TIMEOUT_S."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        if time.monotonic() > deadline:
            text = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} did not start in {START_TIMEOUT_S} s:\n{text}")
        time.sleep(0.1)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server with its cluster in a new temporary folder (removed after);
    yields its URL (user postgres, database postgres, trust authentication, loopback only).

    The folder is made directly under the system's temporary folder: a caller's own may
    be private to root, where the postgres user could not reach its files.
    """
    folder = Path(tempfile.mkdtemp(prefix="lookalike-pg-"))
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
        wait_for(lambda: port_open(port), "PostgreSQL", log)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres([*pg_ctl, "-m", "immediate", "-w", "stop"]), capture_output=True
        )


def postgres_database(url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``url`` (a URL from postgres_server)."""
    return f"{url.rsplit('/', 1)[0]}/{name}"


def postgres_admin(url: str, statement: str) -> None:
    """Run ``statement`` (CREATE or DROP DATABASE: outside a transaction) at ``url``."""
    import psycopg  # the scale extra: only what starts PostgreSQL needs it

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


@contextlib.contextmanager
def _redis_node(folder: Path, *extra: str, port: int | None = None) -> Iterator[int]:
    """One redis-server on ``port`` (default: a free one) with its files in ``folder``,
    nothing saved; yields its port."""
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = folder / "server.log"
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder)]
    argv += ["--save", "", "--appendonly", "no", "--logfile", str(log), *extra]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: port_open(port), "Redis", log)
        yield port
    finally:
        stop(server, timeout=30)


@contextlib.contextmanager
def redis_server(
    folder: Path, port: int | None = None, *, options: Sequence[str] = ()
) -> Iterator[str]:
    """A Redis server with its files in ``folder``, nothing saved to disk, on ``port`` (or
    a free one: a test restarts a server on its old port), with more ``redis-server``
    ``options`` (e.g. ``--maxmemory``); yields its URL."""
    with _redis_node(folder, *options, port=port) as port:
        yield f"redis://127.0.0.1:{port}/0"


@contextlib.contextmanager
def redis_cluster(folder: Path, nodes: int = 3) -> Iterator[str]:
    """A Redis Cluster of ``nodes`` masters (no replicas) in sub-folders of ``folder``,
    its slots spread over them by ``redis-cli --cluster create``; yields its URL in
    lookalike's form, ``redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...``."""
    with contextlib.ExitStack() as stack:
        ports = [
            stack.enter_context(
                _redis_node(
                    folder / f"node{i}",
                    *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                    # The bus port, else the port + 10000: past 65535 for ephemeral ports.
                    *("--cluster-port", str(free_port())),
                )
            )
            for i in range(nodes)
        ]
        addresses = [f"127.0.0.1:{p}" for p in ports]
        create = ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0"]
        subprocess.run(
            [*create, "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT_S,
        )
        wait_for(lambda: all(_cluster_ok(p) for p in ports), "the Redis Cluster")
        yield "redis+cluster://" + ",".join(addresses)


def _cluster_ok(port: int) -> bool:
    info = subprocess.run(
        ["redis-cli", "-p", str(port), "cluster", "info"], capture_output=True, text=True
    ).stdout
    return "cluster_state:ok" in info


def stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Ends ``process``: asked to stop (SIGTERM), killed if it has not within ``timeout`` s."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
