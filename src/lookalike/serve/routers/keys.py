"""`/v1/keys`: list, create (the token is shown once) and revoke API keys (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from lookalike.serve.deps import Admin, Engine
from lookalike.serve.keys import Scope, create_key, revoke_key
from lookalike.store.base import KeyRow

router = APIRouter(prefix="/v1", tags=["keys"])


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: Scope = Field(description="read (search, get), write (+ upload, change), admin")
    name: str = Field(default="", max_length=200, description="Who or what uses the key")


def key_json(row: KeyRow) -> dict[str, Any]:
    """A key as listed: never its secret (only the prefix, which finds it)."""
    return {
        "id": row.id,
        "prefix": row.prefix,
        "scope": row.scope,
        "name": row.name,
        "created_at": row.created_at,
        "last_used_at": row.last_used_at,
        "revoked": row.revoked_at is not None,
    }


@router.get("/keys", dependencies=[Admin], summary="Every API key (without secrets)")
def list_keys(lk: Engine) -> dict[str, Any]:
    return {"keys": [key_json(k) for k in lk.catalog.service.api_keys()]}


@router.post(
    "/keys",
    dependencies=[Admin],
    status_code=201,
    summary="Create a key; the response holds the token, shown this once only",
)
def add_key(lk: Engine, body: KeyRequest) -> dict[str, Any]:
    token, row = create_key(lk.catalog.service, body.scope, body.name)
    return {**key_json(row), "key": token}


@router.delete("/keys/{key_id}", dependencies=[Admin], summary="Revoke a key, at once")
def delete_key(
    lk: Engine, key_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="A key id")]
) -> dict[str, Any]:
    revoke_key(lk.catalog.service, key_id)
    return {"id": key_id, "revoked": True}
