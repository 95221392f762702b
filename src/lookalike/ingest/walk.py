"""Step one of indexing: the regular files under the given paths.

Hidden entries are skipped, the data folder is never walked, and with ``within`` only files
whose real path (symbolic links resolved) lies under one of those folders are admitted.
File names that are not valid UTF-8 come back as ``str`` with surrogate escapes (what
``os.walk`` gives for a ``str`` root) and are stored losslessly by the catalog.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lookalike.files import is_under_any
from lookalike.ingest.report import Failure

FileStat = tuple[str, os.stat_result]


@dataclass
class Walked:
    """Regular files found (sorted within each folder), the folders walked, the failures."""

    files: list[FileStat] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)


def walk(
    paths: Iterable[str | Path],
    *,
    data_dir: Path,
    within: Sequence[str | Path] | None = None,
) -> Walked:
    """The files under ``paths`` (files given directly count too) and what could not be read."""
    walker = _Walker(os.path.realpath(data_dir), within)
    for given in paths:
        walker.add(given)
    return walker.out


def gone_files(paths: Iterable[str | Path]) -> list[str]:
    """Paths given as files that no longer exist (their records should be dropped)."""
    return [os.path.abspath(os.fspath(p)) for p in paths if not os.path.lexists(os.fspath(p))]


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


class _Walker:
    def __init__(self, data_dir: str, within: Sequence[str | Path] | None) -> None:
        self.data_dir = data_dir
        self.roots = None if within is None else {os.path.realpath(r) for r in within}
        self.out = Walked()

    def fail(self, path: str, error: str) -> None:
        self.out.failed.append(Failure(path, error))

    def admitted(self, path: str) -> bool:
        if self.roots is None or is_under_any(os.path.realpath(path), self.roots):
            return True
        self.fail(path, "outside the allowed folders (symbolic link)")
        return False

    def add(self, given: str | Path) -> None:
        root = os.path.abspath(os.fspath(given))
        try:
            st = os.stat(root)
        except OSError as exc:
            self.fail(os.fspath(given), exc.strerror or str(exc))
            return
        if stat.S_ISREG(st.st_mode):
            if self.admitted(root):
                self.out.files.append((root, st))
        elif stat.S_ISDIR(st.st_mode):
            self.out.folders.append(root)
            self.folder(root)
        else:
            self.fail(root, "not a regular file or folder")

    def folder(self, root: str) -> None:
        def on_error(exc: OSError) -> None:
            self.fail(exc.filename or root, f"cannot read folder: {exc.strerror}")

        for here, dirs, names in os.walk(root, onerror=on_error):
            dirs[:] = sorted(
                d
                for d in dirs
                if not _is_hidden(d) and os.path.realpath(os.path.join(here, d)) != self.data_dir
            )
            for name in sorted(names):
                if not _is_hidden(name):
                    self.file(os.path.join(here, name))

    def file(self, full: str) -> None:
        try:
            st = os.stat(full)
        except OSError as exc:
            self.fail(full, exc.strerror or str(exc))
            return
        if stat.S_ISREG(st.st_mode) and self.admitted(full):
            self.out.files.append((full, st))
