"""Helpers for the reliability suite: ``ollang serve`` as a subprocess, the fake Ollama as a
separate process that can be killed and restarted, and reading the store straight from disk.
(The CLI runner is :mod:`tests.cli_process`, shared with ``tests/integration/test_cli.py``.)"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli_process import OLLANG, ROOT
from tests.net import free_port


def read_at_least(stream, n: int, timeout: float = 30) -> bytes:
    """Read ``n`` bytes or more from a pipe (blocking reads, bounded by ``timeout``)."""
    got = b""
    deadline = time.monotonic() + timeout
    while len(got) < n:
        assert time.monotonic() < deadline, f"only {got!r} after {timeout} s"
        chunk = os.read(stream.fileno(), 4096)
        assert chunk, f"stream closed after {got!r}"
        got += chunk
    return got


def start_serve(
    tmp_path: Path, ollama_host: str, *args: str, stdout: int = subprocess.DEVNULL
) -> tuple[subprocess.Popen, int]:
    """``ollang serve --port P ARGS`` as a subprocess, once ``/health`` answers: (process, P).

    stderr is piped (read it after ``terminate()``); pass ``stdout=subprocess.PIPE`` to
    read the access log too (only for short runs: nobody drains it meanwhile).
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLANG_")}
    env.update(OLLANG_HOME=str(tmp_path / "home"), OLLAMA_HOST=ollama_host)
    proc = subprocess.Popen(
        [*OLLANG, "serve", "--port", str(port), *args],
        cwd=ROOT,
        env=env,
        stdout=stdout,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc, port
        except httpx.TransportError:
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)


class OllamaProcess:
    """``tests/fake_ollama.py`` in its own process on a fixed port, so it can be SIGKILLed."""

    def __init__(self, *, rate: float = 0.0, tokens: int = 0, port: int | None = None) -> None:
        self.port = port or free_port()
        self.rate = rate
        self.tokens = tokens
        self.proc: subprocess.Popen | None = None

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> OllamaProcess:
        args = [sys.executable, str(ROOT / "tests" / "fake_ollama.py"), "--port", str(self.port)]
        if self.rate:
            args += ["--rate", str(self.rate)]
        if self.tokens:
            args += ["--tokens", str(self.tokens)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, cwd=ROOT)
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(f"http://{self.host_port}/api/version", timeout=1)
                return self
            except httpx.TransportError:
                assert time.monotonic() < deadline, "fake Ollama did not start"
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture
def ollama_process() -> Iterator[OllamaProcess]:
    server = OllamaProcess(rate=20, tokens=400).start()
    yield server
    server.kill()


@pytest.fixture
def cli_env(tmp_path) -> dict:
    """Environment for the CLI: an own data dir, the Ollama backend, no OLLANG_* leaking in."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("OLLANG_", "COLUMNS"))}
    e.update(OLLANG_HOME=str(tmp_path / "home"), OLLANG_BACKEND="ollama")
    return e


def db_path(env: dict) -> Path:
    return Path(env["OLLANG_HOME"]) / "sessions.db"


def stored(env: dict, session: str | None = None) -> list[tuple[str, str, str]]:
    """(role, content, status) of every stored message, oldest first, read with plain sqlite3."""
    query = (
        "SELECT m.role, m.content, COALESCE(m.status, 'complete') FROM messages m "
        "JOIN sessions s ON s.key = m.session_key"
    )
    params: tuple = ()
    if session is not None:
        query += " WHERE s.id = ?"
        params = (session,)
    with contextlib.closing(sqlite3.connect(db_path(env))) as db:  # closed: no fd left open
        return db.execute(query + " ORDER BY m.rowid", params).fetchall()


def integrity(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
