"""ollang as a drop-in for Ollama (issue 25): what Ollama's clients do before and beside chat —
``HEAD /``, ``GET /``, the older ``/api/embeddings``, a model that cannot embed, and model
management (delete, copy, create with blobs, push) behind ``--allow-manage`` — with
ollama-python's ``Client`` against the server on a real port over the fake Ollama, the CLI's
same verbs as a subprocess, and ``docs/ollama-api.md`` kept true against Ollama's endpoint
list (``../shared/ollama-api.md``) and the app's routes."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import httpx
import ollama
import pytest
from fastapi.testclient import TestClient

from ollang.errors import InvalidInputError
from ollang.server import ServerSettings, create_app
from ollang.server.testing import LiveServer
from ollang.transport.manage import parse_modelfile
from tests.cli_process import ROOT
from tests.cli_process import cli as ollang_cli
from tests.fake_ollama import FakeOllama

MODELS = ["llama3:latest", "all-minilm:latest", "qwen3:0.6b"]
DISABLED = "managing models is disabled on this server"
HOST = "X-Ollang-Host"


def settings(tmp_path: Path, *urls: str, **extra) -> ServerSettings:
    return ServerSettings(
        store_url=f"sqlite:///{tmp_path / 'sessions.db'}",
        ollama_hosts=list(urls),
        backend="ollama",
        default_model="llama3",
        **extra,
    )


@pytest.fixture(scope="module")
def fake():
    with FakeOllama(models=MODELS) as srv:
        yield srv


@pytest.fixture(scope="module")
def plain(fake, tmp_path_factory):
    """The server as it starts by default: no model management."""
    with LiveServer(settings(tmp_path_factory.mktemp("plain"), fake.url)) as server:
        yield server


@pytest.fixture(scope="module")
def managed(fake, tmp_path_factory):
    """The server with --allow-manage."""
    path = tmp_path_factory.mktemp("managed")
    with LiveServer(settings(path, fake.url, allow_manage=True)) as server:
        yield server


def names(client: ollama.Client) -> set[str]:
    return {m.model for m in client.list().models}


def last(fake: FakeOllama, path: str) -> dict:
    """The body of the last request to ``path`` the host received."""
    return next(r.body for r in reversed(fake.requests) if r.path == path)


def blob(tmp_path: Path, content: bytes = b"GGUF" + bytes(range(256)) * 8) -> tuple[Path, str]:
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    return path, "sha256:" + hashlib.sha256(content).hexdigest()


# -- HEAD / and GET / ---------------------------------------------------------------------------
def test_a_client_that_checks_head_first_as_the_ollama_cli_does(plain):
    with httpx.Client(base_url=plain.url, timeout=10) as http:
        head = http.head("/")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-type"].startswith("text/plain")
        tags = http.get("/api/tags")  # the same connection, kept alive
        assert tags.status_code == 200
        assert {m["model"] for m in tags.json()["models"]} == set(MODELS)
    assert names(ollama.Client(host=plain.url, timeout=10)) == set(MODELS)


def test_get_root_is_ollamas_answer_except_to_a_browser(plain):
    for accept in (None, "*/*", "application/json"):
        headers = {"Accept": accept} if accept else {}
        r = httpx.get(f"{plain.url}/", headers=headers, timeout=10)
        assert r.status_code == 200 and r.text == "Ollama is running", accept
        assert r.headers["content-type"].startswith("text/plain")
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    page = httpx.get(f"{plain.url}/", headers={"Accept": browser}, timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<html" in page.text.lower() and "content-security-policy" in page.headers
    assert "Accept" in page.headers["vary"]
    version = httpx.get(f"{plain.url}/api/version", timeout=10).json()
    assert version["version"] == "0.12.0" and version["ollang"]


# -- embeddings -------------------------------------------------------------------------------
def test_the_older_embeddings_call_is_routed(plain, fake):
    client = ollama.Client(host=plain.url, timeout=10)
    reply = client.embeddings(model="all-minilm", prompt="Why is the sky blue?")
    assert len(reply.embedding) == 4 and all(isinstance(x, float) for x in reply.embedding)
    last = fake.requests[-1]
    assert last.path == "/api/embeddings"
    assert last.body == {"model": "all-minilm:latest", "prompt": "Why is the sky blue?"}
    with pytest.raises(ollama.ResponseError) as caught:
        client.embeddings(model="nope", prompt="x")
    assert caught.value.status_code == 404


def test_a_model_that_cannot_embed_gets_ollamas_capability_error(plain, fake):
    client = ollama.Client(host=plain.url, timeout=10)
    before = [r.path for r in fake.requests].count("/api/embed")
    for call in (
        lambda: client.embed(model="llama3", input="x"),
        lambda: client.embeddings(model="llama3", prompt="x"),
    ):
        with pytest.raises(ollama.ResponseError) as caught:
            call()
        assert caught.value.status_code == 400
        assert caught.value.error == '"llama3" does not support embeddings'
    # Known from the host's /api/show: the embed request itself never went.
    assert [r.path for r in fake.requests].count("/api/embed") == before
    assert len(client.embed(model="all-minilm", input=["a", "b"]).embeddings) == 2


def test_embeddings_keep_the_allow_list_and_the_limits(fake, tmp_path):
    config = settings(tmp_path, fake.url, allow_models=["llama3*"], max_message_chars=10)
    with LiveServer(config) as server:
        client = ollama.Client(host=server.url, timeout=10)
        with pytest.raises(ollama.ResponseError) as caught:
            client.embeddings(model="all-minilm", prompt="x")
        assert caught.value.status_code == 403
        r = httpx.post(
            f"{server.url}/api/embeddings", json={"model": "llama3", "prompt": "x" * 11}, timeout=10
        )
        assert r.status_code == 413 and "error" in r.json()


# -- management refused without --allow-manage --------------------------------------------------
def test_management_is_refused_in_ollamas_shape_without_allow_manage(plain, fake, tmp_path):
    client = ollama.Client(host=plain.url, timeout=10)
    path, digest = blob(tmp_path)
    before = len(fake.requests)
    for call in (
        lambda: client.delete("llama3"),
        lambda: client.copy("llama3", "llama3-copy"),
        lambda: client.create(model="mine", from_="llama3"),
        lambda: client.push("me/llama3"),
        lambda: client.create_blob(path),
    ):
        with pytest.raises(ollama.ResponseError) as caught:
            call()
        assert caught.value.status_code == 403
        assert caught.value.error == DISABLED
    r = httpx.delete(f"{plain.url}/api/delete", timeout=10)  # the raw answer, before any parsing
    assert r.status_code == 403 and r.json()["error"] == DISABLED and "--allow-manage" in r.text
    assert httpx.head(f"{plain.url}/api/blobs/{digest}", timeout=10).status_code == 403
    # Nothing reached the host but its health checks.
    assert {r.path for r in fake.requests[before:]} <= {"/api/version", "/api/tags", "/api/ps"}
    assert names(client) == set(MODELS)


# -- management with --allow-manage -----------------------------------------------------------
def test_copy_and_delete_go_to_the_host_and_lists_are_fresh_at_once(managed, fake):
    client = ollama.Client(host=managed.url, timeout=10)
    assert client.copy("llama3", "llama3-backup").status == "success"
    assert last(fake, "/api/copy") == {"source": "llama3:latest", "destination": "llama3-backup"}
    assert "llama3-backup:latest" in names(client)  # the router checked the host again
    r = httpx.request(
        "DELETE", f"{managed.url}/api/delete", json={"model": "llama3-backup"}, timeout=10
    )
    assert r.status_code == 200 and r.content == b"" and r.headers[HOST] == fake.url
    assert "llama3-backup:latest" not in names(client)
    with pytest.raises(ollama.ResponseError) as caught:
        client.delete("llama3-backup")
    assert caught.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as caught:
        client.copy("nope", "nope2")
    assert caught.value.status_code == 404


def test_create_uploads_blobs_and_streams_progress(managed, fake, tmp_path):
    client = ollama.Client(host=managed.url, timeout=10)
    path, digest = blob(tmp_path)
    head = httpx.head(f"{managed.url}/api/blobs/{digest}", timeout=10)
    assert head.status_code == 404 and head.headers[HOST] == fake.url
    assert client.create_blob(path) == digest
    assert fake.blobs[digest] == path.read_bytes()
    assert httpx.head(f"{managed.url}/api/blobs/{digest}", timeout=10).status_code == 200
    wrong = httpx.post(
        f"{managed.url}/api/blobs/sha256:{'0' * 64}", content=b"not that", timeout=10
    )
    assert wrong.status_code == 400 and "error" in wrong.json()  # the host's own check
    bad = httpx.head(f"{managed.url}/api/blobs/md5:abc", timeout=10)
    assert bad.status_code == 400

    done = client.create(model="from-file", files={"model.gguf": digest})
    assert done.status == "success"
    assert last(fake, "/api/create")["files"] == {"model.gguf": digest}
    lines = list(client.create(model="mario", from_="llama3", system="You are Mario.", stream=True))
    assert [line.status for line in lines][-1] == "success"
    sent = last(fake, "/api/create")
    assert sent["from"] == "llama3:latest" and sent["system"] == "You are Mario."
    assert {"from-file:latest", "mario:latest"} <= names(client)
    with pytest.raises(ollama.ResponseError) as caught:  # the host's in-stream error
        list(client.create(model="x", from_="missing", stream=True))
    assert "not found" in caught.value.error
    with pytest.raises(ollama.ResponseError) as caught:
        client.create(model="y", files={"../../etc/passwd": digest})
    assert caught.value.status_code == 400


def test_push_streams_the_hosts_progress(managed, fake):
    client = ollama.Client(host=managed.url, timeout=10)
    client.copy("llama3", "me/llama3-pushed")
    assert client.push("me/llama3-pushed").status == "success"
    lines = list(client.push("me/llama3-pushed", stream=True))
    layers = [line for line in lines if line.digest]
    assert layers and layers[-1].completed == layers[-1].total
    assert lines[-1].status == "success"
    assert fake.pushed[-2:] == ["me/llama3-pushed:latest"] * 2
    with pytest.raises(ollama.ResponseError) as caught:
        client.push("me/never-made")
    assert caught.value.status_code == 404
    r = httpx.post(f"{managed.url}/api/push", json={"model": "evil.example/me/x"}, timeout=10)
    assert r.status_code == 400  # another registry: never


@pytest.mark.parametrize("path", ["/api/show", "/api/create", "/api/push"])
def test_a_request_naming_no_model_is_ollamas_400_on_every_route(managed, path):
    r = httpx.post(f"{managed.url}{path}", json={"stream": False}, timeout=10)
    assert r.status_code == 400, r.text  # Ollama's status for it, as for any invalid field
    assert r.json()["error"] == "model is required"


def test_management_keeps_the_allow_list(fake, tmp_path):
    config = settings(tmp_path, fake.url, allow_manage=True, allow_models=["llama3*"])
    with LiveServer(config) as server:
        client = ollama.Client(host=server.url, timeout=10)
        for call in (
            lambda: client.delete("qwen3:0.6b"),
            lambda: client.copy("qwen3:0.6b", "llama3-q"),
            lambda: client.copy("llama3", "other"),
            lambda: client.create(model="other", from_="llama3"),
            lambda: client.create(model="llama3-x", from_="qwen3:0.6b"),
            lambda: client.push("me/qwen3"),
        ):
            with pytest.raises(ollama.ResponseError) as caught:
                call()
            assert caught.value.status_code == 403
        assert "qwen3:0.6b" in fake.models


def test_with_several_hosts_the_client_names_one(tmp_path):
    with FakeOllama(models=["llama3"]) as a, FakeOllama(models=["llama3", "qwen3:0.6b"]) as b:
        config = settings(tmp_path, a.url, b.url, allow_manage=True)
        with LiveServer(config) as server:
            # Only b has qwen3: no need to name it.
            r = httpx.post(
                f"{server.url}/api/copy",
                json={"source": "qwen3:0.6b", "destination": "qwen3-copy"},
                timeout=10,
            )
            assert r.status_code == 200 and r.headers[HOST] == b.url
            assert "qwen3-copy:latest" in b.models
            # Both have llama3: 409 naming them, until one is named.
            r = httpx.request(
                "DELETE", f"{server.url}/api/delete", json={"model": "llama3"}, timeout=10
            )
            assert r.status_code == 409 and a.url in r.json()["error"] and HOST in r.text
            r = httpx.request(
                "DELETE",
                f"{server.url}/api/delete",
                params={"host": a.host_port},
                json={"model": "llama3"},
                timeout=10,
            )
            assert r.status_code == 200 and r.headers[HOST] == a.url
            assert "llama3:latest" not in a.models and "llama3:latest" in b.models
            # A create from files: no host has the model yet, so name one (the header).
            path, digest = blob(tmp_path)
            named = ollama.Client(host=server.url, timeout=10, headers={HOST: b.url})
            with pytest.raises(ollama.ResponseError) as caught:
                ollama.Client(host=server.url, timeout=10).create_blob(path)
            assert caught.value.status_code == 409
            named.create_blob(path)
            named.create(model="from-file", files={"model.gguf": digest})
            assert "from-file:latest" in b.models and not a.blobs
            bad = httpx.head(
                f"{server.url}/api/blobs/{digest}", headers={HOST: "elsewhere:1"}, timeout=10
            )
            assert bad.status_code == 400


# -- the CLI's same verbs -------------------------------------------------------------------
def test_a_modelfile_reads_as_the_ollama_cli_sends_it(tmp_path):
    (tmp_path / "lora").mkdir()
    (tmp_path / "lora" / "adapter.gguf").write_bytes(b"x")
    body, files = parse_modelfile(
        "FROM llama3:8b\n"
        "# a comment\n"
        "ADAPTER ./lora\n"
        "parameter num_ctx 4096\n"
        "PARAMETER stop <|a|>\n"
        'PARAMETER stop "<|b|>"\n'
        "PARAMETER penalize_newline false\n"
        'TEMPLATE """{{ .System }}\n{{ .Prompt }}"""\n'
        "LICENSE MIT\n"
        'MESSAGE user "Is it?"\n'
        "MESSAGE assistant Yes.\n",
        tmp_path,
    )
    assert body == {
        "from": "llama3:8b",
        "template": "{{ .System }}\n{{ .Prompt }}",
        "license": "MIT",
        "messages": [
            {"role": "user", "content": "Is it?"},
            {"role": "assistant", "content": "Yes."},
        ],
        "parameters": {"num_ctx": 4096, "stop": ["<|a|>", "<|b|>"], "penalize_newline": False},
    }
    assert files == {"adapters": {"adapter.gguf": (tmp_path / "lora" / "adapter.gguf").resolve()}}
    for text, problem in (
        ("PARAMETER temperature 1\n", "no FROM"),
        ("FROM ./missing.gguf\n", "no such file"),
        ("FROM x\nWIBBLE y\n", "unknown Modelfile instruction"),
        ('FROM x\nSYSTEM """never closed\n', "never closed"),
        ("FROM x\nMESSAGE robot hi\n", "the role must be"),
    ):
        with pytest.raises(InvalidInputError, match=problem):
            parse_modelfile(text, tmp_path)


