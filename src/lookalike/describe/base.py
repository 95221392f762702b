"""The descriptor interface and its registry.

A descriptor turns decoded RGB images into fixed-size vectors. Encoders never know which
index or search runs on their output (see ``lookalike.index``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol

import numpy as np
from PIL import Image

from lookalike.errors import BadArgument
from lookalike.settings import Settings

Kind = Literal["float", "binary"]


class Descriptor(Protocol):
    """A global image descriptor.

    ``kind == "float"``: ``embed`` returns float32 ``(n, dim)``, rows L2-normalised, compared
    by inner product (cosine). ``kind == "binary"``: uint8 ``(n, dim // 8)`` packed bits,
    compared by Hamming distance.
    """

    name: str
    dim: int
    kind: Kind
    # The shorter image side this descriptor needs; the decoder may shrink JPEGs
    # (draft mode) as long as they stay at least this large.
    input_side: int

    @property
    def version(self) -> str:
        """Changes whenever the vectors would change (weights, input size, pooling, ...):
        vectors of another version are never mixed with these. May load a model (cnn)."""
        ...

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """One row per RGB image: float32 (n, dim) or packed uint8 (n, dim // 8)."""
        ...

    def embed_query(self, image: Image.Image) -> np.ndarray:
        """Rows for one query image: its variants (e.g. rotations), best match wins."""
        ...


class Rider(Protocol):
    """An output pooled from another descriptor's network pass (its ``host``, by name), such
    as the cnn's region vectors: indexing computes both from one pass and stores this one's
    rows as blobs under its own name and version."""

    name: str
    host: str

    @property
    def version(self) -> str: ...

    def embed_with_host(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """``(the host's rows, this output's rows)`` for the images, from one pass."""
        ...


Factory = Callable[[Settings], Descriptor]
_REGISTRY: dict[str, Factory] = {}


def register(name: str) -> Callable[[Factory], Factory]:
    """Class/function decorator: make a descriptor available under ``name``."""

    def deco(factory: Factory) -> Factory:
        _REGISTRY[name] = factory
        return factory

    return deco


def descriptor_names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def create_descriptor(name: str, settings: Settings) -> Descriptor:
    """The descriptor called ``name``; models inside load lazily, on first embed."""
    _load_builtins()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise BadArgument(
            f"unknown descriptor {name!r}; choose one of {', '.join(sorted(_REGISTRY))}"
        ) from None
    return factory(settings)


def _load_builtins() -> None:
    # Importing the modules runs their @register decorators.
    from lookalike.describe import cnn, color, phash  # noqa: F401
