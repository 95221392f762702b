"""Does the cnn descriptor give the same vector on other x86 CPUs? Checked under emulation.

ONNX Runtime picks its kernels by the features of the CPU it starts on (SSE4.1, AVX, AVX2,
FMA, AVX-VNNI, AVX-512, AVX512-VNNI, AMX), so the same model can compute differently on
another machine. This script embeds scikit-image's sample photos with the cnn descriptor on
this machine and, through QEMU's user-mode emulator (``qemu-x86_64 -cpu MODEL``, Debian's
``qemu-user`` package), as CPUs with other features would:

- ``Nehalem``: SSE4.2, no AVX. MLAS's SSE kernels, whose u8s8 sums are exact (16-bit
  operands, 32-bit sums), as the VNNI kernels' are.
- ``SandyBridge``: AVX without AVX2 or FMA: the same integer kernels, other float ones.
- ``Haswell``: AVX2 and FMA, this machine's kernels (when it has AVX2): checks that the
  emulation itself changes nothing.

QEMU 7.2 (Debian 12) emulates neither AVX-512 nor VNNI, so those kernels cannot be run here;
``lookalike/models/quantize.py`` says why the INT8 model does not depend on them.

Each code version (this tree, and a baseline revision checked out in a temporary git
worktree: by default the last one that quantized with int8 weights) embeds natively first
(building its models in a temporary cache), then under each emulated CPU from that cache.
Printed per version, precision and CPU: the lowest cosine between the native and the
emulated vector of the same photo, and the share of feature-map values (network outputs)
that are bit-identical.

    .venv/bin/python bench/int8_kernels.py [--cpus Nehalem SandyBridge Haswell]
        [--baseline REV | --no-baseline] [--no-write]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from sections import Target, check, informational

# The last commit whose INT8 model had int8 weights (sums clipped on AVX2 without VNNI).
DEFAULT_BASELINE = "fa05713"
DEFAULT_CPUS = ("Nehalem", "SandyBridge", "Haswell")
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
PRECISIONS = ("fp32", "int8")


@dataclass
class Row:
    """One code version, precision and emulated CPU against the same version run natively."""

    code: str
    precision: str
    version: str
    cpu: str
    min_cosine: float
    identical: float  # share of feature-map values equal to the native ones, bit for bit
    seconds: float


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--cpus", nargs="+", default=list(DEFAULT_CPUS), help="QEMU CPU models")
    ap.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision to compare")
    ap.add_argument("--no-baseline", action="store_true", help="this tree only")
    common.add_output_arguments(ap)
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # internal: embed, save
    ap.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


# --------------------------------------------------------------------------- child


def photos() -> list[Image.Image]:
    """The sample photos shipped in scikit-image's wheel, as RGB PIL images."""
    spec = importlib.util.find_spec("skimage")
    assert spec is not None and spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    out = []
    for name in PHOTOS:
        (path,) = folder.glob(f"{name}.*")
        with Image.open(path) as image:
            out.append(image.convert("RGB"))
    return out


def embed(out: Path, cache_dir: Path) -> None:
    """Write ``out`` (.npz): per precision the descriptor version, vectors and feature maps
    of :data:`PHOTOS`, computed by whatever ``lookalike`` is on the path, on one thread."""
    from lookalike.describe.cnn import CnnDescriptor
    from lookalike.settings import get_settings

    images = photos()
    arrays: dict[str, np.ndarray] = {}
    for precision in PRECISIONS:
        settings = get_settings(
            model_cache_dir=cache_dir, cnn_precision=precision, inference_threads=1
        )
        desc = CnnDescriptor(settings)
        maps = desc.feature_maps(images)
        arrays[f"{precision}/vectors"] = np.concatenate([desc.pool(m[None]) for m in maps])
        arrays[f"{precision}/maps"] = np.concatenate([m.ravel() for m in maps])
        arrays[f"{precision}/version"] = np.array(desc.version)
    np.savez(out, **arrays)


# --------------------------------------------------------------------------- parent


@contextlib.contextmanager
def checkout(revision: str) -> Iterator[Path]:
    """``revision`` checked out in a temporary git worktree (removed afterwards)."""
    with common.git_worktree(revision) as tree:
        yield tree


