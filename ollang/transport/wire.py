"""Ollama's REST API for the server's hot path: one keep-alive pool per host, NDJSON in batches.

The library's models go through ``ChatOllama`` (the official ``ollama`` client, httpx).
The server streams hundreds of answers at once, and there that path costs most of the
CPU per token: every NDJSON line is read with its own socket wake-up, validated into
a pydantic object, turned into a LangChain message chunk, merged into the answer so far
and passed through callbacks. Putting a faster transport under ``ChatOllama`` leaves all
of that, so the server talks to Ollama here instead:

* **HTTP/1.1 on asyncio, parsed by httptools** (the C parser uvicorn uses). Written here
  because the general clients cost more per request than the rest of a turn: measured
  against the stub on this machine, a one-token streamed ``/api/chat`` cost ~690 µs of
  CPU through aiohttp and ~3 ms through httpx, ~150 µs over bare asyncio streams. What
  is hand-written is only the framing of a request (a few headers and a JSON body), a
  keep-alive pool, and timeouts; parsing, chunked decoding included, is httptools'.
* Connections are kept alive and reused across turns (no connect per request).
* The stream is handed on in the pieces the socket delivers: every complete line of a
  piece is parsed (``orjson``) and passed on *together*, so tokens that queued up leave
  as one write to the client.
* Errors become ollang's (:mod:`ollang.transport.errors`), as the library's do.

:class:`OllamaWire` is the asynchronous member of ollang's client family
(:mod:`ollang.transport.client`): the same configuration as the synchronous
:class:`~ollang.transport.client.OllamaClient`, and the same ``get_json`` / ``post_json`` /
``stream`` surface. Messages are translated by :mod:`ollang.transport.translate`.

Closing the async iterator (a client gone, a cancelled task) closes the connection at
once, which is what stops generation on the Ollama side.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import weakref
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import httptools
import orjson

from ollang.errors import (
    OllamaResponseError,
    OllamaTimeoutError,
    OllamaUnavailableError,
    OllangError,
)
from ollang.transport.client import BaseOllamaClient
from ollang.transport.errors import ConnectionClosed, GarbledResponse, status_error, translating
from ollang.transport.translate import Line, to_ollama_messages

__all__ = ["Line", "OllamaWire", "wire_messages"]

#: LangChain messages as ``/api/chat`` messages (:func:`~ollang.transport.translate.to_ollama`).
wire_messages = to_ollama_messages

#: Idle connections kept per host (per event loop).
_KEEP_IDLE = 64
#: Pause reading from Ollama when this many bytes wait for the consumer.
_HIGH_WATER = 1 << 20


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(asyncio.TimeoutError())


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: a request at a time, its body as it arrives."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.status = 0
        self.chunks: collections.deque[bytes] = collections.deque()
        self.pending = 0
        self.complete = False
        self.closed: BaseException | None = None
        self.reusable = False
        self._waiter: asyncio.Future[None] | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._paused = False

    # -- asyncio.Protocol -------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have asyncio.Transport's methods without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._parser is None:
            self._fail(GarbledResponse("data before a request"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as err:
            self._fail(GarbledResponse(str(err)))
            return
        if self.pending > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        # A failure recorded already (bytes that were not HTTP) stays the reason.
        if self.closed is None:
            self.closed = exc or ConnectionResetError("closed")
        self.reusable = False
        self._wake()

    # -- httptools callbacks ----------------------------------------------------
    def on_headers_complete(self) -> None:
        assert self._parser is not None
        self.status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.pending += len(body)

    def on_message_complete(self) -> None:
        assert self._parser is not None
        self.complete = True
        self.reusable = self._parser.should_keep_alive()

    # -- used by OllamaWire -------------------------------------------------------
    def _fail(self, err: BaseException) -> None:
        self.closed = err
        if self.transport is not None:
            self.transport.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def start(self, request: bytes) -> None:
        """Send a request and get ready for its response."""
        assert self.transport is not None
        self._parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.chunks.clear()
        self.pending = 0
        self.complete = False
        self.reusable = False
        self.transport.write(request)

    async def wait(self, timeout: float) -> None:
        """Until something arrives (headers, body, the end), or ``timeout`` seconds pass.

        Raises:
            asyncio.TimeoutError: nothing arrived in time.
        """
        if self.chunks or self.complete or self.closed is not None:
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        # A timer on the one future, not asyncio.wait_for (a task and more per read).
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def take(self) -> bytes:
        """The body bytes received so far."""
        data = b"".join(self.chunks)
        self.chunks.clear()
        self.pending = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    def close(self) -> None:
        """Drop the connection (Ollama sees the client go)."""
        self.reusable = False
        if self.transport is not None:
            self.transport.close()


class Frames(Protocol):
    """What a streaming body's framing is to :meth:`OllamaWire._framed`: bytes in, parsed
    messages out. Ollama's is :class:`LineFrames`; an OpenAI engine's is
    :class:`~ollang.transport.openai_wire.EventFrames`."""

    #: The stream said it is over (the rest of the body carries nothing).
    done: bool
    #: An error the stream reported, raised after the messages before it.
    error: OllangError | None

    def feed(self, piece: bytes) -> list[Line]:
        """The messages a piece of the body completes, in order."""
        ...

    def end(self) -> list[Line]:
        """The body ended: a last message that lacked its terminator, if any."""
        ...


class LineFrames:
    """NDJSON read from the bytes of a response body (Ollama's streams), as they arrive.

    An ``{"error": ...}`` line (Ollama's in-stream error) becomes :attr:`error`, and the
    lines before it are still returned; nothing after it is read.
    """

    done = False

    def __init__(self) -> None:
        self.error: OllangError | None = None
        self._pending = b""

    def feed(self, piece: bytes) -> list[Line]:
        """The lines a piece of the body completes, in order."""
        if b"\n" not in piece:  # most pieces are one token's line, whole or in part
            self._pending += piece
            return []
        *complete, self._pending = (self._pending + piece).split(b"\n")
        batch = [orjson.loads(line) for line in complete if line.strip()]
        for index, line in enumerate(batch):
            if "error" in line:  # what came before it is still the answer
                self.error = OllamaResponseError(str(line["error"]), -1)
                return batch[:index]
        return batch

    def end(self) -> list[Line]:
        """The body ended: a last line without its newline, if any."""
        if not self._pending.strip():
            return []
        line = orjson.loads(self._pending)
        self._pending = b""
        if "error" in line:
            self.error = OllamaResponseError(str(line["error"]), -1)
            return []
        return [line]


class OllamaWire(BaseOllamaClient):
    """One Ollama server's API over a keep-alive pool per event loop (the async client).

    Args:
        url: The base URL (``http://host:port`` or ``https://...``).
        connect_timeout: Seconds to connect (a missing server fails fast).
        read_timeout: Seconds to wait for the next piece of an answer (a model may load).
        headers: Extra headers sent with every request.
    """

    #: The kind of host this client talks to (how its errors name it).
    kind = "ollama"
    #: The connection protocol (a subclass may read more of the response's head).
    _protocol: type[_Connection] = _Connection

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 120.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            url, connect_timeout=connect_timeout, read_timeout=read_timeout, headers=headers
        )
        parts = urlsplit(self.url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = parts.scheme == "https"
        self.base_path = parts.path.rstrip("/")
        netloc = self.host if ":" not in self.host else f"[{self.host}]"
        self._host_header = f"{netloc}:{self.port}".encode()
        self._extra_headers = [f"{key}: {value}".encode() for key, value in self.headers.items()]
        self._idle: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, collections.deque[_Connection]
        ] = weakref.WeakKeyDictionary()

    # -- connections ------------------------------------------------------------
    def _pool(self) -> collections.deque[_Connection]:
        loop = asyncio.get_running_loop()
        pool = self._idle.get(loop)
        if pool is None:
            pool = self._idle[loop] = collections.deque()
        return pool

    async def _connection(self, *, fresh: bool = False) -> tuple[_Connection, bool]:
        """A connection, and whether it was reused from the pool."""
        pool = self._pool()
        while pool and not fresh:
            conn = pool.pop()
            if (
                conn.closed is None
                and conn.transport is not None
                and not conn.transport.is_closing()
            ):
                return conn, True
        loop = asyncio.get_running_loop()
        context = ssl.create_default_context() if self.tls else None
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    self._protocol,
                    self.host,
                    self.port,
                    ssl=context,
                    server_hostname=self.host if context else None,
                ),
                self.connect_timeout,
            )
        except asyncio.TimeoutError as err:
            raise OllamaUnavailableError(self.url, "connect timeout", kind=self.kind) from err
        except OSError as err:
            raise OllamaUnavailableError(self.url, kind=self.kind) from err
        return protocol, False

    def _release(self, conn: _Connection) -> None:
        pool = self._pool()
        if conn.reusable and conn.closed is None and len(pool) < _KEEP_IDLE:
            pool.append(conn)
        else:
            conn.close()

    def _request(self, method: str, path: str, body: bytes | None) -> bytes:
        head = [
            f"{method} {self.base_path}{path} HTTP/1.1".encode(),
            b"Host: " + self._host_header,
            b"User-Agent: ollang",
            b"Accept: application/json, application/x-ndjson",
            *self._extra_headers,
        ]
        if body is not None:
            head += [b"Content-Type: application/json", b"Content-Length: %d" % len(body)]
        return b"\r\n".join(head) + b"\r\n\r\n" + (body or b"")

    async def close(self) -> None:
        """Close this loop's idle connections."""
        try:
            pool = self._pool()
        except RuntimeError:
            return
        while pool:
            pool.pop().close()

    # -- requests -----------------------------------------------------------------
    async def _exchange(
        self, method: str, path: str, body: Mapping[str, Any] | None, timeout: float
    ) -> _Connection:
        """Send a request and wait for the response's status (the connection stays busy).

        A pooled connection the server had closed meanwhile (its keep-alive ran out) fails
        before any answer byte: the request then goes once more, on a new connection.
        """
        request = self._request(method, path, orjson.dumps(body) if body is not None else None)
        conn, reused = await self._connection()
        while True:
            conn.start(request)
            try:
                while conn.status == 0 and conn.closed is None:
                    await conn.wait(timeout)
            except asyncio.TimeoutError as err:
                conn.close()
                raise OllamaTimeoutError(
                    self.url, "no answer within the read timeout", kind=self.kind
                ) from err
            except BaseException:  # cancelled (a client gone): Ollama must see us go
                conn.close()
                raise
            if conn.status:
                return conn
            if reused:  # stale keep-alive: nothing was answered, so send it again
                conn, reused = await self._connection(fresh=True)
                continue
            closed = conn.closed
            raise closed if isinstance(closed, Exception) else ConnectionClosed("connection closed")

    async def _json(
        self, method: str, path: str, body: Mapping[str, Any] | None, timeout: float | None
    ) -> Line:
        limit = timeout or self.read_timeout
        try:
            conn = await self._exchange(method, path, body, limit)
            data = bytearray()
            while not conn.complete:
                data += conn.take()
                if conn.closed is not None and not conn.complete:
                    raise ConnectionClosed("connection closed mid-response")
                await conn.wait(limit)
            data += conn.take()
            self._release(conn)
            if conn.status >= 400:
                model = body.get("model") if body else None
                raise self._status_error(conn, bytes(data), model)
            value = orjson.loads(data) if bytes(data).strip() else {}
            return value if isinstance(value, dict) else {"value": value}
        except asyncio.TimeoutError as err:
            raise OllamaTimeoutError(
                self.url, "no data within the read timeout", kind=self.kind
            ) from err
        except Exception:
            with translating(url=self.url, kind=self.kind):
                raise

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

    def _status_error(self, conn: _Connection, body: bytes, model: str | None) -> OllangError:
        """An error answer (its status, its body) as ours."""
        text = body.decode("utf-8", "replace")
        return status_error(conn.status, text, model, url=self.url, kind=self.kind)

    async def _raise_status(self, conn: _Connection, model: str | None) -> None:
        """Read an error answer to its end and raise it as ours."""
        while not conn.complete and conn.closed is None:
            await conn.wait(self.read_timeout)
        raise self._status_error(conn, conn.take(), model)

    def stream(self, path: str, body: Mapping[str, Any]) -> AsyncGenerator[list[Line], None]:
        """``POST path`` and yield its NDJSON lines, parsed, in the batches they arrived in.

        An ``{"error": ...}`` line (Ollama's in-stream error) raises
        :class:`OllamaResponseError`; what came before it in its batch is yielded first.
        Closing the iterator closes the connection.

        Raises:
            OllangError: before or during the stream.
        """
        return self._framed(path, body, LineFrames())

    async def _framed(
        self, path: str, body: Mapping[str, Any], frames: Frames
    ) -> AsyncGenerator[list[Line], None]:
        """``POST path`` and yield what ``frames`` reads from the body as it arrives, up
        to the body's end or ``frames.done``: the one streaming life cycle of both kinds
        of host. A connection read to its end goes back to the pool; one left early (an
        error, the consumer stopped) is closed, which stops the engine generating for
        nobody."""
        model = body.get("model")
        conn: _Connection | None = None
        finished = False
        try:
            conn = await self._exchange("POST", path, body, self.read_timeout)
            if conn.status >= 400:
                await self._raise_status(conn, model)
            while not frames.done:
                piece = conn.take()
                if piece:
                    batch = frames.feed(piece)
                    if batch:
                        yield batch
                    if frames.error is not None:
                        raise frames.error
                    continue
                if conn.complete:
                    break
                if conn.closed is not None:
                    raise ConnectionClosed("connection closed mid-response")
                await self._wait(conn)
            last = frames.end()
            if last:
                yield last
            if frames.error is not None:
                raise frames.error
            while not conn.complete and conn.closed is None:  # the body's last bytes
                await self._wait(conn)
            conn.take()
            finished = conn.complete
        except (GeneratorExit, asyncio.CancelledError):
            raise
        except Exception:
            with translating(url=self.url, model=model, kind=self.kind):
                raise
        finally:
            if conn is not None:
                if finished:
                    self._release(conn)
                else:
                    conn.close()

    async def _wait(self, conn: _Connection) -> None:
        """Wait for more of the body, at most the read timeout."""
        try:
            await conn.wait(self.read_timeout)
        except asyncio.TimeoutError as err:
            raise OllamaTimeoutError(
                self.url, "no data within the read timeout", kind=self.kind
            ) from err