@pytest.mark.timeout(300)  # seven CLI processes, each importing LangChain
def test_the_cli_verbs(tmp_path):
    with FakeOllama(models=["llama3"]) as fake:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLANG_", "COLUMNS"))}
        env.update(
            OLLAMA_HOST=fake.host_port, OLLANG_HOME=str(tmp_path / "home"), OLLANG_BACKEND="ollama"
        )
        out = ollang_cli("cp", "llama3", "llama3-copy", env=env)
        assert out.returncode == 0, out.stderr
        assert "llama3-copy:latest" in fake.models
        out = ollang_cli("rm", "llama3-copy", "--yes", env=env)
        assert out.returncode == 0, out.stderr
        assert "llama3-copy:latest" not in fake.models

        weights, digest = blob(tmp_path)
        (tmp_path / "Modelfile").write_text(
            "# a Modelfile\nFROM ./model.gguf\nPARAMETER temperature 0.3\n"
            'PARAMETER stop "<|end|>"\nSYSTEM """You are\nMario."""\n',
            encoding="utf-8",
        )
        out = ollang_cli("create", "mario", "-f", str(tmp_path / "Modelfile"), env=env)
        assert out.returncode == 0, out.stderr
        assert out.stdout.decode().splitlines()[-1] == "success"
        assert fake.blobs == {digest: weights.read_bytes()}
        sent = last(fake, "/api/create")
        assert sent == {
            "model": "mario",
            "files": {"model.gguf": digest},
            "system": "You are\nMario.",
            "parameters": {"temperature": 0.3, "stop": ["<|end|>"]},
            "stream": True,
        }
        assert "mario:latest" in fake.models
        uploads = [r.method for r in fake.requests if r.path.startswith("/api/blobs/")]
        assert uploads == ["HEAD", "POST"]
        out = ollang_cli("create", "mario2", "-f", str(tmp_path / "Modelfile"), env=env)
        assert out.returncode == 0 and uploads == ["HEAD", "POST"]  # the blob is there

        out = ollang_cli("push", "mario", env=env)
        assert out.returncode == 0, out.stderr
        assert fake.pushed == ["mario:latest"] and "success" in out.stdout.decode()
        out = ollang_cli("models", "push", "never-made", env=env)
        assert out.returncode == 4 and "never-made" in out.stderr.decode()  # not found


