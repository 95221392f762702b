"""`/v1/keys`: list, create (the token is shown once) and revoke API keys (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from lookalike.answers import Key, Keys, NewKey, RevokedKey
from lookalike.serve.deps import Admin, Engine
from lookalike.serve.keys import create_key, revoke_key
from lookalike.store.base import Scope

router = APIRouter(prefix="/v1", tags=["keys"])


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: Scope = Field(description="read (search, get), write (+ upload, change), admin")
    name: str = Field(default="", max_length=200, description="Who or what uses the key")


@router.get("/keys", dependencies=[Admin], summary="Every API key (without secrets)")
def list_keys(lk: Engine) -> Keys:
    return Keys(keys=[Key.of(k) for k in lk.catalog.service.api_keys()])


@router.post(
    "/keys",
    dependencies=[Admin],
    status_code=201,
    summary="Create a key; the response holds the token, shown this once only",
)
def add_key(lk: Engine, body: KeyRequest) -> NewKey:
    token, row = create_key(lk.catalog.service, body.scope, body.name)
    return NewKey.of(row, key=token)


@router.delete("/keys/{key_id}", dependencies=[Admin], summary="Revoke a key, at once")
def delete_key(
    lk: Engine, key_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="A key id")]
) -> RevokedKey:
    revoke_key(lk.catalog.service, key_id)
    return RevokedKey(key_id=key_id, revoked=True)
