"""A model that is simply not pulled is "not found" (404, exit 4) on every path, whatever else
the hosts are doing; "unavailable" (503, exit 3) is kept for when the model may be on a host
that does not answer.

The real server on a real port (in-process, or ``ollang serve`` as a subprocess), over the
Ollama-protocol test server, asked in all four dialects — ``/chat``, ``/v1`` through the
``openai`` SDK, ``/api/chat`` through the ``ollama`` client, and the CLI as a subprocess —
in each of these situations:

* ``one host up``: one Ollama host, up, without the model;
* ``one up, one never seen``: that, plus a configured host that has never answered;
* ``no embedded extra`` / ``broken embedded extra``: ``OLLANG_BACKEND=auto`` in a process
  where ``import llama_cpp`` fails (not installed: ``sys.modules["llama_cpp"] = None`` from
  a ``sitecustomize``; broken: a ``llama_cpp.py`` that raises ``ImportError``);
* ``seen with it, now down``: a host that was up *with* the model has been killed → 503
  naming it (the CLI, a new process, never saw it up: there it is a 404 that names the
  host it could not ask);
* ``no host up``: 503 / exit 3 as before.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from ollang.server import ServerSettings
from ollang.server.testing import LiveServer
from tests.cli_process import cli
from tests.fake_ollama import FakeOllama, ModelInfo
from tests.net import free_port
from tests.reliability.conftest import start_serve

MISSING = "phi3"  # installed nowhere (or, in "seen with it, now down", only on the dead host)
PULL_HINT = f"pull it with `ollama pull {MISSING}`"
OLLAMA_TEXT = f'model "{MISSING}" not found, try pulling it first'  # Ollama's own words


@dataclass
class Target:
    """A running server and the environment for the CLI over the same hosts."""

    url: str
    env: dict[str, str]
    #: The host every 503 must name (the one that had the model), if any.
    down: str | None = None


def _cli_env(
    tmp: Path, hosts: list[str], backend: str = "ollama", pythonpath: str | None = None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLANG_", "OLLAMA_"))}
    env.pop("PYTHONPATH", None)
    env.update(
        OLLANG_HOME=str(tmp / "home"), OLLANG_OLLAMA_HOSTS=",".join(hosts), OLLANG_BACKEND=backend
    )
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def _settings(tmp: Path, hosts: list[str]) -> ServerSettings:
    # Ollama hosts only: the same answers whether the embedded extra is installed or not
    # (the situations without it run ``auto`` in a process of their own).
    return ServerSettings(
        store_url=f"sqlite:///{tmp / 'sessions.db'}",
        ollama_hosts=hosts,
        default_model="llama3",
        backend="ollama",
    )


def _wait(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _hosts_up(url: str) -> dict[str, bool]:
    return {h["url"]: h["up"] for h in httpx.get(f"{url}/health", timeout=10).json()["hosts"]}


# -- the situations ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def one_host_up(tmp_path_factory) -> Iterator[Target]:
    tmp = tmp_path_factory.mktemp("one")
    with (
        FakeOllama(models=[ModelInfo("llama3:latest")]) as a,
        LiveServer(_settings(tmp, [a.url])) as live,
    ):
        yield Target(live.url, _cli_env(tmp, [a.url]))


@pytest.fixture(scope="module")
def one_up_one_never_seen(tmp_path_factory) -> Iterator[Target]:
    tmp = tmp_path_factory.mktemp("never")
    never = f"http://127.0.0.1:{free_port()}"
    with (
        FakeOllama(models=[ModelInfo("llama3:latest")]) as a,
        LiveServer(_settings(tmp, [a.url, never])) as live,
    ):
        assert _hosts_up(live.url) == {a.url: True, never: False}
        yield Target(live.url, _cli_env(tmp, [a.url, never]))


def _without_embedded(tmp_path_factory, how: str) -> Iterator[Target]:
    """``ollang serve`` (and the CLI) in processes where ``import llama_cpp`` fails."""
    tmp = tmp_path_factory.mktemp(how)
    blocker = tmp / "blocker"
    blocker.mkdir()
    if how == "absent":  # as if never installed: importlib.util.find_spec finds nothing
        (blocker / "sitecustomize.py").write_text('import sys\nsys.modules["llama_cpp"] = None\n')
    else:  # installed but broken (a missing shared library, say)
        (blocker / "llama_cpp.py").write_text('raise ImportError("libllama.so: cannot open")\n')
    check = subprocess.run(
        [sys.executable, "-c", "import llama_cpp"],
        env={**os.environ, "PYTHONPATH": str(blocker)},
        capture_output=True,
    )
    assert check.returncode != 0 and b"llama_cpp" in check.stderr + check.stdout, check
    with FakeOllama(models=[ModelInfo("llama3:latest")]) as a:
        with pytest.MonkeyPatch.context() as mp:  # start_serve copies os.environ
            mp.setenv("PYTHONPATH", str(blocker))
            proc, port = start_serve(tmp, a.host_port, "--backend", "auto")
        try:
            url = f"http://127.0.0.1:{port}"
            hosts = _hosts_up(url)
            if how == "absent":  # not a host at all (it would be one that is always down)
                assert hosts == {a.url: True}
            else:  # found, so a host, and up: it lists its bundled model
                assert hosts == {a.url: True, "embedded": True}
            yield Target(url, _cli_env(tmp, [a.url], "auto", pythonpath=str(blocker)))
        finally:
            proc.terminate()
            _, stderr = proc.communicate(timeout=20)
            assert b"Traceback" not in stderr, stderr.decode()


@pytest.fixture(scope="module")
def no_embedded_extra(tmp_path_factory) -> Iterator[Target]:
    yield from _without_embedded(tmp_path_factory, "absent")


@pytest.fixture(scope="module")
def broken_embedded_extra(tmp_path_factory) -> Iterator[Target]:
    yield from _without_embedded(tmp_path_factory, "broken")


@pytest.fixture(scope="module")
def seen_with_it_now_down(tmp_path_factory) -> Iterator[Target]:
    tmp = tmp_path_factory.mktemp("seen")
    with (
        FakeOllama(models=[ModelInfo("llama3:latest")]) as a,
        FakeOllama(models=[ModelInfo(f"{MISSING}:latest")]) as b,
        LiveServer(_settings(tmp, [a.url, b.url])) as live,
    ):
        models = {m["name"]: m["hosts"] for m in httpx.get(f"{live.url}/models").json()["models"]}
        assert models[f"{MISSING}:latest"] == [b.url]
        b.kill()
        yield Target(live.url, _cli_env(tmp, [a.url, b.url]), down=b.url)


@pytest.fixture(scope="module")
def no_host_up(tmp_path_factory) -> Iterator[Target]:
    tmp = tmp_path_factory.mktemp("none")
    never = f"http://127.0.0.1:{free_port()}"
    with LiveServer(_settings(tmp, [never])) as live:
        yield Target(live.url, _cli_env(tmp, [never]), down=never)


NOT_FOUND = ["one_host_up", "one_up_one_never_seen", "no_embedded_extra", "broken_embedded_extra"]
UNAVAILABLE = ["seen_with_it_now_down"]


# -- the dialects -----------------------------------------------------------------------------
def _chat(target: Target) -> tuple[int, str]:
    r = httpx.post(f"{target.url}/chat", json={"message": "hi", "model": MISSING}, timeout=30)
    body = r.json()
    assert set(body) >= {"error", "hint"}, body
    return r.status_code, f"{body['error']}\n{body['hint']}"


def _openai(target: Target) -> tuple[int, str]:
    client = openai.OpenAI(base_url=f"{target.url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=MISSING, messages=[{"role": "user", "content": "hi"}])
    err = caught.value
    body = err.response.json()["error"]
    assert set(body) >= {"message", "type", "code", "hint"}, body
    if err.status_code == 404:
        assert isinstance(err, openai.NotFoundError)
        assert err.code == "model_not_found" and body["type"] == "invalid_request_error"
    else:
        assert err.code == "service_unavailable" and body["type"] == "server_error"
    return err.status_code, f"{body['message']}\n{body['hint']}"


def _ollama(target: Target) -> tuple[int, str]:
    client = ollama.Client(host=target.url, timeout=30)
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model=MISSING, messages=[{"role": "user", "content": "hi"}])
    err = caught.value
    if err.status_code == 404:
        assert err.error == OLLAMA_TEXT
    # The whole body: Ollama's {"error": "..."}, plus ollang's hint.
    r = httpx.post(
        f"{target.url}/api/chat",
        json={"model": MISSING, "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert r.status_code == err.status_code
    body = r.json()
    assert isinstance(body["error"], str) and body["error"] == err.error
    return err.status_code, f"{body['error']}\n{body['hint']}"


def _cli(target: Target) -> tuple[int, str]:
    out = cli("ask", "-m", MISSING, "hi", env=target.env, timeout=120)
    err = out.stderr.decode()
    assert "Traceback" not in err, err
    assert out.stdout == b""
    assert err.startswith("error: ") and "\nhint: " in err, err
    return out.returncode, err


DIALECTS = {"/chat": _chat, "/v1": _openai, "/api/chat": _ollama, "cli": _cli}


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("situation", NOT_FOUND)
def test_a_model_not_pulled_is_not_found(request, situation, dialect):
    target: Target = request.getfixturevalue(situation)
    status, text = DIALECTS[dialect](target)
    assert status == (4 if dialect == "cli" else 404), text
    assert PULL_HINT in text
    assert "llama3:latest" in text, "names what is installed"
    assert "ollama serve" not in text
    if situation == "one_up_one_never_seen":
        assert "not asked (down): http://127.0.0.1:" in text, "names the host it could not ask"
    if situation == "broken_embedded_extra":
        assert "smollm2:135m" in text  # found by importlib, so a host; it lacks phi3 too


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_model_on_a_host_that_went_down_is_unavailable_naming_it(
    request, seen_with_it_now_down, dialect
):
    target = seen_with_it_now_down
    status, text = DIALECTS[dialect](target)
    assert target.down is not None and target.down in text, text
    if dialect == "cli":
        # A new process never saw that host up: every host that answered lacks the model,
        # so "not found" — naming the host it could not ask.
        assert status == 4, text
        assert PULL_HINT in text and f"not asked (down): {target.down}" in text
    else:
        assert status == 503, text
        assert PULL_HINT not in text


def test_the_server_learns_the_host_is_down_and_still_answers_503(seen_with_it_now_down):
    """Whether a request found the host dead (failover) or the health check did."""
    target = seen_with_it_now_down
    _wait(lambda: _hosts_up(target.url)[target.down] is False)
    for dialect in ("/chat", "/v1", "/api/chat"):
        status, text = DIALECTS[dialect](target)
        assert status == 503 and target.down in text, (dialect, text)
        assert "llama3:latest" in text, "names what is available instead"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_with_no_host_up_it_is_unavailable(no_host_up, dialect):
    status, text = DIALECTS[dialect](no_host_up)
    assert status == (3 if dialect == "cli" else 503), text
    assert no_host_up.down is not None and no_host_up.down in text
    assert "ollama serve" in text and PULL_HINT not in text
