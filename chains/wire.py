"""Ollama's REST API for the server's hot path: one keep-alive pool per host, NDJSON in batches.

The library's models go through ``ChatOllama`` (the official ``ollama`` client, httpx).
The server streams hundreds of answers at once, and there that path costs most of the
CPU per token: every NDJSON line is read with its own socket wake-up, validated into
a pydantic object, turned into a LangChain message chunk, merged into the answer so far
and passed through callbacks. Putting a faster transport under ``ChatOllama`` leaves all
of that (measured: the raw ``ollama`` client alone ~250 µs a token here; the server's
goal is ~100 µs for everything), so the server talks to Ollama here instead:

* one ``aiohttp`` session per host and event loop, connections kept alive and reused
  across turns (no connect per request);
* the stream is read in whatever pieces the socket delivers, and every complete line
  in a piece is parsed (``orjson``) and handed on *together*, so tokens that queued up
  become one write to the client;
* errors become ollang's (:mod:`ollang.chains.errors`), as the library's do.

Closing the async iterator (a client gone, a cancelled task) closes the connection at
once, which is what stops generation on the Ollama side.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import aiohttp
import orjson
from langchain_core.messages import BaseMessage

from ollang.chains.errors import (
    ModelNotFoundError,
    OllamaResponseError,
    OllamaTimeoutError,
    OllamaUnavailableError,
)
from ollang.errors import OllangError

__all__ = ["OllamaWire", "wire_error", "wire_messages"]

Line = dict[str, Any]


_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def wire_messages(messages: Sequence[BaseMessage]) -> list[Line]:
    """LangChain messages as ``/api/chat`` messages (role, content, images, tool calls)."""
    out: list[Line] = []
    for message in messages:
        entry: Line = {"role": _ROLES.get(message.type, "user"), "content": message.text}
        images = [
            block.get("base64") or block.get("data")
            for block in (message.content if isinstance(message.content, list) else [])
            if isinstance(block, dict) and block.get("type") == "image"
        ]
        if images:
            entry["images"] = [image for image in images if image]
        calls = getattr(message, "tool_calls", None)
        if calls:
            entry["tool_calls"] = [
                {"function": {"name": call["name"], "arguments": call["args"]}} for call in calls
            ]
        if message.type == "tool":
            entry["tool_name"] = getattr(message, "name", None) or ""
        out.append(entry)
    return out


def wire_error(err: BaseException, url: str, model: str | None = None) -> OllangError:
    """An aiohttp/JSON failure talking to ``url`` as an ollang error."""
    if isinstance(err, OllangError):
        return err
    if isinstance(err, aiohttp.ConnectionTimeoutError):
        return OllamaUnavailableError(url, "connect timeout")
    if isinstance(err, (aiohttp.ServerTimeoutError, asyncio.TimeoutError, TimeoutError)):
        return OllamaTimeoutError(url, "no data within the read timeout")
    if isinstance(err, aiohttp.ClientConnectorError):
        return OllamaUnavailableError(url)
    if isinstance(err, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
        return OllamaResponseError(
            str(err) or type(err).__name__,
            message=f"the connection to Ollama at {url} was cut mid-response",
            hint="is Ollama still running (`ollama serve`)? try again",
        )
    if isinstance(err, orjson.JSONDecodeError):
        return OllamaResponseError(
            str(err),
            message=f"Ollama at {url} sent an invalid response (not JSON)",
            hint="check that OLLAMA_HOST points at an Ollama server",
        )
    if isinstance(err, (aiohttp.ClientError, OSError)):
        return OllamaUnavailableError(url, type(err).__name__)
    return OllamaResponseError(
        f"{type(err).__name__}: {err}", message=f"talking to Ollama at {url} failed: {err}"
    )


def _status_error(status: int, body: bytes, url: str, model: str | None) -> OllangError:
    try:
        detail = str(orjson.loads(body).get("error", ""))
    except (orjson.JSONDecodeError, AttributeError):
        detail = body.decode("utf-8", "replace")[:200]
    if status == 404 and model is not None and "not found" in detail:
        return ModelNotFoundError(model)
    return OllamaResponseError(detail or f"HTTP {status}", status)


class OllamaWire:
    """One Ollama server's API, over a keep-alive pool per event loop.

    Args:
        url: The base URL (``http://host:port``).
        connect_timeout: Seconds to connect (a missing server fails fast).
        read_timeout: Seconds to wait for the next piece of an answer (a model may load).
        max_connections: Pool size; ``None`` for no limit (Ollama queues by itself).
    """

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 120.0,
        max_connections: int | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(
            total=None,
            connect=connect_timeout,
            sock_connect=connect_timeout,
            sock_read=read_timeout,
        )
        self.max_connections = max_connections
        # A session belongs to the loop it was made in (uvicorn's, a test client's).
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession]
        self._sessions = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"OllamaWire({self.url!r})"

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections or 0,
                keepalive_timeout=30,
                enable_cleanup_closed=False,
                use_dns_cache=True,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=self.timeout,
                json_serialize=lambda v: orjson.dumps(v).decode(),
                skip_auto_headers=("User-Agent",),
                headers={"User-Agent": "ollang"},
            )
            self._sessions[loop] = session
        return session

    async def close(self) -> None:
        """Close this loop's session (and its connections)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        session = self._sessions.pop(loop, None)
        if session is not None:
            await session.close()

    async def get_json(self, path: str, *, timeout: float | None = None) -> Line:
        """``GET path`` as JSON.

        Raises:
            OllangError: the server is down, answered an error, or sent garbage.
        """
        return await self._json("GET", path, None, timeout)

    async def post_json(
        self, path: str, body: Mapping[str, Any], *, timeout: float | None = None
    ) -> Line:
        """``POST path`` with a JSON body, answered with one JSON object."""
        return await self._json("POST", path, body, timeout)

    async def _json(
        self, method: str, path: str, body: Mapping[str, Any] | None, timeout: float | None
    ) -> Line:
        session = self._session()
        limit = aiohttp.ClientTimeout(total=timeout) if timeout else None
        try:
            async with session.request(
                method,
                self.url + path,
                data=orjson.dumps(body) if body is not None else None,
                headers={"Content-Type": "application/json"} if body is not None else None,
                timeout=limit,
            ) as response:
                raw = await response.read()
                if response.status >= 400:
                    model = body.get("model") if body else None
                    raise _status_error(response.status, raw, self.url, model)
                value = orjson.loads(raw) if raw.strip() else {}
                return value if isinstance(value, dict) else {"value": value}
        except Exception as err:
            raise wire_error(err, self.url) from err

    async def stream(self, path: str, body: Mapping[str, Any]) -> AsyncGenerator[list[Line], None]:
        """``POST path`` and yield its NDJSON lines, parsed, in the batches they arrived in.

        An ``{"error": ...}`` line (Ollama's in-stream error) raises
        :class:`OllamaResponseError`. Closing the iterator closes the connection.

        Raises:
            OllangError: before or during the stream.
        """
        session = self._session()
        model = body.get("model")
        try:
            async with session.post(
                self.url + path,
                data=orjson.dumps(body),
                headers={"Content-Type": "application/json"},
            ) as response:
                if response.status >= 400:
                    raise _status_error(response.status, await response.read(), self.url, model)
                finished = False
                try:
                    pending = b""
                    async for piece in response.content.iter_any():
                        if b"\n" not in piece:
                            pending += piece
                            continue
                        *complete, pending = (pending + piece).split(b"\n")
                        batch = [orjson.loads(line) for line in complete if line.strip()]
                        for index, line in enumerate(batch):
                            if "error" in line:  # what came before it is still the answer
                                if index:
                                    yield batch[:index]
                                raise OllamaResponseError(str(line["error"]), -1)
                        if batch:
                            yield batch
                    if pending.strip():
                        line = orjson.loads(pending)
                        if "error" in line:
                            raise OllamaResponseError(str(line["error"]), -1)
                        yield [line]
                    finished = True
                finally:
                    if not finished:
                        response.close()  # stop Ollama generating for nobody
        except (GeneratorExit, asyncio.CancelledError):
            raise
        except Exception as err:
            raise wire_error(err, self.url, model) from err
