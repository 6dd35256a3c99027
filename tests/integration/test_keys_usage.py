"""Issue 22: managed keys and usage, over real processes.

The CLI runs in a subprocess on the store a real ``ollang serve`` (a subprocess on a real
port, in front of the Ollama-protocol test server) uses; keys made while the server runs
are honoured, and revoked keys refused, within 5 s. The OpenAI SDK and the ollama client
see their own auth errors; usage is counted per key from the hosts' token counts; two
replicas on PostgreSQL share keys.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest

from tests.cli_process import cli
from tests.fake_ollama import FakeOllama, ModelInfo, Reply
from tests.pg import serve_env, serve_log, start_serve

ADMIN = "admin-secret-0123456789"
HONOURED_S = 5.0


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(models=[ModelInfo("llama3:latest"), ModelInfo("mistral:latest")]) as srv:
        yield srv


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("keys")


def store_url(home: Path) -> str:
    return f"sqlite:///{home / 'sessions.db'}"


def env_for(home: Path, fake: FakeOllama) -> dict[str, str]:
    """The CLI's and the server's environment: one store."""
    env = serve_env(store_url(home), fake.host_port, home)
    env["OLLANG_STORE_URL"] = store_url(home)
    return env


@pytest.fixture(scope="module")
def server(fake, home) -> Iterator[str]:
    """``ollang serve --admin-key ADMIN`` on the module's store."""
    proc, port = start_serve(store_url(home), fake.host_port, home, "--admin-key", ADMIN)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def keys(env: dict[str, str], *args: str) -> Any:
    return cli("keys", *args, env=env)


