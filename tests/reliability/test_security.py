"""Security: auth on every endpoint, keys never logged and compared in constant time,
loopback by default, no request steering the server to another URL or a pull, no web page
of another site (or DNS rebinding) driving the server, one reading of the key."""

from __future__ import annotations

import hmac
import os
import re
import socket
import subprocess

import httpx
import pytest

from ollang.server import ServerSettings
from ollang.server.testing import LiveServer
from tests.cli_process import cli
from tests.fake_ollama import FakeOllama
from tests.net import free_port
from tests.reliability.conftest import start_serve

KEY = "sk-ollang-test-0123456789abcdef"
PUBLIC = {"/health"}


@pytest.fixture(scope="module")
def fake():
    with FakeOllama(pullable=["qwen3:0.6b"]) as srv:
        yield srv


@pytest.fixture
def keyed(tmp_path, fake):
    settings = ServerSettings(
        store_url=f"sqlite:///{tmp_path / 's.db'}",
        ollama_url=fake.url,
        api_keys=[KEY],
        allow_pull=True,
    )
    with LiveServer(settings) as live:
        yield live


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "some-id", path)


@pytest.mark.reliability("Security", "auth on every endpoint but /health")
def test_every_documented_endpoint_needs_the_key(keyed, fake):
    paths = keyed.app.openapi()["paths"]
    assert len(paths) >= 8
    checked = 0

    # The server's own health checks (in the background, and on /health) read Ollama's
    # version, tags and loaded models; nothing a client asks for may pass.
    checks = ("/api/version", "/api/tags", "/api/ps")

    def model_calls() -> int:
        return sum(1 for r in fake.requests if r.path not in checks)

    before = model_calls()
    for path, operations in paths.items():
        for method in operations:
            url = keyed.url + concrete(path)
            for headers in (
                {},
                {"Authorization": "Bearer wrong"},
                {"Authorization": f"Basic {KEY}"},
            ):
                r = httpx.request(
                    method,
                    url,
                    json={"message": "hi", "prompt": "hi", "name": "x"},
                    headers=headers,
                    timeout=10,
                )
                if path in PUBLIC:
                    assert r.status_code == 200
                    continue
                assert r.status_code == 401, (method, path, r.status_code, r.text)
                assert r.headers["www-authenticate"] == "Bearer"
                assert method == "head" or r.json()["error"]  # a HEAD answer has no body
                assert KEY not in r.text
                checked += 1
    assert checked >= 3 * 8
    assert model_calls() == before  # nothing reached Ollama unauthenticated


