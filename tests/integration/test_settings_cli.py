"""The command line's settings: options stay with their invocation (the typer context),
and ``ollang serve --workers N`` gives every worker the same explicit settings (inside
uvicorn's Config, not through the environment)."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import time

import httpx
import pytest

from tests.cli_process import OLLANG, ROOT
from tests.fake_ollama import FakeOllama
from tests.net import free_port
from tests.reliability.conftest import start_serve

KEY = "worker-key-1"


def _started_workers(proc: subprocess.Popen, count: int, timeout: float = 90) -> list[int]:
    """The pids of the first ``count`` workers to finish start-up, read from uvicorn's log
    on the server's stderr ("Started server process [PID]" ... "startup complete")."""
    assert proc.stderr is not None
    text, started, ready = "", [], 0
    deadline = time.monotonic() + timeout
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


@pytest.mark.timeout(240)
def test_serve_workers_each_honour_the_explicit_options(tmp_path):
    """``--api-key`` and ``--allow-model`` reach both workers: each one, serving alone
    (the other stopped), refuses a request without the key and lists only the allowed
    models. They used to reach the workers by being written into ``os.environ``."""
    with FakeOllama(models=["llama3:latest", "mistral:latest"]) as fake:
        proc, port = start_serve(
            tmp_path,
            fake.host_port,
            "--workers",
            "2",
            "--api-key",
            KEY,
            "--allow-model",
            "llama3*",
        )
        try:
            workers = _started_workers(proc, 2)
            assert len(set(workers)) == 2, workers
            for serving in workers:
                others = [pid for pid in workers if pid != serving]
                for pid in others:  # the stopped one cannot accept: `serving` answers
                    os.kill(pid, signal.SIGSTOP)
                try:
                    # A new client: new connections, accepted by the one running worker.
                    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as http:
                        assert http.get("/models").status_code == 401
                        answer = http.get("/models", headers={"Authorization": f"Bearer {KEY}"})
                        assert answer.status_code == 200, answer.text
                        names = [m["name"] for m in answer.json()["models"]]
                        assert names == ["llama3:latest"], (serving, names)
                finally:
                    for pid in others:
                        os.kill(pid, signal.SIGCONT)
        finally:
            proc.terminate()
            _out, err = proc.communicate(timeout=30)
    log = err.decode(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert "died" not in log, log[-3000:]  # no worker was replaced mid-test


@pytest.mark.timeout(120)
def test_serve_reads_its_address_and_keys_from_the_environment(tmp_path):
    """Without --port/--api-key, ``ollang serve`` takes OLLANG_SERVER_PORT and
    OLLANG_SERVER_API_KEYS (the options used to replace the port by their default)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLANG_", "OLLAMA_"))}
    env.update(
        OLLANG_HOME=str(tmp_path / "home"),
        OLLAMA_HOST=f"127.0.0.1:{free_port()}",
        OLLANG_BACKEND="ollama",
        OLLANG_SERVER_PORT=str(port),
        OLLANG_SERVER_API_KEYS=f"{KEY},other-key",
    )
    proc = subprocess.Popen(
        [*OLLANG, "serve"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
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
