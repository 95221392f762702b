"""`/v1/search` routes (to be written)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["search"])
