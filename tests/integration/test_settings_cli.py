"""The command line's settings: options stay with their invocation (the typer context),
and ``ollang serve --workers N`` gives every worker the same explicit settings (inside
uvicorn's Config, not through the environment)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import select
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.cli_process import OLLANG, ROOT
from tests.fake_ollama import FakeOllama
from tests.net import free_port

KEY = "worker-key-1"
#: Start-up can take long on a loaded machine (two cores shared by parallel suites).
START_S = 180


def _serve(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[subprocess.Popen, int]:
    """``ollang serve ARGS`` (``--port P`` unless given by ``env``), once it answers."""
    port = int(env.get("OLLANG_SERVER_PORT") or free_port())
    if "OLLANG_SERVER_PORT" not in env:
        args = ("--port", str(port), *args)
    proc = subprocess.Popen(
        [*OLLANG, "serve", *args],
        cwd=ROOT,
        env={**env, "OLLANG_HOME": str(tmp_path / "home")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + START_S
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
            return proc, port
        except httpx.TransportError:
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)


def _clean_env(ollama: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLANG_", "OLLAMA_"))}
    return {**env, "OLLAMA_HOST": ollama, "OLLANG_BACKEND": "ollama"}


def _started_workers(proc: subprocess.Popen, count: int) -> list[int]:
    """The pids of the first ``count`` workers to finish start-up, read from uvicorn's log
    on the server's stderr ("Started server process [PID]" ... "startup complete")."""
    assert proc.stderr is not None
    text, started, ready = "", [], 0
    deadline = time.monotonic() + START_S
    while ready < count:
        left = deadline - time.monotonic()
        assert left > 0 and proc.poll() is None, f"{ready} of {count} workers started:\n{text}"
        readable, _, _ = select.select([proc.stderr], [], [], min(left, 1.0))
        if readable:
            chunk = os.read(proc.stderr.fileno(), 65536).decode(errors="replace")
            assert chunk, f"stderr closed:\n{text}"
            text += chunk
            started = [int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", text)]
            ready = text.count("Application startup complete")
    return started


def _serving_process(server_port: int, client_port: int, pids: list[int]) -> int | None:
    """Which of ``pids`` holds the server side of the TCP connection from ``client_port``
    (from /proc/net/tcp, then each process's open sockets)."""
    wanted = (f"{server_port:04X}", f"{client_port:04X}")
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        if (local.split(":")[1], remote.split(":")[1]) == wanted and state == "01":
            inode = fields[9]
    if inode is None:
        return None
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                        return pid
    return None


@pytest.mark.timeout(2 * START_S + 120)
def test_serve_workers_each_honour_the_explicit_options(tmp_path):
    """``--api-key`` and ``--allow-model`` reach both workers: on connections each worker
    accepted (told apart by the process holding the socket), a request without the key
    is refused and only the allowed model is listed. They used to reach the workers by
    being written into ``os.environ``; now they travel in uvicorn's Config."""
    with FakeOllama(models=["llama3:latest", "mistral:latest"]) as fake:
        proc, port = _serve(
            tmp_path,
            _clean_env(fake.host_port),
            "--workers",
            "2",
            "--api-key",
            KEY,
            "--allow-model",
            "llama3*",
        )
        served: dict[int, int] = {}
        try:
            workers = _started_workers(proc, 2)
            assert len(set(workers)) == 2, workers
            deadline = time.monotonic() + 120
            # New connections until each worker has answered some (the kernel hands each
            # to whichever worker accepts first).
            while len(served) < 2 and time.monotonic() < deadline:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                try:
                    conn.request("GET", "/models")
                    refused = conn.getresponse()
                    refused.read()
                    conn.request("GET", "/models", headers={"Authorization": f"Bearer {KEY}"})
                    answer = conn.getresponse()
                    body = json.loads(answer.read())
                    assert conn.sock is not None
                    owner = _serving_process(port, conn.sock.getsockname()[1], workers)
                finally:
                    conn.close()
                assert owner is not None
                assert refused.status == 401, (owner, refused.status)
                assert answer.status == 200, (owner, body)
                assert [m["name"] for m in body["models"]] == ["llama3:latest"], (owner, body)
                served[owner] = served.get(owner, 0) + 1
        finally:
            proc.terminate()
            _out, err = proc.communicate(timeout=60)
    assert set(served) == set(workers), f"only {served} of {workers} answered"
    log = err.decode(errors="replace")
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.timeout(START_S + 60)
def test_serve_reads_its_address_and_keys_from_the_environment(tmp_path):
    """Without --port/--api-key, ``ollang serve`` takes OLLANG_SERVER_PORT and
    OLLANG_SERVER_API_KEYS (the options used to replace the port by their default)."""
    env = _clean_env(f"127.0.0.1:{free_port()}")
    env.update(OLLANG_SERVER_PORT=str(free_port()), OLLANG_SERVER_API_KEYS=f"{KEY},other-key")
    proc, port = _serve(tmp_path, env)
    try:
        sessions = f"http://127.0.0.1:{port}/sessions"
        assert httpx.get(sessions).status_code == 401
        for key in (KEY, "other-key"):
            assert httpx.get(sessions, headers={"Authorization": f"Bearer {key}"}).is_success
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=30)
    assert b"2 API key(s)" in err, err.decode()[-2000:]


def test_ollama_host_options_stay_with_their_invocation(monkeypatch, capsys):
    """Run in one process (as a test or an embedding app would): each invocation reads
    its own options from its typer context; nothing carries over to the next."""
    from ollang.cli import main

    with (
        FakeOllama(models=["llama3:latest"]) as env_host,
        FakeOllama(models=["mistral:latest"]) as other,
    ):
        monkeypatch.setenv("OLLAMA_HOST", env_host.host_port)
        monkeypatch.setenv("OLLANG_BACKEND", "ollama")

        def listed(*argv: str) -> list[str]:
            assert main([*argv, "--json"]) == 0
            return [m["name"] for m in json.loads(capsys.readouterr().out)["models"]]

        assert listed("--ollama-host", other.host_port, "list") == ["mistral:latest"]
        assert listed("list") == ["llama3:latest"]  # the last invocation's host is gone
        # A command's own option applies over the root's; a group's reaches its commands.
        both = ("--ollama-host", env_host.host_port, "list", "--ollama-host", other.host_port)
        assert listed(*both) == ["mistral:latest"]
        assert listed("models", "--ollama-host", other.host_port, "list") == ["mistral:latest"]
        assert listed("models", "list") == ["llama3:latest"]
