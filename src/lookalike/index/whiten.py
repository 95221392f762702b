"""PCA-whitening of float descriptors, learned without labels on the collection itself.

Whitening centres the vectors, rotates them onto their principal axes and rescales each
axis by the inverse square root of its variance (``power`` 0.5), so that the few directions
every photo shares (lighting, the network's habits) stop dominating the cosine, and keeps
the ``dim`` strongest axes. Eigenvalues are shrunk towards their mean (``shrinkage``) before
the rescaling: with few images the weakest axes' variances are noise, and dividing by them
would blow that noise up. The result is L2-normalised again, so the inner product stays a
cosine.

A fitted whitening is data derived from the catalog, like an index: it names the
descriptor version it was fitted on, and ``tag`` changes whenever its numbers do, so an
index built with one is never searched with another.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

from lookalike.errors import BadArgument, BadInput

# Format of ``to_bytes``; another one is not read.
FORMAT = 1


class WhiteningMismatch(BadInput):
    """A stored whitening that does not belong to these vectors (another descriptor
    version, width or format): the caller fits a new one."""


@dataclass(frozen=True, eq=False)
class Whitening:
    """A fitted whitening: ``(x - mean) @ matrix``, then L2-normalised."""

    mean: np.ndarray  # float64 (d,)
    matrix: np.ndarray  # float32 (d, dim): principal axes scaled by their whitening factor
    fitted_on: int  # how many vectors it was learned from
    source_version: str  # the descriptor version of the vectors it takes
    power: float
    shrinkage: float

    @property
    def dim(self) -> int:
        """Width of the whitened vectors."""
        return int(self.matrix.shape[1])

    @property
    def input_dim(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def tag(self) -> str:
        """``pcaw<dim>-<crc32 of the numbers>``: part of the version of an index built on it."""
        crc = zlib.crc32(self.matrix.tobytes(), zlib.crc32(self.mean.tobytes()))
        return f"pcaw{self.dim}-{crc:08x}"

    @classmethod
    def fit(
        cls,
        sample: np.ndarray,
        dim: int,
        *,
        source_version: str,
        power: float = 0.5,
        shrinkage: float = 0.1,
    ) -> Whitening:
        """The whitening of ``sample`` (float (n, d) rows) keeping ``dim`` axes.

        ``power``: each axis is divided by its (shrunk) variance to this power (0.5:
        full whitening, 0: plain PCA). ``shrinkage``: that share of the mean eigenvalue is
        added to every eigenvalue first. Deterministic: the same sample gives the same
        whitening on every machine (float64 arithmetic, eigenvector signs fixed).
        BadArgument if ``dim`` or the sample cannot give such a whitening.
        """
        x = np.asarray(sample, dtype=np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise BadArgument(f"a whitening needs at least 2 vectors, got {len(x)}")
        n, d = x.shape
        if not 0 < dim <= d:
            raise BadArgument(f"whitened width must be between 1 and {d}, not {dim}")
        if not 0.0 <= power <= 1.0 or shrinkage < 0.0:
            raise BadArgument(f"invalid whitening power {power} or shrinkage {shrinkage}")
        mean = x.mean(axis=0)
        centred = x - mean
        eigenvalues, axes = np.linalg.eigh(centred.T @ centred / (n - 1))
        order = np.argsort(eigenvalues)[::-1][:dim]
        eigenvalues = np.maximum(eigenvalues[order], 0.0)
        axes = axes[:, order]
        # eigh's signs are arbitrary: make each axis's largest component positive.
        signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(dim)])
        axes *= np.where(signs == 0, 1.0, signs)
        floor = shrinkage * float(eigenvalues.mean()) + 1e-12
        scale = (eigenvalues + floor) ** -power
        matrix = (axes * scale).astype(np.float32)
        return cls(mean, matrix, n, source_version, power, shrinkage)

    def apply(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` (float (n, input_dim)) whitened: float32 (n, dim), rows L2-normalised."""
        x = np.asarray(rows, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise BadInput(f"rows of shape {x.shape} do not fit a {self.input_dim}-d whitening")
        out = (x - self.mean.astype(np.float32)) @ self.matrix
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.asarray(out / np.maximum(norms, 1e-12), dtype=np.float32)

    def to_bytes(self) -> bytes:
        """The whitening as an ``.npz`` (no pickles)."""
        buffer = io.BytesIO()
        np.savez(
            buffer,
            format=np.array(FORMAT),
            mean=self.mean,
            matrix=self.matrix,
            fitted_on=np.array(self.fitted_on),
            source_version=np.array(self.source_version),
            power=np.array(self.power),
            shrinkage=np.array(self.shrinkage),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, *, source_version: str) -> Whitening:
        """The whitening ``to_bytes`` wrote; WhiteningMismatch if it was fitted on vectors
        of another descriptor version, is of another format, or cannot be read."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as f:
                if int(f["format"]) != FORMAT:
                    raise WhiteningMismatch(f"whitening format {int(f['format'])}, not {FORMAT}")
                found = cls(
                    np.asarray(f["mean"], dtype=np.float64),
                    np.asarray(f["matrix"], dtype=np.float32),
                    int(f["fitted_on"]),
                    str(f["source_version"]),
                    float(f["power"]),
                    float(f["shrinkage"]),
                )
        except (OSError, KeyError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
            raise WhiteningMismatch(f"not a whitening file ({exc})") from None
        if found.source_version != source_version:
            raise WhiteningMismatch(
                f"whitening fitted on {found.source_version} vectors, not {source_version}"
            )
        if found.matrix.ndim != 2 or found.mean.shape != (found.matrix.shape[0],):
            raise WhiteningMismatch("whitening arrays of inconsistent shapes")
        return found
