"""Queued indexing throughput with 1 and 2 Celery workers (``lookalike worker``).

A private Redis (``redis-server`` on a free loopback port, in a temporary folder) is the
broker; each run indexes the same folder of real photos (the first ``--images`` Holidays
photos, faces found as by default) into a fresh SQLite data folder, as a job of
``--chunk`` files per chunk (``lookalike index --queue``). Each worker is one process
(``--concurrency 1``) with one inference thread and one decoder thread, so one worker is
one core's worth of work. The workers are started, their models loaded and their vectors
checked, before the clock starts; the time is from sending the job to its last chunk done,
read from the catalog. Runs with 1 and 2 workers take turns, ``--rounds`` times;
images/s is the median per side.

Target: 2 workers index at least 1.8x as many images per second as one, on this 2-core
machine.

Usage: ``python bench/workers.py [--images N] [--chunk N] [--rounds N] [--data DIR]
[--no-write]``
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import common
from lookalike.local_cluster.servers import redis_server
from sections import Target, check, informational

TARGET = 1.8
HOLIDAYS = "holidays/images"
READY_S = 300.0
QUICK = "60 images, one round"


def worker_env(broker: str, data_dir: Path, chunk: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LOOKALIKE_BROKER_URL=broker,
        LOOKALIKE_DATA_DIR=str(data_dir),
        LOOKALIKE_INFERENCE_THREADS="1",
        LOOKALIKE_DECODE_THREADS="1",
        LOOKALIKE_QUEUE_CHUNK_FILES=str(chunk),
        PYTHONPATH=str(common.REPO / "src"),
    )
    return env


@contextlib.contextmanager
def workers(n: int, env: dict[str, str], logs: Path) -> Iterator[list[int]]:
    """``n`` workers, each ready (models loaded, vectors checked); yields their process
    ids; stopped afterwards."""
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for i in range(n):
            log = logs / f"worker-{n}-{i}-{time.monotonic_ns()}.log"
            with log.open("wb") as out:
                cmd = [sys.executable, "-m", "lookalike.cli", "worker"]
                proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
            procs.append((proc, log))
        deadline = time.monotonic() + READY_S
        for proc, log in procs:
            while b" ready." not in log.read_bytes():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker not ready:\n{log.read_text(errors='replace')}")
                time.sleep(0.1)
        yield [proc.pid for proc, _ in procs]
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass(frozen=True)
class Run:
    seconds: float
    indexed: int  # images in the catalog afterwards
    cpu_s: float  # CPU seconds the workers spent on the job
    others: float  # cores other processes of the machine kept busy meanwhile, on average


def cpu_ticks(pid: int) -> int:
    """User + system clock ticks of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


