"""The start-up check: does this worker compute the vectors the catalog already holds?

Every worker, before it takes a task, embeds a few built-in images with each descriptor and
a few built-in face chips with the face network, and compares the result with the catalog's
*reference* under a ``meta`` key naming the model versions (the first worker to check
stores its own, first writer wins). Float vectors may differ by rounding only (max absolute
difference ``FLOAT_TOLERANCE``); hashes must be equal bit for bit. A worker whose CPU or
libraries compute other vectors refuses to index, so vectors of two machines never mix.

The images are made here, not shipped: integer patterns (exact on every machine) and one
tiny JPEG, kept as bytes, so the decoder (libjpeg) is checked too. No face photo ships at
run time, so the face network is checked on synthetic aligned chips (its input as the
detector and aligner hand it over).
"""

from __future__ import annotations

import base64
import io
import platform
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
from PIL import Image

from lookalike.decode import decode
from lookalike.describe.base import descriptor_names
from lookalike.errors import VectorMismatch
from lookalike.faces.config import CHIP_SIZE
from lookalike.faces.embed import embed_chips
from lookalike.search.engine import Lookalike

# Bumped when the probe images change (the old references then stay unused).
PROBE_VERSION = "probe-v1"
FLOAT_TOLERANCE = 1e-4
_MACHINE = "machine"
# A 64x48 JPEG (gradients and a checkerboard, quality 75), decoded as indexing decodes files.
_JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRofHh0aHBwgJC4nICIs"
    "IxwcKDcpLDAxNDQ0Hyc5PTgyPC4zNDL/2wBDAQkJCQwLDBgNDRgyIRwhMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIy"
    "MjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjL/wAARCAAwAEADASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAA"
    "AAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAk"
    "M2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKT"
    "lJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QA"
    "HwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdh"
    "cRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hp"
    "anN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk"
    "5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwDxKO29q3I7b2q9Hbe1Vo7b2r6adf8Asf8Av8/ytb7+5zYfEe0K"
    "Mdt7VuR23tV6O29qrR23tXLOv/Y/9/n+Vrff3Pcw+I9oUY7b2rcjtvar0dt7VWjtvauadf8Asf8Av8/ytb7+57uH"
    "xHtCjHbe1bkdt7Vejtvaq0dt7Vyzr/2P/f5/la339z3MPiPaHKR23tW5Hbe1Xo7b2qtHbe1azr/2P/f5/la339z8"
    "Mw+J9oUY7b2rcjtvar0dt7VWjtvauadf+x/7/P8AK1vv7nuYfE+0KMdt7VuR23tV6O29qrR23tXLOv8A2P8A3+f5"
    "Wt9/c93D4n2hRjtvatyO29qvR23tVaO29q5Z1/7H/v8AP8rW+/ue5h8T7Q5SO29q3I7b2q9Hbe1Vo7b2radf+x/7"
    "/P8AK1vv7n4Zh8R7Qox23tW5Hbe1Xo7b2qtHbe1cs6/9j/3+f5Wt9/c93D4j2hRjtvatyO29qvR23tVaO29q5Z1/"
    "7H/v8/ytb7+57mHxHtCjHbe1bkdt7Vejtvaq0dt7VzTr/wBj/wB/n+Vrff3Pdw+I9of/2Q=="
)
_LIBRARIES = ("numpy", "pillow", "onnxruntime", "dlib-bin", "faiss-cpu")


