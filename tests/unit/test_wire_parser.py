"""The hot-path client's HTTP parsing, fed raw bytes: no sockets, no server.

:class:`~ollang.transport.wire._Connection` is an ``asyncio.Protocol``: here it gets a
stub transport (``connection_made``) and byte strings (``data_received``) — a status
line, headers, chunked NDJSON split at awkward places, an ``{"error": ...}`` line, a
connection closed mid-body, bytes that are not HTTP. The first tests check the protocol
alone; the rest run :class:`~ollang.transport.wire.OllamaWire` on an event loop whose
``create_connection`` hands out such stub transports, scripted like a server, and check
the batches of lines and the errors that come out.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

import orjson
import pytest

from ollang.errors import (
    ConnectionCutError,
    InvalidResponseError,
    ModelNotFoundError,
    OllamaResponseError,
    OllamaTimeoutError,
    OllamaUnavailableError,
)
from ollang.transport.errors import GarbledResponse
from ollang.transport.wire import _HIGH_WATER, OllamaWire, _Connection

#: Script markers: the server closes the connection; the server sends nothing more.
CLOSE = b"<close>"
HANG = b"<hang>"


class StubTransport:
    """What ``_Connection`` needs of a transport; records what is written to it.

    ``exchanges``: per request written, the reads the "server" answers with (each read is
    one ``data_received`` call, with the event loop turning between reads).
    """

    def __init__(self, protocol: _Connection, exchanges: Iterable[Sequence[bytes]] = ()) -> None:
        self.protocol = protocol
        self.exchanges = [list(reads) for reads in exchanges]
        self.written: list[bytes] = []
        self.closed = False
        self.paused = False
        self.pauses = 0

    # -- asyncio.Transport --------------------------------------------------------
    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))
        if self.exchanges:
            reads = self.exchanges.pop(0)
            asyncio.get_running_loop().create_task(self._serve(reads))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            # With no loop (the protocol tests), they call connection_lost themselves.
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def pause_reading(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_reading(self) -> None:
        self.paused = False

    # -- the scripted server --------------------------------------------------------
    async def _serve(self, reads: list[bytes]) -> None:
        for read in reads:
            for _ in range(3):  # let the client take what came before
                await asyncio.sleep(0)
            if self.closed:
                return
            if read is CLOSE:
                self.close()
                return
            if read is HANG:
                await asyncio.sleep(3600)
            self.protocol.data_received(read)


# -- building responses ------------------------------------------------------------------
def head(status: int = 200, reason: str = "OK", *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
NDJSON = "Content-Type: application/x-ndjson"
CHUNKED = "Transfer-Encoding: chunked"


def ndjson(*objects: Any) -> bytes:
    return b"".join(orjson.dumps(o) + b"\n" for o in objects)


def json_response(status: int, body: Any, *headers: str) -> bytes:
    data = orjson.dumps(body)
    reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}.get(status, "X")
    return (
        head(
            status,
            reason,
            "Content-Type: application/json",
            f"Content-Length: {len(data)}",
            *headers,
        )
        + data
    )


def token(text: str) -> dict[str, Any]:
    return {"model": "m", "message": {"role": "assistant", "content": text}, "done": False}


DONE = {
    "model": "m",
    "message": {"role": "assistant", "content": ""},
    "done": True,
    "done_reason": "stop",
    "eval_count": 2,
    "prompt_eval_count": 3,
}


def split_at(data: bytes, *cuts: int) -> list[bytes]:
    points = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


# -- the protocol alone --------------------------------------------------------------------
def started(request: bytes = b"GET / HTTP/1.1\r\n\r\n") -> tuple[_Connection, StubTransport]:
    conn = _Connection()
    transport = StubTransport(conn)
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.start(request)
    return conn, transport


BODY = ndjson(token("Hel"), token("lo"), DONE)
RESPONSE = head(200, "OK", NDJSON, CHUNKED) + chunk(BODY[:30]) + chunk(BODY[30:]) + LAST_CHUNK


@pytest.mark.parametrize(
    "pieces",
    [
        [RESPONSE],
        [bytes([b]) for b in RESPONSE],  # a byte at a time
        split_at(RESPONSE, 5, 17),  # inside the status line
        split_at(RESPONSE, RESPONSE.index(b"\r\n\r\n") + 1),  # between \r and \n\r\n
        split_at(RESPONSE, RESPONSE.index(b"\r\n\r\n") + 4 + 1),  # inside a chunk size
        split_at(RESPONSE, len(RESPONSE) - 3),  # inside the last chunk
        [RESPONSE[i : i + 7] for i in range(0, len(RESPONSE), 7)],
    ],
    ids=["whole", "bytewise", "status-line", "crlf", "chunk-size", "last-chunk", "sevens"],
)
def test_a_chunked_answer_split_anywhere_reads_the_same(pieces):
    conn, transport = started()
    for piece in pieces:
        conn.data_received(piece)
    assert conn.status == 200
    assert conn.complete and conn.reusable and conn.closed is None
    assert conn.take() == BODY
    assert transport.written == [b"GET / HTTP/1.1\r\n\r\n"]


def test_the_status_is_known_before_the_body():
    conn, _ = started()
    conn.data_received(head(404, "Not Found", CHUNKED))
    assert conn.status == 404 and not conn.complete and conn.take() == b""


def test_connection_close_means_not_reusable():
    conn, _ = started()
    conn.data_received(json_response(200, {"ok": 1}, "Connection: close"))
    assert conn.complete and not conn.reusable
    assert orjson.loads(conn.take()) == {"ok": 1}


def test_bytes_before_any_request_are_garbled():
    conn = _Connection()
    transport = StubTransport(conn)
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(b"HTTP/1.1 200 OK\r\n\r\n")
    assert isinstance(conn.closed, GarbledResponse)
    assert transport.closed


@pytest.mark.parametrize(
    "garbage",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello
        b"HTTP/1.1 abc nonsense\r\n\r\n",
        head(200, "OK", CHUNKED) + b"zz\r\nnot a chunk\r\n",
    ],
    ids=["ssh", "tls", "bad-status", "bad-chunk-size"],
)
def test_what_is_not_http_is_garbled(garbage):
    conn, transport = started()
    conn.data_received(garbage)
    assert isinstance(conn.closed, GarbledResponse)
    assert transport.closed and not conn.reusable


def test_closed_mid_body_is_a_closed_connection():
    conn, _ = started()
    conn.data_received(head(200, "OK", NDJSON, CHUNKED) + chunk(ndjson(token("a"))))
    conn.connection_lost(None)
    assert conn.closed is not None
    assert not conn.complete and not conn.reusable
    assert conn.take() == ndjson(token("a")), "what arrived is still there"


def test_the_first_failure_stays_the_reason_when_the_connection_then_closes():
    conn, _ = started()
    conn.data_received(b"SSH-2.0-OpenSSH_9.6\r\n")
    conn.connection_lost(None)  # what the transport's close() leads to
    assert isinstance(conn.closed, GarbledResponse)


def test_closed_after_the_answer_keeps_it():
    conn, _ = started()
    conn.data_received(json_response(200, {"version": "0.9"}))
    conn.connection_lost(None)
    assert conn.complete and not conn.reusable
    assert orjson.loads(conn.take()) == {"version": "0.9"}


def test_reading_pauses_above_the_high_water_mark_and_resumes_on_take():
    conn, transport = started()
    conn.data_received(head(200, "OK", CHUNKED))
    big = b"x" * (_HIGH_WATER // 2 + 1)
    conn.data_received(chunk(big))
    assert not transport.paused
    conn.data_received(chunk(big))
    assert transport.paused and transport.pauses == 1
    conn.data_received(chunk(b"more"))  # already paused: not paused twice
    assert transport.pauses == 1
    assert len(conn.take()) == 2 * len(big) + 4
    assert not transport.paused


def test_a_new_request_resets_the_previous_answer():
    conn, transport = started()
    conn.data_received(json_response(200, {"n": 1}))
    assert conn.complete
    conn.start(b"GET /again HTTP/1.1\r\n\r\n")
    assert (conn.status, conn.complete, conn.take()) == (0, False, b"")
    conn.data_received(json_response(200, {"n": 2}))
    assert orjson.loads(conn.take()) == {"n": 2}
    assert transport.written[-1] == b"GET /again HTTP/1.1\r\n\r\n"


# -- the client on a loop of stub connections ----------------------------------------------
class Server:
    """Hands out stub connections to ``create_connection``, one script per connection."""

    def __init__(self, *connections: Sequence[Sequence[bytes]], refuse: bool = False) -> None:
        self.scripts = list(connections)
        self.refuse = refuse
        self.transports: list[StubTransport] = []

    async def create_connection(
        self, factory: Callable[[], _Connection], host: str, port: int, **kwargs: Any
    ) -> tuple[StubTransport, _Connection]:
        if self.refuse or not self.scripts:
            raise ConnectionRefusedError(111, "Connection refused")
        protocol = factory()
        transport = StubTransport(protocol, self.scripts.pop(0))
        protocol.connection_made(transport)  # type: ignore[arg-type]
        self.transports.append(transport)
        return transport, protocol

    def requests(self) -> list[bytes]:
        return [w for t in self.transports for w in t.written]


def run(server: Server, body: Callable[[OllamaWire], Coroutine[Any, Any, Any]], **kw: Any) -> Any:
    async def main() -> Any:
        loop = asyncio.get_running_loop()
        loop.create_connection = server.create_connection  # type: ignore[method-assign]
        wire = OllamaWire("http://ollama.test:11434", **kw)
        try:
            return await body(wire)
        finally:
            await wire.close()

    return asyncio.run(main())


def collect(path: str = "/api/chat", request: dict[str, Any] | None = None):
    """A body for :func:`run` that streams and returns the batches (and the error)."""

    async def body(wire: OllamaWire) -> tuple[list[list[dict[str, Any]]], BaseException | None]:
        batches: list[list[dict[str, Any]]] = []
        try:
            async for batch in wire.stream(path, request or {"model": "m"}):
                batches.append(batch)
        except Exception as err:
            return batches, err
        return batches, None

    return body


STREAM_HEAD = head(200, "OK", NDJSON, CHUNKED)


def test_lines_arrive_in_the_batches_the_socket_delivered():
    one, two = ndjson(token("He")), ndjson(token("l"), token("lo"))
    last = ndjson(DONE)
    reads = [
        STREAM_HEAD,
        chunk(one),
        chunk(two),  # two lines in one read: one batch
        chunk(last[:10]),  # a line split across chunks...
        chunk(last[10:]) + LAST_CHUNK,  # ...is whole in the next batch
    ]
    server = Server([reads])
    batches, err = run(server, collect())
    assert err is None
    contents = [[line["message"]["content"] for line in batch] for batch in batches]
    assert contents == [["He"], ["l", "lo"], [""]]
    assert batches[-1][0]["done"] is True


def test_a_line_split_inside_a_chunk_header_and_a_multibyte_character():
    text = ndjson(token("héllo ✓"), DONE)
    cut = text.index("✓".encode()) + 1  # inside the UTF-8 bytes of ✓
    body = chunk(text[:cut]) + chunk(text[cut:]) + LAST_CHUNK
    at = body.index(b"\r\n", len(chunk(text[:cut])))  # inside the second chunk's size line
    reads = [STREAM_HEAD + body[:at], body[at:]]
    batches, err = run(Server([reads]), collect())
    assert err is None
    assert [line["message"]["content"] for batch in batches for line in batch] == ["héllo ✓", ""]


def test_an_error_line_mid_stream_raises_after_what_came_before_it():
    reads = [
        STREAM_HEAD,
        chunk(ndjson(token("Partial"))),
        chunk(ndjson(token(" answer"), {"error": "model runner crashed"}, token("never"))),
    ]
    server = Server([reads])
    batches, err = run(server, collect())
    assert [[line["message"]["content"] for line in b] for b in batches] == [
        ["Partial"],
        [" answer"],
    ]
    assert isinstance(err, OllamaResponseError) and err.status_code == -1
    assert "model runner crashed" in err.message
    assert server.transports[0].closed, "a failed stream's connection is not kept"


def test_an_error_as_the_last_line_without_a_newline():
    reads = [STREAM_HEAD, chunk(ndjson(token("a"))), chunk(b'{"error":"oom"}') + LAST_CHUNK]
    batches, err = run(Server([reads]), collect())
    assert len(batches) == 1 and isinstance(err, OllamaResponseError) and "oom" in err.message


def test_a_last_line_without_a_newline_is_still_read():
    reads = [STREAM_HEAD + chunk(ndjson(token("x"))[:-1]) + LAST_CHUNK]
    batches, err = run(Server([reads]), collect())
    assert err is None and batches == [[token("x")]]


def test_a_connection_closed_mid_body_is_a_cut_after_the_lines_before():
    reads = [STREAM_HEAD, chunk(ndjson(token("one"))), chunk(ndjson(token(" two"))), CLOSE]
    batches, err = run(Server([reads]), collect())
    assert [line["message"]["content"] for batch in batches for line in batch] == ["one", " two"]
    assert isinstance(err, ConnectionCutError)
    assert "ollama.test:11434" in err.message and err.status_code is None


def test_closed_before_any_answer_on_a_new_connection_is_unavailable():
    # Nothing was answered: the host is as good as down (the router checks it again).
    batches, err = run(Server([[CLOSE]]), collect())
    assert batches == [] and isinstance(err, OllamaUnavailableError)


def test_garbage_instead_of_http_is_an_invalid_response():
    batches, err = run(Server([[b"SSH-2.0-OpenSSH_9.6\r\nProtocol mismatch.\r\n"]]), collect())
    assert batches == [] and isinstance(err, InvalidResponseError)
    assert "ollama.test:11434" in err.message


def test_a_line_that_is_not_json_is_an_invalid_response():
    reads = [STREAM_HEAD, chunk(ndjson(token("ok"))), chunk(b'{"model": "m", "mess\n')]
    batches, err = run(Server([reads]), collect())
    assert len(batches) == 1 and isinstance(err, InvalidResponseError)


def test_a_404_names_the_model():
    reads = [json_response(404, {"error": "model 'ghost' not found, try pulling it first"})]
    batches, err = run(Server([reads]), collect(request={"model": "ghost"}))
    assert batches == [] and isinstance(err, ModelNotFoundError) and err.model == "ghost"


def test_an_error_status_carries_ollamas_message():
    server = Server(
        [[json_response(500, {"error": "out of memory"})]], [[json_response(200, {"version": "1"})]]
    )

    async def body(wire: OllamaWire) -> Any:
        err = None
        try:
            async for _ in wire.stream("/api/chat", {"model": "m"}):
                pass
        except OllamaResponseError as caught:
            err = caught
        return err, await wire.get_json("/api/version")

    err, version = run(server, body)
    assert err is not None and err.status_code == 500 and "out of memory" in err.message
    assert server.transports[0].closed, "a stream that failed leaves its connection"
    assert version == {"version": "1"}


def test_an_error_status_of_a_json_request_keeps_the_connection():
    server = Server(
        [[json_response(404, {"error": "model 'x' not found"})], [json_response(200, {})]]
    )

    async def body(wire: OllamaWire) -> Any:
        with pytest.raises(ModelNotFoundError):
            await wire.post_json("/api/show", {"model": "x"})
        return await wire.get_json("/api/ps")

    assert run(server, body) == {}
    assert len(server.transports) == 1


def test_keep_alive_reuses_the_connection_across_requests():
    stream = [STREAM_HEAD + chunk(ndjson(token("a"), DONE)) + LAST_CHUNK]
    server = Server([stream, [json_response(200, {"version": "0.9.0"})]])

    async def body(wire: OllamaWire) -> Any:
        batches = [b async for b in wire.stream("/api/chat", {"model": "m"})]
        return batches, await wire.get_json("/api/version")

    batches, version = run(server, body)
    assert len(server.transports) == 1, "one connection for both requests"
    assert version == {"version": "0.9.0"} and batches[0][-1]["done"]
    assert [r.split(b"\r\n")[0] for r in server.requests()] == [
        b"POST /api/chat HTTP/1.1",
        b"GET /api/version HTTP/1.1",
    ]


def test_a_stale_pooled_connection_is_retried_on_a_new_one():
    server = Server(
        [[json_response(200, {"n": 1})], [CLOSE]],  # answers once, then the server closes it
        [[json_response(200, {"n": 2})]],
    )

    async def body(wire: OllamaWire) -> Any:
        return [await wire.get_json("/a"), await wire.get_json("/b")]

    assert run(server, body) == [{"n": 1}, {"n": 2}]
    assert len(server.transports) == 2
    assert server.transports[1].written[0].startswith(b"GET /b ")


def test_a_request_is_framed_with_host_length_and_extra_headers():
    server = Server([[json_response(200, {"model_info": {}})]])

    async def body(wire: OllamaWire) -> Any:
        wire.base_path = "/proxy"
        wire._extra_headers = [b"Authorization: Bearer k"]
        return await wire.post_json("/api/show", {"model": "m"})

    assert run(server, body) == {"model_info": {}}
    request = server.requests()[0]
    head_part, _, sent = request.partition(b"\r\n\r\n")
    lines = head_part.split(b"\r\n")
    assert lines[0] == b"POST /proxy/api/show HTTP/1.1"
    assert b"Host: ollama.test:11434" in lines
    assert b"Content-Type: application/json" in lines
    assert f"Content-Length: {len(sent)}".encode() in lines
    assert b"Authorization: Bearer k" in lines
    assert orjson.loads(sent) == {"model": "m"}


def test_configured_headers_are_sent():
    wire = OllamaWire("https://[::1]:8443/base/", headers={"X-Key": "v"})
    request = wire._request("GET", "/api/ps", None)
    assert request.startswith(b"GET /base/api/ps HTTP/1.1\r\nHost: [::1]:8443\r\n")
    assert b"\r\nX-Key: v\r\n" in request and request.endswith(b"\r\n\r\n")
    assert (wire.tls, wire.url) == (True, "https://[::1]:8443/base")


def test_json_answers_that_are_empty_or_not_objects():
    server = Server(
        [
            [head(200, "OK", "Content-Length: 0")],
            [json_response(200, [1, 2])],
        ]
    )

    async def body(wire: OllamaWire) -> Any:
        return [await wire.get_json("/a"), await wire.get_json("/b")]

    assert run(server, body) == [{}, {"value": [1, 2]}]


def test_a_json_answer_cut_short_is_a_cut():
    data = orjson.dumps({"models": []})
    reads = [head(200, "OK", f"Content-Length: {len(data) + 10}") + data, CLOSE]

    async def body(wire: OllamaWire) -> Any:
        return await wire.get_json("/api/tags")

    with pytest.raises(ConnectionCutError):
        run(Server([reads]), body)


def test_nothing_within_the_read_timeout_is_a_timeout():
    async def body(wire: OllamaWire) -> Any:
        return await wire.get_json("/api/version")

    with pytest.raises(OllamaTimeoutError, match="did not answer in time"):
        run(Server([[HANG]]), body, read_timeout=0.05)


def test_a_stream_that_stalls_mid_body_times_out():
    reads = [STREAM_HEAD, chunk(ndjson(token("a"))), HANG]
    batches, err = run(Server([reads]), collect(), read_timeout=0.05)
    assert len(batches) == 1 and isinstance(err, OllamaTimeoutError)


def test_a_refused_connection_is_unavailable():
    async def body(wire: OllamaWire) -> Any:
        return await wire.get_json("/api/version")

    with pytest.raises(OllamaUnavailableError, match=r"ollama\.test:11434"):
        run(Server(refuse=True), body)


def test_closing_the_stream_early_closes_the_connection():
    reads = [STREAM_HEAD, chunk(ndjson(token("a"))), chunk(ndjson(token("b"))), HANG]
    server = Server([reads])

    async def body(wire: OllamaWire) -> Any:
        stream = wire.stream("/api/chat", {"model": "m"})
        first = await stream.__anext__()
        await stream.aclose()
        return first, wire._pool()

    first, pool = run(server, body)
    assert first == [token("a")]
    assert server.transports[0].closed, "Ollama must see the client go"
    assert not pool, "a connection left mid-answer is not reused"
