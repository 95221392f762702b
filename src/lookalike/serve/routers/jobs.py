"""`/v1/jobs` routes (to be written)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["jobs"])


def shutdown(app: object) -> None:
    """Stop this process's job threads (called when the server stops)."""
