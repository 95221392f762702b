"""What an indexing run reports: counts, the files that failed, faces found and grouped."""

from __future__ import annotations

from dataclasses import dataclass, field

from lookalike.people.service import ClusterReport


@dataclass
class Failure:
    path: str
    error: str


@dataclass
class IndexReport:
    """What one ``index`` run did."""

    indexed: int = 0
    unchanged: int = 0
    duplicates: int = 0
    removed: int = 0
    failed: list[Failure] = field(default_factory=list)
    interrupted: bool = False
    # Faces found in the images scanned by this run (None: faces were not looked for).
    faces: int | None = None
    # What grouping the new faces did (None: not run).
    people: ClusterReport | None = None
    # SHA-256 of the images this run added to the catalog (content new to it).
    added: set[str] = field(default_factory=set)


class IndexInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``index``: everything committed so far is kept; ``report`` says what."""

    def __init__(self, report: IndexReport) -> None:
        super().__init__("interrupted")
        self.report = report