def create(env: dict[str, str], name: str, *args: str) -> str:
    done = keys(env, "create", name, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode().strip()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def eventually(check: Callable[[], bool], within: float = HONOURED_S) -> float:
    """Seconds until ``check()`` held (fails after ``within``)."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < within, "not within the deadline"
        time.sleep(0.1)
    return time.monotonic() - start


def chat(url: str, key: str | None, **body: Any) -> httpx.Response:
    headers = bearer(key) if key else {}
    return httpx.post(url + "/chat", json={"message": "Hi", **body}, headers=headers, timeout=10)


# -- the CLI ---------------------------------------------------------------------------
def test_cli_create_list_duplicate_and_bad_limits(tmp_path, fake) -> None:
    env = env_for(tmp_path, fake)
    done = keys(env, "create", "alice", "--models", "llama3*", "--rpm", "10", "--weight", "2")
    assert done.returncode == 0, done.stderr
    secret = done.stdout.decode()
    assert secret.startswith("ollang_") and secret.count("\n") == 1  # the secret alone
    assert b"alice" in done.stderr
    listed = json.loads(keys(env, "list", "--json").stdout)["keys"]
    assert [(k["name"], k["models"], k["rpm"], k["weight"]) for k in listed] == [
        ("alice", ["llama3*"], 10, 2.0)
    ]
    assert secret.strip() not in json.dumps(listed)

    again = keys(env, "create", "alice")
    assert again.returncode == 2 and again.stdout == b""
    assert b"a key named 'alice' exists already" in again.stderr
    for bad in (["--rpm", "-1"], ["--tpm", "lots"], ["--daily-tokens", "0"], ["--weight", "-2"]):
        done = keys(env, "create", "bob", *bad)
        assert done.returncode == 2, (bad, done.stderr)
        assert bad[0].encode() in done.stderr and done.stdout == b""
    assert keys(env, "revoke", "nobody").returncode == 2
    assert b"no key named 'nobody'" in keys(env, "rotate", "nobody").stderr
    assert keys(env, "revoke", "alice").returncode == 0
    assert json.loads(keys(env, "list", "--json").stdout)["keys"][0]["revoked"] is not None


# -- the server ------------------------------------------------------------------------
def test_new_key_honoured_then_revoked_within_5s(server, home, fake) -> None:
    env = env_for(home, fake)
    secret = create(env, "carol")
    took = eventually(lambda: chat(server, secret).status_code == 200)
    assert took < HONOURED_S
    assert chat(server, None).status_code == 401  # a key is required now
    unknown = chat(server, "ollang_not-a-key")
    assert unknown.status_code == 401 and "revoked" not in unknown.text

    assert keys(env, "revoke", "carol").returncode == 0
    eventually(lambda: chat(server, secret).status_code == 401)
    refused = chat(server, secret).json()
    assert refused["hint"] == "this key was revoked; ask for a new one"
    v1 = httpx.post(
        server + "/v1/chat/completions",
        json={"model": "llama3", "messages": [{"role": "user", "content": "Hi"}]},
        headers=bearer(secret),
    )
    assert v1.status_code == 401
    assert v1.json()["error"]["code"] == "invalid_api_key"
    assert "revoked" in v1.json()["error"]["message"]
    api = httpx.post(server + "/api/chat", json={"model": "llama3"}, headers=bearer(secret))
    assert api.status_code == 401 and "revoked" in api.json()["error"]


def test_rotate_keeps_sessions(server, home, fake) -> None:
    env = env_for(home, fake)
    old = create(env, "dave")
    eventually(lambda: chat(server, old).status_code == 200)
    session = chat(server, old).json()["session_id"]
    rotated = keys(env, "rotate", "dave")
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.decode().strip()
    assert new.startswith("ollang_") and new != old
    eventually(lambda: chat(server, old).status_code == 401)
    mine = httpx.get(server + "/sessions", headers=bearer(new)).json()["sessions"]
    assert session in [s["id"] for s in mine]


def test_sdks_get_their_auth_errors(server) -> None:
    client = openai.OpenAI(base_url=server + "/v1", api_key="ollang_unknown", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="llama3", messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(ollama.ResponseError) as caught:
        ollama.Client(host=server, headers=bearer("ollang_unknown")).chat(
            model="llama3", messages=[{"role": "user", "content": "Hi"}]
        )
    assert caught.value.status_code == 401


def test_admin_keys(server, home, fake) -> None:
    env = env_for(home, fake)
    assert httpx.get(server + "/admin/keys").status_code == 401
    made = httpx.post(
        server + "/admin/keys",
        json={"name": "erin", "models": ["llama3*"], "tpm": 1000},
        headers=bearer(ADMIN),
    )
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    assert made.json()["key"]["tpm"] == 1000
    assert chat(server, secret).status_code == 200  # this replica: at once
    assert httpx.get(server + "/admin/keys", headers=bearer(secret)).status_code == 403
    listed = httpx.get(server + "/admin/keys", headers=bearer(ADMIN))
    assert "erin" in [k["name"] for k in listed.json()["keys"]]
    assert secret not in listed.text and "secret" not in listed.text
    taken = httpx.post(server + "/admin/keys", json={"name": "erin"}, headers=bearer(ADMIN))
    assert taken.status_code == 409
    bad = httpx.post(server + "/admin/keys", json={"name": "x", "rpm": -1}, headers=bearer(ADMIN))
    assert bad.status_code == 422

    # the key's models: another one is refused as --allow-model would
    other = httpx.post(
        server + "/v1/chat/completions",
        json={"model": "mistral", "messages": [{"role": "user", "content": "Hi"}]},
        headers=bearer(secret),
    )
    assert other.status_code == 403, other.text
    assert other.json()["error"]["type"] == "permission_error"

    rotated = httpx.post(server + "/admin/keys/erin/rotate", headers=bearer(ADMIN))
    assert rotated.status_code == 200 and rotated.json()["secret"] != secret
    assert chat(server, secret).status_code == 401
    assert chat(server, rotated.json()["secret"]).status_code == 200
    gone = httpx.delete(server + "/admin/keys/erin", headers=bearer(ADMIN))
    assert gone.status_code == 200 and gone.json()["key"]["revoked"] is not None
    assert httpx.delete(server + "/admin/keys/nobody", headers=bearer(ADMIN)).status_code == 404
    assert keys(env, "list", "--json").returncode == 0


def test_usage_per_key(server, home, fake) -> None:
    env = env_for(home, fake)
    frank, grace = create(env, "frank"), create(env, "grace")
    eventually(lambda: chat(server, grace).status_code == 200)
    fake.queue(Reply(["Hello", " there"], prompt_eval_count=11))
    completion = openai.OpenAI(base_url=server + "/v1", api_key=frank).chat.completions.create(
        model="llama3", messages=[{"role": "user", "content": "Hi"}]
    )
    assert completion.usage is not None and completion.usage.prompt_tokens == 11
    fake.queue(Reply(["a", "b", "c"], prompt_eval_count=5))
    ollama.Client(host=server, headers=bearer(frank)).chat(
        model="llama3", messages=[{"role": "user", "content": "Hi"}]
    )

    def frank_usage() -> list[dict[str, Any]]:
        answer = httpx.get(server + "/usage", headers=bearer(frank))
        assert answer.status_code == 200, answer.text
        return answer.json()["usage"]

    eventually(lambda: sum(r["requests"] for r in frank_usage()) == 2)
    (row,) = frank_usage()
    assert (row["key"], row["model"], row["input_tokens"], row["output_tokens"]) == (
        "frank",
        "llama3:latest",
        16,
        5,
    )
    assert row["errors"] == 0 and row["busy_s"] > 0 and row["queue_s"] >= 0
    assert row["day"] == time.strftime("%Y-%m-%d", time.gmtime())
    # a key sees only its own, whatever it asks for; the admin sees every key
    theirs = httpx.get(server + "/usage", params={"key": "grace"}, headers=bearer(frank))
    assert {r["key"] for r in theirs.json()["usage"]} == {"frank"}
    every = httpx.get(server + "/usage", headers=bearer(ADMIN)).json()["usage"]
    assert {"frank", "grace"} <= {r["key"] for r in every}
    assert httpx.get(
        server + "/usage", params={"since": "2999-01-01"}, headers=bearer(ADMIN)
    ).json() == {"usage": []}
    # the CLI reads the same rows
    shown = cli("usage", "--key", "frank", "--json", env=env)
    assert json.loads(shown.stdout)["usage"][0]["input_tokens"] == 16
    as_csv = cli("usage", "--key", "frank", "--csv", env=env).stdout.decode().splitlines()
    assert as_csv[0].startswith("day,key,model,requests") and ",frank,llama3:latest,2," in as_csv[1]
    # /metrics: counters by key name, never a secret
    metrics = httpx.get(server + "/metrics", headers=bearer(ADMIN)).text
    assert 'ollang_key_requests_total{key="frank"} 2.0' in metrics
    assert 'ollang_key_tokens_total{direction="input",key="frank"} 16.0' in metrics
    assert frank not in metrics and grace not in metrics
    assert serve_log(home, int(server.rsplit(":", 1)[1])).count(frank) == 0


def test_cli_turns_count_as_local(tmp_path, fake) -> None:
    env = env_for(tmp_path, fake)
    fake.queue(Reply(["one", " two"], prompt_eval_count=9))
    done = cli("ask", "--model", "llama3", "Hi", env=env)
    assert done.returncode == 0, done.stderr
    shown = cli("usage", "--json", env=env)
    (row,) = json.loads(shown.stdout)["usage"]
    assert (row["key"], row["requests"], row["input_tokens"], row["output_tokens"]) == (
        "local",
        1,
        9,
        2,
    )
    table = cli("usage", env=env).stdout.decode()
    assert table.startswith("day") and " local " in table


# -- two replicas on PostgreSQL --------------------------------------------------------
def test_replicas_on_postgres_share_keys(tmp_path, fake) -> None:
    from tests import pg

    try:
        pg.server()
    except RuntimeError as err:
        pytest.skip(str(err))
    with pg.fresh_schema_url() as url:
        procs = [
            pg.start_serve(url, fake.host_port, tmp_path / name, "--admin-key", ADMIN)
            for name in ("a", "b")
        ]
        try:
            a, b = (f"http://127.0.0.1:{port}" for _, port in procs)
            made = httpx.post(
                a + "/admin/keys", json={"name": "henry"}, headers=bearer(ADMIN), timeout=10
            )
            assert made.status_code == 201, made.text
            secret = made.json()["secret"]
            assert chat(a, secret).status_code == 200
            took = eventually(lambda: chat(b, secret).status_code == 200)
            assert took < HONOURED_S
            assert httpx.delete(a + "/admin/keys/henry", headers=bearer(ADMIN)).status_code == 200
            eventually(lambda: chat(b, secret).status_code == 401)
            assert "revoked" in chat(b, secret).json()["error"]
            # both replicas' turns add up in the one usage table
            eventually(
                lambda: (
                    sum(
                        r["requests"]
                        for r in httpx.get(b + "/usage", headers=bearer(ADMIN)).json()["usage"]
                        if r["key"] == "henry"
                    )
                    >= 2
                )
            )
        finally:
            for proc, _ in procs:
                proc.terminate()
                proc.wait(timeout=15)
