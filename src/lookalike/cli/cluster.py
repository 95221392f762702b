"""``lookalike cluster up``: a scale-out lookalike on this machine, to try it."""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
from pathlib import Path

import click

from lookalike.cli.common import fail


@click.group()
def cluster() -> None:
    """Run a scale-out lookalike on this machine (PostgreSQL, Redis, servers, workers)."""


@cluster.command()
@click.option("--servers", default=2, show_default=True, type=click.IntRange(1, 16))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(0, 16))
@click.option("--redis-cluster", is_flag=True, help="Serve the cache from a 3-node Redis Cluster.")
@click.option(
    "--folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the parts keep their files and logs (default: a temporary folder, "
    "removed when the cluster stops).",
)
def up(servers: int, workers: int, redis_cluster: bool, folder: Path | None) -> None:
    """Start PostgreSQL, Redis, API servers and Celery workers on loopback ports, print
    where they answer, and run until Ctrl-C. Needs Debian's postgresql and redis-server."""
    from lookalike.local_cluster.servers import missing_postgres, missing_redis
    from lookalike.local_cluster.up import local_cluster

    why = missing_postgres() or missing_redis()
    if why:
        fail(why)
    chosen = folder or Path(tempfile.mkdtemp(prefix="lookalike-cluster-"))
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        with local_cluster(
            chosen, servers=servers, workers=workers, cluster_cache=redis_cluster
        ) as running:
            for base in running.servers:
                click.echo(f"server  {base}  (web page {base}/, API docs {base}/docs)")
            click.echo(f"workers {len(running.workers)}, logs in {chosen / 'logs'}")
            click.echo("Any lookalike command joins it with these settings:")
            for name, value in running.environment().items():
                click.echo(f"  export {name}={value}")
            click.echo("Ctrl-C stops it.")
            stopping.wait()
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        fail(str(exc))
    finally:
        if folder is None:
            shutil.rmtree(chosen, ignore_errors=True)