def probe_images() -> list[Image.Image]:
    """The built-in images: three 160x120 integer patterns and the decoded JPEG."""
    y, x = np.mgrid[0:120, 0:160].astype(np.int64)
    patterns = [
        np.dstack([x * 255 // 159, y * 255 // 119, (x + y) * 255 // 278]),
        np.dstack([(x * 7919 + y * 104729) % 251, (x * y) % 241, ((x ^ y) * 37) % 256]),
        np.dstack([((x // 16 + y // 16) % 2) * 200 + 20, (x * 3) % 256, 255 - (y * 2)]),
    ]
    images = [Image.fromarray(p.astype(np.uint8), "RGB") for p in patterns]
    jpeg = decode(_JPEG, "probe.jpg", min_side=None, max_pixels=64 * 48).image
    return [*images, jpeg]


def probe_chips() -> list[np.ndarray]:
    """Two synthetic aligned face chips: uint8 (CHIP_SIZE, CHIP_SIZE, 3)."""
    y, x = np.mgrid[0:CHIP_SIZE, 0:CHIP_SIZE].astype(np.int64)
    centre = (x - CHIP_SIZE // 2) ** 2 + (y - CHIP_SIZE // 2) ** 2
    blob = np.dstack([255 - centre // 24, 200 - centre // 40, 160 - centre // 60])
    noise = np.dstack([(x * 31 + y * 17) % 256, (x * y * 13) % 256, (x * 5 + y * 11) % 256])
    return [np.clip(c, 0, 255).astype(np.uint8) for c in (blob, noise)]


def compute(engine: Lookalike) -> dict[str, np.ndarray]:
    """This process's vectors of the built-in images: each descriptor's rows, and the face
    embeddings of the built-in chips (key ``face``)."""
    images = probe_images()
    out = {name: np.asarray(engine.descriptor(name).embed(images)) for name in descriptor_names()}
    out["face"] = embed_chips(probe_chips(), encoder=engine.people.encoder)
    return out


def reference_key(engine: Lookalike) -> str:
    """The ``meta`` key of the reference vectors: the probe and every model version."""
    named = ",".join(f"{k}={v}" for k, v in sorted(_versions(engine).items()))
    return f"reference-vectors/{PROBE_VERSION}/{named}"


def check(engine: Lookalike) -> None:
    """Compare this process's vectors with the catalog's reference (storing them as the
    reference if there is none yet); VectorMismatch, naming what differs and both
    machines, if they differ beyond rounding."""
    mine = compute(engine)
    ours = pack(mine)
    stored = engine.catalog.service.put_meta_once(reference_key(engine), ours)
    if stored == ours:
        return
    theirs, where = unpack(stored)
    problem = difference(theirs, mine)
    if problem:
        raise VectorMismatch(
            f"this worker's {problem} (reference written on: {where}; this machine: "
            f"{machine()}): a CPU or library difference; vectors of the two must not be "
            "mixed, so this worker refuses to index"
        )


def difference(reference: Mapping[str, np.ndarray], mine: Mapping[str, np.ndarray]) -> str:
    """What differs between two sets of probe vectors, as words ("" when nothing does):
    float arrays beyond FLOAT_TOLERANCE, integer (hash) arrays in any bit."""
    for name in sorted(set(reference) | set(mine)):
        a, b = reference.get(name), mine.get(name)
        if a is None or b is None or a.shape != b.shape or a.dtype != b.dtype:
            return f"{name} vectors are not of the reference's kind"
        if np.issubdtype(a.dtype, np.floating):
            worst = float(np.max(np.abs(a.astype(np.float64) - b), initial=0.0))
            if not worst <= FLOAT_TOLERANCE:
                return (
                    f"{name} vectors differ from the catalog's reference by up to {worst:.2g} "
                    f"(at most {FLOAT_TOLERANCE:g} allowed)"
                )
        elif not np.array_equal(a, b):
            bits = int(np.unpackbits(np.bitwise_xor(a, b).view(np.uint8)).sum())
            return f"{name} hashes differ from the catalog's reference in {bits} bits"
    return ""


def pack(vectors: Mapping[str, np.ndarray]) -> bytes:
    """``vectors`` and a description of this machine as ``.npz`` bytes."""
    buf = io.BytesIO()
    arrays: dict[str, Any] = {**vectors, _MACHINE: np.array(machine())}
    np.savez(buf, **arrays)
    return buf.getvalue()


def unpack(data: bytes) -> tuple[dict[str, np.ndarray], str]:
    """The vectors and the machine description that :func:`pack` stored."""
    with np.load(io.BytesIO(data), allow_pickle=False) as found:
        arrays = {k: found[k] for k in found.files}
    where = str(arrays.pop(_MACHINE, "an unknown machine"))
    return arrays, where


def machine() -> str:
    """This machine as the vectors depend on it: CPU, architecture and library versions."""
    libs = ", ".join(f"{n} {_version(n)}" for n in _LIBRARIES)
    return f"{_cpu()} ({platform.machine()}), Python {platform.python_version()}, {libs}"


def _versions(engine: Lookalike) -> dict[str, str]:
    out = {n: engine.descriptor(n).version for n in descriptor_names()}
    out["face"] = engine.people.version
    return out


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "absent"


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