# -- docs/ollama-api.md stays true -----------------------------------------------------------
SHARED = ROOT.parent / "shared" / "ollama-api.md"
DOC = ROOT / "docs" / "ollama-api.md"
_ENDPOINT = re.compile(r"`(GET|HEAD|POST|PUT|PATCH|DELETE) (/[^\s`{]*)")


def documented_rows() -> dict[tuple[str, str], str]:
    """The table of docs/ollama-api.md: (method, path) -> what ollang does (its first word)."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and (found := _ENDPOINT.match(cells[0])):
            rows[(found[1], found[2])] = cells[1].split()[0]
    return rows


def test_every_endpoint_of_ollamas_list_is_in_the_table():
    if not SHARED.is_file():
        pytest.skip(f"Ollama's endpoint list is not beside the repository ({SHARED})")
    listed = set()
    for line in SHARED.read_text(encoding="utf-8").splitlines():
        for method, path in re.findall(r"\b(GET|HEAD|POST|PUT|PATCH|DELETE) (/[^\s`,;)]*)", line):
            listed.add((method, path.rstrip(".")))
    assert ("GET", "/") in listed and ("DELETE", "/api/delete") in listed  # parsed at all
    rows = documented_rows()
    missing = sorted(f"{m} {p}" for m, p in listed - set(rows))
    assert not missing, f"not in docs/ollama-api.md's table: {missing}"


def _no_route(r: httpx.Response) -> bool:
    """Starlette's own answer for a path or method the app has no route for."""
    if r.status_code != 404:
        return r.status_code == 405
    try:
        error = r.json().get("error")
    except ValueError:
        return r.request.method == "HEAD"
    message = error.get("message") if isinstance(error, dict) else error  # OpenAI's shape
    return message == "no such endpoint"


def test_the_table_says_served_routed_or_refused_and_the_app_has_those_routes(tmp_path):
    """Each row served or routed is a route of the app (asked without a body, any answer
    but Starlette's 404 "no such endpoint" or 405 will do); each row refused is not."""
    rows = documented_rows()
    assert len(rows) >= 22 and set(rows.values()) == {"served", "routed", "refused"}
    app = create_app(settings(tmp_path, "127.0.0.1:9"))  # not started: no host is up
    http = TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False)
    for (method, path), what in rows.items():
        url = path.replace(":digest", "sha256:" + "0" * 64).replace(":model", "llama3")
        r = http.request(method, url, headers={"Accept": "application/json"})
        assert _no_route(r) == (what == "refused"), f"{method} {path} ({what}): {r.status_code}"
    assert _no_route(http.post("/api/nothing-here"))  # the check itself works
