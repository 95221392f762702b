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
from collections.abc import Callable, Iterator
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


def postgres_database(url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``url`` (a URL from postgres_server)."""
    return f"{url.rsplit('/', 1)[0]}/{name}"


def postgres_admin(url: str, statement: str) -> None:
    """Run ``statement`` (CREATE or DROP DATABASE: outside a transaction) at ``url``."""
    import psycopg  # the scale extra: only tests that start PostgreSQL need it

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A Redis server with its files in ``folder``, nothing saved to disk; yields its URL."""
    folder.mkdir(parents=True, exist_ok=True)
    log, port = folder / "server.log", free_port()
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder)]
    argv += ["--save", "", "--appendonly", "no", "--logfile", str(log)]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: port_open(port), "Redis", log)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(server, timeout=30)


def stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Ends ``process``: asked to stop (SIGTERM), killed if it has not within ``timeout`` s."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