@pytest.mark.reliability("Security", "keys compared in constant time")
def test_keys_are_compared_with_compare_digest_against_every_key(monkeypatch, keyed):
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("ollang.server.auth.hmac.compare_digest", spy)
    assert (
        httpx.get(f"{keyed.url}/sessions", headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )
    ok = httpx.get(f"{keyed.url}/sessions", headers={"Authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200
    # Digests of equal length are compared, never the raw keys.
    assert len(calls) == 2 and all(len(a) == len(b) == 32 for a, b in calls)
    assert all(KEY.encode() not in (a, b) for a, b in calls)


@pytest.mark.reliability("Security", "keys never logged (access log on)")
def test_keys_never_appear_in_the_logs(tmp_path, fake):
    proc, port = start_serve(tmp_path, fake.url, "--api-key", KEY, stdout=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    wrong = "sk-wrong-key-should-not-be-logged"
    try:
        assert (
            httpx.get(f"{base}/sessions", headers={"Authorization": f"Bearer {KEY}"}).status_code
            == 200
        )
        assert (
            httpx.get(f"{base}/sessions", headers={"Authorization": f"Bearer {wrong}"}).status_code
            == 401
        )
        assert (
            httpx.post(
                f"{base}/chat?message=hi", headers={"Authorization": f"Bearer {KEY}"}
            ).status_code
            == 200
        )
        # A key put in the URL by mistake is not accepted, and not logged either.
        assert httpx.get(f"{base}/sessions?api_key={KEY}").status_code == 401
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    logs = (out + err).decode()
    assert "GET /sessions" in logs  # the access log is on: requests are logged...
    assert KEY not in logs and wrong not in logs  # ...but never their keys
    assert "1 API key(s)" in logs


@pytest.mark.reliability("Security", "binds loopback unless told otherwise")
def test_serve_binds_loopback_by_default(tmp_path, fake):
    assert ServerSettings().host == "127.0.0.1"
    proc, port = start_serve(tmp_path, fake.url)
    try:
        out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            local = {line.split()[3] for line in out.stdout.splitlines()}
            assert local == {f"127.0.0.1:{port}"}
        else:  # no ss: the socket must refuse a non-loopback address of this machine
            addresses = {
                a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
            }
            for address in addresses - {"127.0.0.1"}:
                with pytest.raises(OSError), socket.create_connection((address, port), timeout=2):
                    pass
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


@pytest.mark.reliability("Security", "warning when exposed without keys")
def test_serve_warns_when_exposed_without_keys(tmp_path, fake):
    proc, _port = start_serve(tmp_path, fake.url, "--host", "0.0.0.0")
    proc.terminate()
    _out, err = proc.communicate(timeout=20)
    assert "without --api-key" in err.decode() and "anyone who can reach it" in err.decode()


@pytest.mark.reliability("Security", "no request can steer the server to another URL")
def test_requests_cannot_redirect_the_server(keyed, fake):
    auth = {"Authorization": f"Bearer {KEY}"}
    with FakeOllama() as other:
        hostile = {
            "message": "hi",
            "base_url": other.url,
            "host": other.url,
            "ollama_url": other.url,
            "options": {"base_url": other.url, "host": other.url},
            "model": other.url,
        }
        r = httpx.post(f"{keyed.url}/chat", json=hostile, headers=auth, timeout=10)
        assert r.status_code == 422 and "model" in r.text  # a URL is not a model name
        hostile.pop("model")
        r = httpx.post(f"{keyed.url}/chat", json=hostile, headers=auth, timeout=10)
        assert r.status_code == 422 and "options.base_url" in r.text  # unknown options refused
        hostile.pop("options")
        r = httpx.post(f"{keyed.url}/chat", json=hostile, headers=auth, timeout=10)
        assert r.status_code == 200  # unknown top-level fields are ignored, not obeyed
        assert fake.chat_requests()[-1]["messages"][-1]["content"] == "hi"
        for path in ("/models/pull",):
            for name in (
                f"{other.host_port}/library/x:1",
                "https://example.com/m",
                "evil.example.com/a/b",
            ):
                r = httpx.post(f"{keyed.url}{path}", json={"name": name}, headers=auth, timeout=10)
                assert r.status_code == 422, (name, r.text)
        assert other.requests == []  # the other server never heard from us


@pytest.mark.reliability("Security", "no pull unless allowed")
def test_pull_needs_the_server_flag(tmp_path, fake):
    settings = ServerSettings(store_url="memory://", ollama_url=fake.url)
    with LiveServer(settings) as live:
        r = httpx.post(f"{live.url}/models/pull", json={"name": "qwen3:0.6b"}, timeout=10)
        assert r.status_code == 403 and "--allow-pull" in r.json()["hint"]
        r = httpx.post(
            f"{live.url}/chat", json={"message": "hi", "model": "qwen3:0.6b"}, timeout=10
        )
        assert r.status_code == 404  # a missing model is reported, never pulled
    assert not any(req.path == "/api/pull" for req in fake.requests)


# -- issue 26: other web sites, DNS rebinding, one reading of the key ------------------------
def _model_calls(fake) -> int:
    checks = ("/api/version", "/api/tags", "/api/ps")  # the server's own health checks
    return sum(1 for r in fake.requests if r.path not in checks)


@pytest.mark.reliability("Security", "every endpoint refuses a foreign Host or Origin (403)")
def test_every_documented_endpoint_refuses_other_sites(keyed, fake):
    paths = keyed.app.openapi()["paths"]
    auth = {"Authorization": f"Bearer {KEY}"}
    before = _model_calls(fake)
    checked = 0
    with httpx.Client(base_url=keyed.url, timeout=10) as client:
        for path, operations in paths.items():
            for method in operations:
                for headers in (
                    {"Host": "evil.example"},  # DNS rebinding: a name of the attacker's
                    {"Origin": "https://evil.example"},  # a page on another site
                    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},
                ):
                    for key in ({}, auth):  # with the key or without: refused before auth
                        r = client.request(
                            method,
                            concrete(path),
                            content=b'{"message": "hi", "prompt": "hi", "name": "x"}',
                            headers={"Content-Type": "text/plain", **headers, **key},
                        )
                        assert r.status_code == 403, (method, path, headers, r.text)
                        assert method == "head" or r.json()["error"]  # (HEAD: no body)
                        assert KEY not in r.text
                        checked += 1
    assert checked >= 6 * 8
    assert _model_calls(fake) == before  # nothing reached Ollama


@pytest.mark.reliability("Security", "every endpoint reads `Bearer  KEY` alike (one parser)")
def test_every_documented_endpoint_reads_the_key_alike(keyed):
    paths = keyed.app.openapi()["paths"]
    with httpx.Client(base_url=keyed.url, timeout=10) as client:
        for path, operations in paths.items():
            if path in PUBLIC:
                continue
            for method in operations:
                for header, accepted in (
                    (f"Bearer  {KEY}", True),  # two spaces: refused by /chat, /v1, /api before
                    (f"bearer {KEY}", True),
                    (f"Bearer {KEY}x", False),
                    (f"Bearer{KEY}", False),
                ):
                    r = client.request(
                        method,
                        concrete(path),
                        json={"message": "hi", "prompt": "hi", "name": "x"},
                        headers={"Authorization": header},
                    )
                    assert (r.status_code != 401) is accepted, (method, path, r.status_code)


@pytest.mark.reliability("Security", "a key no client can send is refused at start (exit 2)")
@pytest.mark.parametrize("how", ["option", "environment"])
def test_serve_refuses_a_key_outside_printable_ascii(tmp_path, how):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLANG_")}
    env["OLLANG_HOME"] = str(tmp_path / "home")
    args = ["serve", "--port", str(free_port())]
    if how == "option":
        args += ["--api-key", "ключ"]
    else:
        env["OLLANG_SERVER_API_KEYS"] = "good-key,ключ"
    out = cli(*args, env=env, timeout=60)
    err = out.stderr.decode()
    assert out.returncode == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "printable ASCII" in errors[0], err
    assert "Traceback" not in err and "ключ" not in err  # the key is never shown
