"""The server benchmark's machinery: the fake Ollama, the server processes, the load driver.

Used by ``bench/server_bench.py`` (which decides what to run and reports it). Three parts:

* :class:`Fake`: ``tests/fake_ollama.py`` in its own process on one fixed port, restarted
  with other ``--rate``/``--tokens`` when the load changes (the servers keep its URL);
* :class:`ServerPool`: every server process under test, started once, then *paused*
  (``SIGSTOP``) except during its own phases, so each phase has that one server running
  besides the fake and the driver, without paying a restart (LiteLLM takes ~10 s) per phase;
* :func:`drive`: the one aiohttp load driver for every system: N clients started evenly over
  a ramp, each doing a bounded number of streamed turns back to back, under a phase timeout;
  each turn's time to first token, tokens, and whether it completed (HTTP 200, no error
  event, the stream's end marker seen).

Every loop here is bounded (turn counts, deadlines), all traffic is on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
MODEL = "llama3:latest"

# The fake Ollama, as a command (run with cwd = the repository; it listens with a
# backlog like a real server's, so hundreds of clients connecting at once are not dropped).
FAKE_OLLAMA = [sys.executable, "-m", "tests.fake_ollama"]


def _die_with_parent() -> None:
    """In the child before exec: be killed when the bench dies, even while paused."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers below 500; raises ``RuntimeError`` after ``timeout``."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.1)


def start(args: list[str], env: dict[str, str], log_path: Path | None = None) -> subprocess.Popen:
    """A child process (stdout/stderr to ``log_path`` or nowhere) that dies with us."""
    out: Any = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    finally:
        if log_path:
            out.close()


def stop(proc: subprocess.Popen) -> None:
    """Terminate (resuming it first if paused), then kill after 10 s."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def tail(path: Path, chars: int = 600) -> str:
    """The end of a log file, on one line."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " ".join(text[-chars:].split())


