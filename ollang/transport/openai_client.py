"""The synchronous member of the ``openai`` kind's client family: an engine's model list
for the CLI's health checks, over httpx, without the hot path's client (nor LangChain).

The asynchronous member is :class:`~ollang.transport.openai_wire.OpenAIWire`; both read
``GET /models`` with :func:`engine_models` and raise the same errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ollang.errors import InvalidResponseError
from ollang.transport.errors import status_error, translating
from ollang.transport.openai_translate import EngineModel, model_list

__all__ = ["auth_headers", "engine_models", "fetch_models"]


def auth_headers(key: str | None) -> dict[str, str]:
    """The headers that carry an engine's key (none without one)."""
    return {"Authorization": f"Bearer {key}"} if key else {}


def engine_models(url: str, answer: Mapping[str, Any]) -> list[EngineModel]:
    """``GET /models``'s answer read, or the reason it is not a model list.

    Raises:
        InvalidResponseError: another shape (the host is then down, with this reason).
    """
    try:
        return model_list(answer)
    except ValueError as err:
        raise InvalidResponseError(
            url, f"GET /models: {err}", kind="openai", what="not a model list"
        ) from err


def fetch_models(url: str, key: str | None, *, timeout: float) -> list[EngineModel]:
    """The models of the engine at ``url`` (``GET {url}/models``), synchronously.

    Raises:
        OllangError: down, a refused key, a busy engine, or not a model list.
    """
    import httpx

    with translating(url=url, kind="openai"):
        with httpx.Client(timeout=timeout, headers=auth_headers(key)) as client:
            response = client.get(url + "/models")
        if response.status_code >= 400:
            raise status_error(
                response.status_code,
                response.text,
                None,
                url=url,
                kind="openai",
                retry_after=response.headers.get("retry-after"),
            )
        answer = orjson.loads(response.content or b"{}")
    return engine_models(url, answer if isinstance(answer, dict) else {"value": answer})
