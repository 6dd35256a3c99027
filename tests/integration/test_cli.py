"""The real CLI as a subprocess against the local Ollama-protocol server."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.cli_process import OLLANG, ROOT
from tests.cli_process import cli as ollang
from tests.fake_ollama import Reply
from tests.net import free_port


@pytest.fixture
def env(fake_ollama, tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("OLLANG_", "COLUMNS"))}
    e.update(
        OLLAMA_HOST=fake_ollama.host_port,
        OLLANG_HOME=str(tmp_path / "home"),
        OLLANG_BACKEND="ollama",
    )
    return e


def db_rows(env: dict) -> list[tuple]:
    with sqlite3.connect(Path(env["OLLANG_HOME"]) / "sessions.db") as db:
        return db.execute(
            "SELECT s.id, m.role, m.content, m.status FROM messages m "
            "JOIN sessions s ON s.key = m.session_key ORDER BY m.rowid"
        ).fetchall()


def test_help_and_version(env):
    out = ollang("--help", env=env)
    assert out.returncode == 0
    for command in ("chat", "ask", "models", "sessions", "compare", "serve"):
        assert command in out.stdout.decode()
    assert ollang("--version", env=env).stdout.decode().strip() == "ollang 0.1.0"


def test_ask_streams_the_answer_and_stores_nothing_by_default(env, fake_ollama):
    out = ollang("ask", "hello there", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode() == "echo: hello there\n"
    assert not (Path(env["OLLANG_HOME"]) / "sessions.db").exists()
    assert fake_ollama.chat_requests()[-1]["messages"][-1]["content"] == "hello there"


def test_ask_reads_stdin_and_appends_it_to_the_prompt(env, fake_ollama):
    out = ollang("ask", "summarize", env=env, input=b"line one\nline two\n")
    assert out.returncode == 0
    sent = fake_ollama.chat_requests()[-1]["messages"][-1]["content"]
    assert sent == "summarize\n\nline one\nline two\n"
    out = ollang("ask", "-", env=env, input=b"only stdin")
    assert fake_ollama.chat_requests()[-1]["messages"][-1]["content"] == "only stdin"


def test_ask_json_output(env):
    out = ollang("ask", "hi", "--json", "-o", "temperature=0.1", env=env)
    data = json.loads(out.stdout)
    assert (
        data["response"] == "echo: hi" and data["model"] == "llama3" and data["session_id"] is None
    )
    assert data["usage"]["output_tokens"] == 2 and data["usage"]["input_tokens"] >= 1
    assert set(data["timings"]) == {"ttft_s", "total_s", "tokens_per_s"}
    assert data["timings"]["ttft_s"] > 0


def test_ask_with_session_remembers_and_continue_resumes(env, fake_ollama):
    assert ollang("ask", "my name is Ada", "--session", "work", env=env).returncode == 0
    assert ollang("ask", "what is my name?", "-c", "--no-stream", env=env).returncode == 0
    sent = [m["content"] for m in fake_ollama.chat_requests()[-1]["messages"]]
    assert sent == ["my name is Ada", "echo: my name is Ada", "what is my name?"]
    assert [r[0] for r in db_rows(env)] == ["work"] * 4


def test_options_reach_ollama(env, fake_ollama):
    ollang(
        "ask", "x", "-o", "num_ctx=2048", "-o", "seed=3", "-o", "stop=END", "-m", "llama3", env=env
    )
    body = fake_ollama.chat_requests()[-1]
    assert body["options"]["num_ctx"] == 2048 and body["options"]["seed"] == 3
    assert body["options"]["stop"] == ["END"]


def test_exit_codes(env, fake_ollama):
    missing = ollang("ask", "hi", "-m", "ghost", env=env)
    err = missing.stderr.decode()
    assert missing.returncode == 4
    assert "error: model 'ghost' not found" in err and "ollang models pull ghost" in err
    assert "llama3:latest" in err and "Traceback" not in err

    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    down = ollang("--ollama-host", dead, "ask", "hi", env=env)
    assert down.returncode == 3
    assert f"http://{dead}" in down.stderr.decode() and "ollama serve" in down.stderr.decode()

    assert ollang("ask", "", env=env).returncode == 2
    assert ollang("nosuchcommand", env=env).returncode == 2
    assert ollang("ask", "-o", "bogus=1", "hi", env=env).returncode == 2

    fake_ollama.queue(Reply(tokens=["x"], fault="http500", error_message="boom"))
    other = ollang("ask", "hi", env=env)
    assert other.returncode == 1 and "boom" in other.stderr.decode()


@pytest.mark.reliability("Faults", "Ctrl-C during `ask`: exit 130, partial kept")
def test_sigint_during_ask_exits_130_and_keeps_the_partial_answer(env, fake_ollama):
    fake_ollama.token_delay = 0.1
    fake_ollama.queue(Reply(tokens=[f" w{i}" for i in range(100)]))
    proc = subprocess.Popen(
        [*OLLANG, "ask", "go", "--session", "sig"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    first = proc.stdout.read(3)  # the answer has started
    assert first
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert b"Traceback" not in err and b"interrupted" in err
    rows = db_rows(env)
    assert [r[1] for r in rows] == ["human", "ai"]
    assert rows[1][3] == "interrupted" and rows[1][2].startswith(" w0 w1")


@pytest.mark.reliability(
    "Hostile input",
    "CLI: 1 MB prompt, NUL, invalid UTF-8, hostile session ids, shell metacharacters",
)
def test_hostile_input(env, fake_ollama):
    big = ollang("ask", "-", env=env, input=b"a" * 1_000_000)
    assert big.returncode == 1 and "too long" in big.stderr.decode()  # clear error, no crash
    weird = ollang("ask", "-", env=env, input=b"nul\x00byte and bad utf8 \xff\xfe end")
    assert weird.returncode == 0, weird.stderr
    assert "\ufffd" in fake_ollama.chat_requests()[-1]["messages"][-1]["content"]
    for bad in ("../../etc/passwd", "x" * 5000, "a;rm -rf /", "$(id)"):
        out = ollang("ask", "hi", "--session", bad, env=env)
        assert out.returncode == 2 and "invalid session id" in out.stderr.decode()
    assert ollang("ask", "$(id) `id` ; | &", env=env).stdout.decode() == "echo: $(id) `id` ; | &\n"


def test_models_commands(env, fake_ollama):
    listed = ollang("models", env=env).stdout.decode().splitlines()
    # Decimal units, as Ollama shows them; then what it can do and where it would run.
    assert listed[0].startswith("llama3:latest (4.7 GB) completion,tools · ")
    data = json.loads(ollang("models", "list", "--json", env=env).stdout)
    assert data["models"][0]["name"] == "llama3:latest" and data["models"][0]["backend"] == "ollama"
    shown = ollang("models", "show", "llama3", env=env).stdout.decode()
    assert "context length: 8192" in shown and "family: llama" in shown
    assert ollang("models", "ps", env=env).stdout.decode().strip() == "no models loaded"
    ollang("ask", "warm", env=env)
    assert "llama3:latest" in ollang("models", "ps", env=env).stdout.decode()

    fake_ollama.pullable.add("qwen3:0.6b")
    pulled = ollang("models", "pull", "qwen3:0.6b", env=env)
    assert pulled.returncode == 0 and "success" in pulled.stdout.decode()
    assert "qwen3:0.6b" in ollang("models", env=env).stdout.decode()
    unknown = ollang("models", "pull", "nosuch:1b", env=env)
    assert unknown.returncode == 4 and "not in the registry" in unknown.stderr.decode()

    refused = ollang("models", "rm", "qwen3:0.6b", env=env)
    assert refused.returncode == 2 and "--yes" in refused.stderr.decode()
    assert ollang("models", "rm", "qwen3:0.6b", "--yes", env=env).returncode == 0
    assert "qwen3" not in ollang("models", env=env).stdout.decode()


def test_sessions_commands_round_trip(env, tmp_path):
    ollang("ask", "first question about penguins", "--session", "s1", env=env)
    ollang("ask", "second question", "--session", "s1", env=env)
    listed = ollang("sessions", env=env).stdout.decode()
    assert listed.startswith("s1 ") and "4 msgs" in listed
    shown = ollang("sessions", "show", "s1", env=env).stdout.decode()
    assert "you: first question about penguins" in shown

    md = tmp_path / "s1.md"
    assert ollang("sessions", "export", "s1", "-o", str(md), env=env).returncode == 0
    assert "## User" in md.read_text() and "penguins" in md.read_text()
    again = ollang("sessions", "export", "s1", "-o", str(md), env=env)
    assert again.returncode == 2 and "--force" in again.stderr.decode()
    as_dir = ollang("sessions", "export", "s1", "-o", str(tmp_path), env=env)
    assert as_dir.returncode == 2 and "is a directory" in as_dir.stderr.decode()

    exported = tmp_path / "s1.json"
    ollang("sessions", "export", "s1", "--format", "json", "-o", str(exported), env=env)
    assert ollang("sessions", "import", str(exported), env=env).returncode == 1  # exists already
    assert ollang("sessions", "import", str(exported), "--as", "copy", env=env).returncode == 0
    original = json.loads(ollang("sessions", "show", "s1", "--json", env=env).stdout)
    copy = json.loads(ollang("sessions", "show", "copy", "--json", env=env).stdout)
    assert copy["messages"] == original["messages"]

    hits = ollang("sessions", "search", "penguins", env=env).stdout.decode()
    assert "s1" in hits and "copy" in hits
    assert ollang("sessions", "rename", "copy", "kept", env=env).returncode == 0
    assert ollang("sessions", "rm", "kept", "--yes", env=env).returncode == 0
    assert "kept" not in ollang("sessions", env=env).stdout.decode()
    assert ollang("sessions", "show", "nope", env=env).returncode == 1


@pytest.mark.reliability("Hostile input", "CLI: a corrupt database file")
def test_corrupt_database_is_a_clear_error_and_left_alone(env):
    home = Path(env["OLLANG_HOME"])
    home.mkdir(parents=True)
    db = home / "sessions.db"
    db.write_bytes(b"not a database at all" * 50)
    before = db.read_bytes()
    out = ollang("ask", "hi", "--session", "x", env=env)
    assert out.returncode == 1 and "is not an ollang database" in out.stderr.decode()
    assert db.read_bytes() == before


def test_compare_reports_each_model(env, fake_ollama):
    fake_ollama.add_model("mistral:latest")
    out = ollang("compare", "hello", "-m", "llama3", "-m", "mistral", "-m", "ghost", env=env)
    text = out.stdout.decode()
    assert "=== llama3 ===" in text and "=== mistral ===" in text
    assert "| llama3 |" in text and "| mistral |" in text and "| ghost | error |" in text
    assert out.returncode == 4


def test_readme_help_block_is_current(env):
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- help:start -->")
    end = readme.index("<!-- help:end -->")
    block = readme[start:end].split("```text\n", 1)[1].rsplit("```", 1)[0]
    help_env = {**env, "COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1"}
    current = ollang("--help", env=help_env).stdout.decode()
    assert block.strip() == current.strip(), (
        "README's `ollang --help` block is stale: regenerate it"
    )
