"""Hostile input: slow and oversized HTTP clients, and CLI input meant to break things."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import httpx
import pytest

from ollang.server import ServerSettings
from ollang.server.testing import LiveServer
from tests.cli_process import cli
from tests.fake_ollama import FakeOllama
from tests.reliability.conftest import db_path, integrity, stored


@pytest.fixture(scope="module")
def fake():
    with FakeOllama(token_delay=0.0) as srv:
        yield srv


@pytest.fixture(scope="module")
def live(fake, tmp_path_factory):
    settings = ServerSettings(
        store_url=f"sqlite:///{tmp_path_factory.mktemp('h') / 's.db'}", ollama_url=fake.url
    )
    with LiveServer(settings) as server:
        yield server


def timed(fn) -> float:
    started = time.monotonic()
    fn()
    return time.monotonic() - started


@pytest.mark.reliability("Hostile input", "slowloris: 200 trickling connections")
def test_slow_clients_do_not_starve_others(live):
    host, port = live.url.removeprefix("http://").split(":")
    stop = threading.Event()
    sockets: list[socket.socket] = []
    for _ in range(200):
        s = socket.create_connection((host, int(port)), timeout=5)
        s.sendall(b"POST /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n")
        sockets.append(s)
    # Half keep trickling headers, half declare a body and trickle it a byte at a time.
    for s in sockets[100:]:
        s.sendall(b"Content-Length: 100000\r\n\r\n{")

    def trickle() -> None:
        while not stop.wait(0.5):
            for i, s in enumerate(sockets):
                with contextlib.suppress(OSError):  # the server may have closed it
                    s.sendall(b"X-a: b\r\n" if i < 100 else b" ")

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        times = []
        with httpx.Client(base_url=live.url, timeout=10) as c:
            for i in range(10):
                times.append(timed(lambda: c.get("/health").raise_for_status()))
                r = c.post("/chat", json={"message": f"still served {i}"})
                assert r.status_code == 200 and r.json()["response"] == f"echo: still served {i}"
        assert max(times) < 1.0, times
    finally:
        stop.set()
        thread.join()
        for s in sockets:
            s.close()


@pytest.mark.reliability("Hostile input", "a client that never reads its stream")
def test_a_stalled_reader_does_not_block_others(live, fake):
    fake.token_delay = 0.0
    stalled = socket.create_connection(live.url.removeprefix("http://").split(":"), timeout=5)
    body = json.dumps({"message": "x " * 30000}).encode()
    stalled.sendall(
        b"POST /chat/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    try:
        with httpx.Client(base_url=live.url, timeout=10) as c:
            for i in range(5):
                assert c.post("/chat", json={"message": f"m{i}"}).status_code == 200
    finally:
        stalled.close()


@pytest.mark.reliability("Hostile input", "oversized bodies (declared, chunked, huge)")
def test_oversized_bodies_are_refused_early(live):
    limit = 32 * 1024 * 1024  # a model request's limit (it may carry images)
    with httpx.Client(base_url=live.url, timeout=30) as c:
        big = c.post(
            "/chat",
            content=b'{"message": "' + b"a" * (limit + 10) + b'"}',
            headers={"Content-Type": "application/json"},
        )
        assert big.status_code == 413 and big.json()["error"]

        def chunks():
            yield b'{"message": "'
            for _ in range(64):  # 64 MiB, chunked: refused at the limit, never all read
                yield b"a" * (1024 * 1024)
            yield b'"}'

        started = time.monotonic()
        try:
            r = c.post("/chat", content=chunks(), headers={"Content-Type": "application/json"})
            assert r.status_code == 413 and r.json()["error"]
        except httpx.WriteError:
            pass  # the server answered 413 and closed before we finished sending
        assert time.monotonic() - started < 10
    # A Content-Length far beyond the limit (and beyond 64 bits): refused before reading.
    host, port = live.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(
            b"POST /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 99999999999999999999\r\n\r\n{"message": "hi"}'
        )
        head = raw.recv(4096).decode(errors="replace")
    assert head.split()[1] in ("400", "413"), head
    assert "Traceback" not in head
    with httpx.Client(base_url=live.url, timeout=30) as c:
        assert c.get("/health").status_code == 200


@pytest.mark.reliability("Hostile input", "CLI: empty, blank, 5,000 characters, control bytes")
def test_cli_odd_prompts(cli_env, fake_ollama, ledger):
    cli_env["OLLAMA_HOST"] = fake_ollama.host_port
    for empty in ("", "   ", "\n\t"):
        out = cli("ask", empty, "--session", "odd", env=cli_env)
        assert out.returncode == 2 and "empty" in out.stderr.decode()
    long_text = "word " * 1000
    weird = "tab\there \x1b[31mred\x1b[0m bell\x07 é 🦙 \u202eevil"
    prompts = [long_text, weird]
    for prompt in prompts:
        out = cli("ask", prompt, "--session", "odd", env=cli_env)
        assert out.returncode == 0, out.stderr
    humans = [r[1] for r in stored(cli_env, "odd") if r[0] == "human"]
    ledger.account(prompts, humans)
    assert humans == prompts  # stored exactly as typed
    shown = cli("sessions", "show", "odd", env=cli_env).stdout.decode()
    assert "\x1b[31m" not in shown and "\x07" not in shown  # not replayed to the terminal raw


@pytest.mark.reliability("Hostile input", "CLI: hostile ids in imports and export paths")
def test_hostile_imports_and_export_paths(cli_env, fake_ollama, tmp_path):
    cli_env["OLLAMA_HOST"] = fake_ollama.host_port
    assert cli("ask", "hello", "--session", "real", env=cli_env).returncode == 0
    exported = tmp_path / "real.json"
    assert (
        cli(
            "sessions", "export", "real", "--format", "json", "-o", str(exported), env=cli_env
        ).returncode
        == 0
    )
    data = json.loads(exported.read_text())
    for bad in ("../../etc/passwd", "x" * 5000, "a;rm -rf /", "", "\x1b[2J"):
        data["session"]["id"] = bad
        hostile = tmp_path / "hostile.json"
        hostile.write_text(json.dumps(data))
        out = cli("sessions", "import", str(hostile), env=cli_env)
        assert out.returncode == 2, (bad, out.stderr)
        assert "session id" in out.stderr.decode() and "Traceback" not in out.stderr.decode()
    listed = cli("sessions", env=cli_env).stdout.decode().splitlines()
    assert [line.split()[0] for line in listed] == ["real"]
    # Export paths: never into a missing directory, over a directory, or over a file unasked.
    for target, words in [
        (tmp_path / "nope" / "x.md", "does not exist"),
        (tmp_path, "is a directory"),
        (exported, "exists"),
    ]:
        out = cli("sessions", "export", "real", "-o", str(target), env=cli_env)
        assert out.returncode == 2 and words in out.stderr.decode()
    assert json.loads(exported.read_text())["session"]["id"] == "real"  # untouched
    assert integrity(db_path(cli_env)) == "ok"
