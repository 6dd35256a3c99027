"""``/sessions``: list, read and delete stored conversations (only the caller's own)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import Field

from ollang.memory import SessionInfo, message_to_dict
from ollang.server.auth import request_owner
from ollang.server.body import body_schema, parse_request
from ollang.server.context import context_of
from ollang.server.errors import ValidationFailedError
from ollang.server.schemas import (
    SESSION_ID_PATTERN,
    ErrorResponse,
    SessionDetail,
    SessionList,
    SessionPatch,
    SessionSummary,
    check_session_id,
)
from ollang.server.sessions import DEFAULT_PAGE

__all__ = ["MAX_PAGE", "router"]

#: Most messages one ``GET /sessions/{id}`` returns (``?limit=``); page with ``?before=``.
MAX_PAGE = 1000


class SessionPage(SessionDetail):
    """``GET /sessions/{id}``: the session and a page of its messages."""

    has_more: bool = Field(
        False, description="Older messages exist: ask again with before = messages[0].id."
    )


router = APIRouter(tags=["sessions"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 404, 422)
}


def valid_session_id(
    session_id: str = Path(..., description="The session's id.", pattern=SESSION_ID_PATTERN),
) -> str:
    """Path parameter dependency: a well-formed session id, else 422."""
    try:
        return check_session_id(session_id)
    except ValueError as err:
        raise ValidationFailedError(str(err), "use the id GET /sessions gives") from err


def _summary(info: SessionInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "title": info.title,
        "model": info.model,
        "system": info.system,
        "options": info.options,
        "created": info.created,
        "updated": info.updated,
        "message_count": info.message_count,
    }


def _message(data: dict[str, Any]) -> dict[str, Any]:
    content = data["content"]
    images: list[str] = []
    if not isinstance(content, str):  # content blocks: their text parts, their images
        images = [
            f"data:{block.get('mime_type') or 'image/png'};base64,{block['base64']}"
            for block in content
            if isinstance(block, dict) and block.get("type") == "image" and block.get("base64")
        ]
        content = "".join(
            block.get("text", "") if isinstance(block, dict) else str(block) for block in content
        )
    metadata = data.get("response_metadata") or {}
    return {
        "id": data["id"],
        "role": data["role"],
        "content": content,
        "reasoning": data.get("reasoning"),
        "status": data["status"],
        "created": data["created"],
        "model": metadata.get("model_name") or metadata.get("model"),
        "images": images,
    }


@router.get("/sessions", response_model=SessionList, responses=_ERRORS, summary="Your sessions")
async def list_sessions(
    request: Request,
    owner: str | None = Depends(request_owner),
    limit: int = Query(200, ge=1, le=10_000, description="At most this many, newest first."),
) -> Any:
    """Sessions created with your key (all sessions when the server has no keys)."""
    infos = await context_of(request).sessions.listing(owner, limit)
    return {"sessions": [_summary(info) for info in infos]}


@router.get(
    "/sessions/{session_id}",
    response_model=SessionPage,
    responses=_ERRORS,
    summary="A session and a page of its messages",
)
async def get_session(
    request: Request,
    owner: str | None = Depends(request_owner),
    session_id: str = Depends(valid_session_id),
    limit: int = Query(
        DEFAULT_PAGE,
        ge=1,
        le=MAX_PAGE,
        description=f"The newest N messages (of the page; default {DEFAULT_PAGE}).",
    ),
    before: str | None = Query(
        None,
        min_length=1,
        max_length=256,
        description="Only messages before this message id (the first id of the previous "
        "page): pages further back.",
    ),
) -> Any:
    """The session's summary and a page of its messages, oldest first: the newest `limit`
    (100 unless given), or with `before=ID` the newest `limit` before message `ID`.
    `has_more` says whether older messages exist (page back with `before` = the first
    message's id). 404 for another key's session."""
    page = await context_of(request).sessions.page(
        session_id,
        owner,
        limit=limit,
        before=before,
        convert=lambda m: _message(message_to_dict(m)),
    )
    return {"session": _summary(page.info), "messages": page.messages, "has_more": page.has_more}


@router.patch(
    "/sessions/{session_id}",
    response_model=SessionSummary,
    responses={**_ERRORS, 409: {"model": ErrorResponse}},
    openapi_extra=body_schema(SessionPatch),
    summary="Rename or retitle a session",
)
async def patch_session(
    request: Request,
    owner: str | None = Depends(request_owner),
    session_id: str = Depends(valid_session_id),
) -> Any:
    """`{"id": NEW}` renames the session (409 if you have a session `NEW`; 404, as for a
    missing session, if another key has one); `{"title": ...}` gives it a title. 404 for
    another key's session."""
    body = await parse_request(request, SessionPatch)
    info = await context_of(request).sessions.rename(
        session_id, owner, new_id=body.id, title=body.title
    )
    return _summary(info)


@router.delete(
    "/sessions/{session_id}",
    status_code=204,
    response_class=Response,
    responses=_ERRORS,
    summary="Delete a session",
)
async def delete_session(
    request: Request,
    owner: str | None = Depends(request_owner),
    session_id: str = Depends(valid_session_id),
) -> Response:
    """Delete the session and its messages. 404 for another key's session."""
    await context_of(request).sessions.delete(session_id, owner)
    return Response(status_code=204)