def run_child(src: Path, cache_dir: Path, out: Path, cpu: str | None) -> float:
    """Embed with the ``lookalike`` in ``src``, natively (``cpu`` None) or under
    ``qemu-x86_64 -cpu CPU``; returns the seconds it took. Exits if the child fails."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(out)]
    cmd += ["--cache-dir", str(cache_dir)]
    if cpu is not None:
        cmd = ["qemu-x86_64", "-cpu", cpu, *cmd]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")}
    env["PYTHONPATH"] = str(src)
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])} ... failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def compare(code: str, cpu: str, native: Path, emulated: Path, seconds: float) -> list[Row]:
    """Rows of one emulated run against the native one of the same code."""
    a, b = np.load(native), np.load(emulated)
    rows = []
    for precision in PRECISIONS:
        va, vb = a[f"{precision}/vectors"], b[f"{precision}/vectors"]
        cosine = float((va * vb).sum(axis=1).min())
        identical = float((a[f"{precision}/maps"] == b[f"{precision}/maps"]).mean())
        version = str(a[f"{precision}/version"])
        rows.append(Row(code, precision, version, cpu, cosine, identical, seconds))
    return rows


def measure(code: str, src: Path, cpus: Sequence[str], work: Path) -> tuple[list[Row], Path]:
    """Every emulated CPU against the native run, for the code in ``src``; also returns the
    native results."""
    cache, native = work / f"{code}-cache", work / f"{code}-native.npz"
    print(f"{code}: native run (builds the models) ...", flush=True)
    run_child(src, cache, native, None)
    rows: list[Row] = []
    for cpu in cpus:
        emulated = work / f"{code}-{cpu}.npz"
        seconds = run_child(src, cache, emulated, cpu)
        rows += compare(code, cpu, native, emulated, seconds)
        for row in rows[-len(PRECISIONS) :]:
            print(
                f"  {cpu:12s} {row.version:40s} min cosine to native {row.min_cosine:.6f}, "
                f"identical values {row.identical:.1%} ({seconds:.0f} s)",
                flush=True,
            )
    return rows, native


def int8_vs_fp32(native: Path) -> float:
    """The lowest cosine between a photo's INT8 and float vectors, natively."""
    a = np.load(native)
    return float((a["int8/vectors"] * a["fp32/vectors"]).sum(axis=1).min())


HEADING = "## INT8 vectors across x86 CPUs (`bench/int8_kernels.py`)"
# Emulated CPUs must give the native vector up to float rounding (fp32 itself reaches 0.99999).
SAME_VECTOR = 0.9999


def targets(rows: Sequence[Row], against_fp32: dict[str, float]) -> list[Target]:
    """The headline: this tree's INT8 vectors on other CPUs, and INT8 against float."""
    mine = [r for r in rows if r.code == "this tree" and "int8" in r.version]
    found = [
        check(
            "this tree's INT8 vector on emulated CPUs, lowest cosine to the native one",
            min((r.min_cosine for r in mine), default=float("nan")),
            ">=",
            SAME_VECTOR,
            "{:.6f}",
        ),
        check(
            "this tree's INT8 against float vectors, natively, lowest cosine",
            against_fp32["this tree"],
            ">=",
            0.97,
            "{:.4f}",
        ),
    ]
    old = [r.min_cosine for r in rows if r.code != "this tree" and "int8" in r.version]
    if old:
        found.append(
            informational(
                "the baseline's INT8 vector on emulated CPUs, lowest cosine to native",
                f"{min(old):.6f}",
            )
        )
    return found


def markdown(rows: Sequence[Row], against_fp32: dict[str, float], cpus: Sequence[str]) -> str:
    table = common.table(
        ["code", "descriptor version", "emulated CPU", "min cosine to native", "identical values"],
        [
            [r.code, f"`{r.version}`", r.cpu, f"{r.min_cosine:.6f}", f"{r.identical:.1%}"]
            for r in rows
        ],
    )
    fp32_lines = [
        f"- {code}: lowest cosine between a photo's INT8 and float vector, natively: {value:.4f}"
        for code, value in against_fp32.items()
    ]
    return "\n".join(
        [
            HEADING,
            "",
            "The cnn descriptor of scikit-image's photos "
            f"({', '.join(PHOTOS)}), computed on this machine and under "
            f"`qemu-x86_64 -cpu MODEL` for {', '.join(cpus)} (Nehalem: SSE only, whose INT8 "
            "sums are exact like VNNI's; SandyBridge: AVX without AVX2/FMA; Haswell: AVX2 like "
            "this machine, a check on the emulation). QEMU 7.2 has no AVX-512 or VNNI to "
            "emulate. *identical values*: share of the network's output values equal bit for "
            "bit; float kernels with and without FMA round differently, so even fp32 is not "
            "bit-identical across CPUs.",
            "",
            table,
            "",
            *fp32_lines,
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        embed(args.child, args.cache_dir)
        return 0
    out = common.Output.from_args(args)
    if shutil.which("qemu-x86_64") is None:
        why = "qemu-x86_64 not found (Debian: apt-get install qemu-user)"
        out.skipped("int8-kernels", HEADING, targets([], {"this tree": float("nan")}), why)
        return 0
    print(f"CPU: {common.cpu_model()} ({common.cpu_features()})")
    rows: list[Row] = []
    against_fp32: dict[str, float] = {}
    with common.temp_dir("int8-kernels") as work:
        found, native = measure("this tree", common.REPO / "src", args.cpus, work)
        rows += found
        against_fp32["this tree"] = int8_vs_fp32(native)
        if not args.no_baseline:
            code = f"baseline {args.baseline}"
            with checkout(args.baseline) as tree:
                found, native = measure(code, tree / "src", args.cpus, work)
            rows += found
            against_fp32[code] = int8_vs_fp32(native)
    for code, value in against_fp32.items():
        print(f"{code}: lowest INT8-vs-float cosine natively {value:.4f}")
    out.write("int8-kernels", markdown(rows, against_fp32, args.cpus), targets(rows, against_fp32))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
