"""Indexing: walk folders, read and decode files, describe them, find faces, commit."""

from lookalike.ingest.report import Failure, IndexInterrupted, IndexReport
from lookalike.ingest.run import IndexRun, Parts

__all__ = ["Failure", "IndexInterrupted", "IndexReport", "IndexRun", "Parts"]
