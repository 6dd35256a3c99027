"""``/admin/keys`` (managed keys, with an admin key) and ``/usage`` (usage per key).

The same operations as ``ollang keys`` and ``ollang usage``, on the server's store: a
key made here works on every replica on that store within 5 s. Secrets are shown once, in
the answer that creates or rotates them; listings never hold them (nor their hashes).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from ollang.memory.keys import issue_key, rotate_secret
from ollang.server.auth import authenticate, request_admin
from ollang.server.context import ServerContext, context_of
from ollang.server.schemas import ErrorResponse

__all__ = ["KeyCreate", "router"]

router = APIRouter(tags=["keys and usage"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "No key, or one the server does not accept."},
    403: {"model": ErrorResponse, "description": "Not an admin key."},
}
_ADMIN = [Depends(request_admin)]
_NAME = Path(..., description="The key's name.", max_length=64)
_DAY = r"^\d{4}-\d{2}-\d{2}$"


class KeyCreate(BaseModel):
    """A managed key to create: its name and policy (limits are off when not given)."""

    name: str = Field(..., min_length=1, max_length=64, description="The key's name, e.g. alice.")
    models: list[str] = Field(
        default_factory=list, description="fnmatch patterns of the models it may use (none: all)."
    )
    rpm: int | None = Field(None, ge=1, description="Requests per minute.")
    tpm: int | None = Field(None, ge=1, description="Tokens per minute (input + output).")
    daily_tokens: int | None = Field(None, ge=1, description="Tokens per UTC day.")
    max_concurrent: int | None = Field(None, ge=1, description="Requests at once.")
    weight: float = Field(1.0, gt=0, description="Share of the hosts in fair queueing.")


async def _changed(ctx: ServerContext) -> None:
    """Honour a change made here at once on this replica (the others within 5 s)."""
    await asyncio.to_thread(ctx.auth.refresh)


@router.get("/admin/keys", responses=_ERRORS, dependencies=_ADMIN, summary="The managed keys")
async def list_keys(request: Request) -> Any:
    """Every managed key and its policy, revoked ones included (never a secret)."""
    keys = await asyncio.to_thread(context_of(request).store.list_keys)
    return {"keys": [k.to_dict() for k in keys]}


@router.post(
    "/admin/keys", status_code=201, responses=_ERRORS, dependencies=_ADMIN, summary="Create a key"
)
async def create_key(request: Request, body: KeyCreate) -> Any:
    """Create a managed key; the answer holds its ``secret``, shown this once. 409 if the
    name is taken."""
    ctx = context_of(request)
    limits = body.model_dump(exclude={"name"})
    key, secret = await asyncio.to_thread(lambda: issue_key(ctx.store, body.name, **limits))
    await _changed(ctx)
    return {"key": key.to_dict(), "secret": secret}


@router.delete("/admin/keys/{name}", responses=_ERRORS, dependencies=_ADMIN, summary="Revoke a key")
async def revoke_key(request: Request, name: str = _NAME) -> Any:
    """Revoke a key for good: it answers 401 (with a hint) from now on. 404 if unknown."""
    ctx = context_of(request)
    key = await asyncio.to_thread(ctx.store.revoke_key, name)
    await _changed(ctx)
    return {"key": key.to_dict()}


@router.post(
    "/admin/keys/{name}/rotate",
    responses=_ERRORS,
    dependencies=_ADMIN,
    summary="Rotate a key's secret",
)
async def rotate_key(request: Request, name: str = _NAME) -> Any:
    """A new secret for the key (in the answer, once); the old one stops working. The key
    keeps its sessions and policy."""
    ctx = context_of(request)
    key, secret = await asyncio.to_thread(rotate_secret, ctx.store, name)
    await _changed(ctx)
    return {"key": key.to_dict(), "secret": secret}


@router.get("/usage", responses={401: _ERRORS[401]}, summary="Usage per key, model and day")
async def usage(
    request: Request,
    since: str | None = Query(None, pattern=_DAY, description="From this UTC day on."),
    key: str | None = Query(None, max_length=64, description="Only this key's name."),
) -> Any:
    """Requests, input and output tokens, errors, busy and queue seconds per key, model and
    UTC day. An admin key (or anyone, on a server without keys) sees every key; any other
    key sees only its own."""
    policy = authenticate(request)
    ctx = context_of(request)
    if ctx.auth.required and not getattr(request.state, "admin", False):
        key = policy.name
    rows = await asyncio.to_thread(lambda: ctx.store.usage(since=since, key=key))
    return {"usage": [r.to_dict() for r in rows]}