# -- the fake Ollama ----------------------------------------------------------------------------
class Fake:
    """``tests/fake_ollama.py`` on one port; :meth:`configure` restarts it with a new pacing."""

    def __init__(self, port: int, env: dict[str, str]) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.config: tuple[int, float] | None = None

    def configure(self, tokens: int, rate: float) -> bool:
        """Serve answers of ``tokens`` tokens at ``rate`` tokens/s; True if it restarted."""
        if self.config == (tokens, rate) and self.proc and self.proc.poll() is None:
            return False
        self.close()
        args = [*FAKE_OLLAMA, "--port", str(self.port), "--model", MODEL]
        args += ["--rate", f"{rate:g}", "--tokens", str(tokens)]
        self.proc = start(args, self.env)
        wait_http(f"{self.url}/api/version", 30, self.proc)
        self.config = (tokens, rate)
        return True

    def close(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None
            self.config = None


# -- the servers under test ---------------------------------------------------------------------
@dataclass
class Server:
    """One server process under test (paused when not in its phase)."""

    name: str
    url: str
    proc: subprocess.Popen | None = None
    skipped: str | None = None  # why it is not running
    log_path: Path | None = None
    paused: bool = False

    def processes(self) -> list[Any]:
        import psutil

        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_s(self) -> float:
        """User + system CPU seconds of the server and its children so far."""
        total = 0.0
        for p in self.processes():
            with contextlib.suppress(Exception):
                times = p.cpu_times()
                total += times.user + times.system
        return total

    def rss_bytes(self) -> int:
        total = 0
        for p in self.processes():
            with contextlib.suppress(Exception):
                total += p.memory_info().rss
        return total

    def signal_all(self, sig: int) -> None:
        for p in self.processes():
            with contextlib.suppress(Exception):
                p.send_signal(sig)

    def pause(self) -> None:
        if self.proc is not None and not self.paused:
            self.signal_all(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.proc is not None and self.paused:
            self.signal_all(signal.SIGCONT)
            self.paused = False
            time.sleep(0.05)  # let it take its pending timers before the load lands


class ServerPool:
    """The server processes, started together, then paused; one resumed at a time."""

    def __init__(self) -> None:
        self.servers: dict[str, Server] = {}
        self._ready: dict[str, tuple[str, float, float]] = {}

    def launch(
        self,
        name: str,
        url: str,
        launch: Callable[[], tuple[list[str], dict[str, str]] | str],
        ready_path: str,
        log_path: Path,
        timeout: float = 60.0,
    ) -> Server:
        """Start a server (``launch`` gives its argv and env, or a reason to skip it)."""
        server = Server(name, url, log_path=log_path)
        self.servers[name] = server
        try:
            launched = launch()
        except Exception as err:  # a missing venv, a failed install: the row says why
            launched = f"{type(err).__name__}: {err}"
        if isinstance(launched, str):
            server.skipped = launched
            return server
        args, env = launched
        server.proc = start(args, env, log_path)
        self._ready[name] = (ready_path, timeout, time.monotonic())
        return server

    def wait_ready(self) -> dict[str, float]:
        """Wait for every launched server to answer, then pause it; seconds each took."""
        took: dict[str, float] = {}
        for name, (ready_path, timeout, began) in self._ready.items():
            server = self.servers[name]
            if server.proc is None:
                continue
            try:
                wait_http(
                    server.url + ready_path,
                    max(1.0, began + timeout - time.monotonic()),
                    server.proc,
                )
            except RuntimeError as err:
                assert server.log_path is not None
                server.skipped = f"did not start: {err}; log: {tail(server.log_path)}"
                stop(server.proc)
                server.proc = None
                continue
            took[name] = time.monotonic() - began
            server.pause()
        self._ready.clear()
        return took

    def close(self) -> None:
        for server in self.servers.values():
            if server.proc is not None:
                stop(server.proc)
                server.proc = None


# -- the load driver ------------------------------------------------------------------------------
@dataclass
class Target:
    """How to call one system: its URL and path, the dialect of the request and stream."""

    url: str
    path: str
    dialect: str  # "ndjson" (Ollama /api/chat), "events" (SSE token/done/error), "openai"
    model: str = MODEL


@dataclass
class Outcome:
    """What one phase of clients got."""

    ttfts: list[float] = field(default_factory=list)  # seconds, one per completed turn
    tokens: int = 0  # tokens delivered (complete and partial turns)
    completed: int = 0
    accepted: int = 0  # turns answered with HTTP 200 (each must store 2 messages)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timed_out: bool = False

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(text[:300])


def _payload(target: Target, text: str) -> dict[str, Any]:
    if target.dialect == "ndjson":
        return {"model": target.model, "messages": [{"role": "user", "content": text}]}
    if target.dialect == "openai":
        return {
            "model": target.model,
            "messages": [{"role": "user", "content": text}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    return {"message": text, "model": target.model}


class _Stream:
    """Reads one response's lines: counts tokens, notes the first one, the end and errors.

    Tokens are counted in the text as the fake sends them (``tok0 tok1 ...``), so a server
    that joins several into one event is not credited with fewer tokens delivered.
    """

    __slots__ = ("_event", "dialect", "done", "failed", "first", "tokens")

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.tokens = 0
        self.first = False
        self.done = False
        self.failed: str | None = None
        self._event = b""

    def line(self, line: bytes) -> None:
        if self.dialect == "events":
            if line.startswith(b"event: "):
                self._event = line[7:]
                if self._event == b"done":
                    self.done = True
            elif line.startswith(b"data: "):
                if self._event == b"token":
                    self._text(line[6:])
                elif self._event == b"error":
                    self.failed = "error event: " + line[6:200].decode(errors="replace")
            return
        if self.dialect == "openai":
            if not line.startswith(b"data: "):
                return
            data = line[6:]
            if data == b"[DONE]":
                self.done = True
                return
            obj = orjson.loads(data)
            if "error" in obj:
                self.failed = "error chunk: " + data[:200].decode(errors="replace")
                return
            for choice in obj.get("choices") or ():
                content = (choice.get("delta") or {}).get("content")
                if content:
                    self._text(content.encode())
            return
        obj = orjson.loads(line)  # ndjson
        if "error" in obj:
            self.failed = "error line: " + line[:200].decode(errors="replace")
            return
        content = (obj.get("message") or {}).get("content")
        if content:
            self._text(content.encode())
        if obj.get("done"):
            self.done = True

    def _text(self, text: bytes) -> None:
        self.first = True
        self.tokens += text.count(b"tok") or 1


async def _turn(session: Any, target: Target, text: str, out: Outcome) -> None:
    """One streamed turn, recorded into ``out``."""
    headers = {"Accept": "text/event-stream"} if target.dialect != "ndjson" else {}
    started = time.perf_counter()
    ttft = -1.0
    reader = _Stream(target.dialect)
    async with session.post(
        target.url + target.path, json=_payload(target, text), headers=headers
    ) as response:
        if response.status != 200:
            body = await response.read()
            out.error(f"HTTP {response.status}: {body[:200]!r}")
            return
        out.accepted += 1
        buffer = b""
        try:
            async for chunk in response.content.iter_any():
                buffer += chunk
                if b"\n" not in chunk:
                    continue
                *lines, buffer = buffer.split(b"\n")
                for raw in lines:
                    line = raw.rstrip(b"\r")
                    if line:
                        reader.line(line)
                if ttft < 0 and reader.first:
                    ttft = time.perf_counter() - started
            if buffer.strip():
                reader.line(buffer.strip())
        finally:
            out.tokens += reader.tokens
    if reader.failed:
        out.error(reader.failed)
    elif not reader.done:
        out.error(f"no end marker ({reader.tokens} tokens)")
    elif ttft < 0:
        out.error("no token")
    else:
        out.completed += 1
        out.ttfts.append(ttft)


async def _drive(
    target: Target, clients: int, turns: int, ramp: float, timeout: float, tag: str
) -> Outcome:
    import aiohttp

    out = Outcome()
    connector = aiohttp.TCPConnector(limit=0)
    client_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(10.0, timeout))
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:

        async def client(number: int) -> None:
            await asyncio.sleep(ramp * number / clients)  # an even ramp
            for t in range(turns):
                if time.monotonic() > deadline:
                    return
                try:
                    await _turn(session, target, f"hello {tag} {number}.{t}", out)
                except asyncio.CancelledError:
                    raise
                except Exception as err:  # counted, not raised: the phase goes on
                    out.error(f"{type(err).__name__}: {err}")

        started = time.perf_counter()
        tasks = [asyncio.ensure_future(client(i)) for i in range(clients)]
        _, pending = await asyncio.wait(tasks, timeout=timeout + 1.0)
        for task in pending:
            task.cancel()
        if pending:
            out.timed_out = True
            await asyncio.gather(*pending, return_exceptions=True)
        out.seconds = time.perf_counter() - started
    missing = clients * turns - out.completed - out.errors
    for _ in range(max(0, missing)):
        out.error(f"not done within the phase timeout of {timeout:.0f} s")
    return out


def drive_many(
    targets: list[Target], clients: int, turns: int, ramp: float, timeout: float, tag: str
) -> list[Outcome]:
    """:func:`drive` against several targets at once (warm-ups: nothing here is measured)."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    async def all_of() -> list[Outcome]:
        runs = (_drive(t, clients, turns, ramp, timeout, tag) for t in targets)
        return list(await asyncio.gather(*runs))

    return asyncio.run(all_of())


def drive(
    target: Target,
    clients: int,
    turns: int,
    ramp: float = 1.0,
    timeout: float = 60.0,
    tag: str = "",
) -> Outcome:
    """Run ``clients`` clients (ramped over ``ramp`` s), ``turns`` turns each, within ``timeout``."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return asyncio.run(_drive(target, clients, turns, ramp, timeout, tag))