def busy_ticks() -> int:
    """Clock ticks all CPUs of the machine spent busy so far."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return user + nice + system + irq + softirq + steal


def one_run(n: int, folder: Path, broker: str, work: Path, chunk: int) -> Run:
    """Index ``folder`` with ``n`` workers into a fresh data folder: the time, the images
    stored, the workers' CPU time and what the rest of the machine used meanwhile."""
    import redis

    from lookalike.queue.enqueue import enqueue_index
    from lookalike.search.engine import Lookalike
    from lookalike.settings import get_settings

    redis.Redis.from_url(broker).flushdb()
    data = work / f"data-{n}-{time.monotonic_ns()}"
    env = worker_env(broker, data, chunk)
    settings = get_settings(data_dir=data, broker_url=broker, queue_chunk_files=chunk)
    hz = os.sysconf("SC_CLK_TCK")
    with Lookalike(settings) as lk:  # the catalog exists before the workers check vectors
        store = lk.catalog.service
        with workers(n, env, work) as pids:
            mine0, busy0 = [cpu_ticks(p) for p in [*pids, os.getpid()]], busy_ticks()
            t0 = time.perf_counter()
            job = enqueue_index(lk, [folder])
            while (row := store.job(job.id)) is not None and row.status not in ("done", "failed"):
                time.sleep(0.05)
            took = time.perf_counter() - t0
            mine = [cpu_ticks(p) - m for p, m in zip([*pids, os.getpid()], mine0, strict=True)]
            others = (busy_ticks() - busy0 - sum(mine)) / hz / took
        if row is None or row.status != "done":
            raise RuntimeError(f"job ended as {row}")
        indexed = lk.catalog.count_images()
    shutil.rmtree(data, ignore_errors=True)
    return Run(took, indexed, sum(mine[:-1]) / hz, max(0.0, others))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--images", type=int, default=240, help="Holidays photos indexed")
    parser.add_argument("--chunk", type=int, default=16, help="files per chunk")
    parser.add_argument("--rounds", type=int, default=2, help="runs per side")
    common.add_data_argument(parser)
    common.add_output_arguments(parser, QUICK)
    args = parser.parse_args(argv)
    out = common.Output.from_args(args, QUICK)
    if args.quick:
        args.images, args.rounds = 60, 1
    heading = "## Queued indexing: 1 and 2 Celery workers"
    goal = check("2 workers / 1 worker, images/s", float("nan"), ">=", TARGET)
    if shutil.which("redis-server") is None:
        out.skipped("workers", heading, [goal], "redis-server is not installed")
        return common.EXIT_SKIPPED
    source = common.data_dir(args.data, HOLIDAYS) / HOLIDAYS
    photos = common.image_files(source)[: args.images]
    # Files with the same bytes are one image (Holidays has a few).
    distinct = len({hashlib.sha256(p.read_bytes()).digest() for p in photos})
    runs: dict[int, list[Run]] = {1: [], 2: []}
    with common.temp_dir("workers") as work:
        folder = work / "photos"
        folder.mkdir()
        for p in photos:
            (folder / p.name).symlink_to(p)
        with redis_server(work / "redis") as broker:
            for r in range(args.rounds):
                for n in (1, 2):
                    run = one_run(n, folder, broker, work, args.chunk)
                    if run.indexed != distinct:
                        print(f"error: {run.indexed} images stored, {distinct} expected")
                        return 1
                    runs[n].append(run)
                    print(
                        f"round {r + 1}, {n} worker(s): {len(photos) / run.seconds:.1f} "
                        f"images/s, {run.cpu_s / len(photos) * 1e3:.0f} ms CPU per image, "
                        f"other processes {run.others:.2f} cores"
                    )
    rate = {n: len(photos) / common.median([r.seconds for r in rs]) for n, rs in runs.items()}
    ratio = rate[2] / rate[1]
    met = "met" if ratio >= TARGET else "not met"
    rows = [
        [
            n,
            f"{common.median([r.seconds for r in rs]):.1f}",
            f"{rate[n]:.1f}",
            f"{common.median([r.cpu_s for r in rs]) / len(photos) * 1e3:.0f}",
            f"{common.median([r.cpu_s / r.seconds for r in rs]):.2f}",
            f"{common.median([r.others for r in rs]):.2f}",
            " ".join(f"{r.seconds:.1f}" for r in rs),
        ]
        for n, rs in runs.items()
    ]
    headers = [
        "workers",
        "median s",
        "images/s",
        "workers' CPU ms per image",
        "cores used by the workers",
        "cores used by other processes",
        "each run (s)",
    ]
    others = max(common.median([r.others for r in rs]) for rs in runs.values())
    used = common.median([r.cpu_s / r.seconds for r in runs[2]])
    md = "\n\n".join(
        [
            heading,
            f"{len(photos)} Holidays photos (faces found, as by default), chunks of "
            f"{args.chunk} files, each worker one process with one inference and one decoder "
            f"thread, {args.rounds} rounds per side taking turns; a fresh SQLite data folder "
            "and Redis queue per run; time from sending the job to its last chunk done. The "
            "workers' CPU time per image shows what a worker costs with one or two at work; "
            "the cores the machine's other processes kept busy meanwhile (from /proc/stat) "
            f"show how much of the {common.cpu_count()} cores the second worker could have.",
            common.table(headers, rows),
            f"2 workers index **{ratio:.2f}x** as many images per second as one: target "
            f">= {TARGET}x **{met}**"
            + (
                f": other processes kept up to {others:.1f} of the {common.cpu_count()} cores "
                f"busy during the runs, and the two workers got {used:.2f} cores between them."
                if others >= 0.2
                else "."
            ),
        ]
    )
    targets: list[Target] = [
        check("2 workers / 1 worker, images/s", ratio, ">=", TARGET),
        informational("images/s with 1 and 2 workers", f"{rate[1]:.1f} / {rate[2]:.1f}"),
        informational("cores 2 workers got / others used", f"{used:.2f} / {others:.2f}"),
    ]
    out.write("workers", md, targets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
