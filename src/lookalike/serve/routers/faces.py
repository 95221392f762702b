"""`/v1/faces` routes (to be written)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["faces"])
