"""Issue 12 through the real CLI (subprocesses and a pseudo-terminal) against the local fake
Ollama: sessions that keep their settings, images, structured output, Ollama's verbs,
search, and the smaller things a user coming from ``ollama run`` or llm trips on. Each
test checks what reached the fake (model, system prompt, images, format, keep_alive)."""

from __future__ import annotations

import base64
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pyte
import pytest

from tests.cli_process import OLLANG, ROOT
from tests.cli_process import cli as ollang
from tests.fake_ollama import Reply
from tests.net import free_port

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
B64 = base64.b64encode(PNG).decode()


@pytest.fixture
def env(fake_ollama, tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("OLLANG_", "COLUMNS"))}
    e.update(
        OLLAMA_HOST=fake_ollama.host_port,
        OLLANG_HOME=str(tmp_path / "home"),
        OLLANG_BACKEND="ollama",
    )
    fake_ollama.add_model("mistral:latest")
    return e


@pytest.fixture
def png(tmp_path) -> Path:
    path = tmp_path / "cat.png"
    path.write_bytes(PNG)
    return path


def last_chat(fake) -> dict:
    return fake.chat_requests()[-1]


# -- 1. a session remembers how it was started ------------------------------------------
def test_ask_resumes_a_session_with_its_model_system_prompt_and_options(env, fake_ollama):
    first = ollang(
        "ask",
        "-m",
        "mistral",
        "-s",
        "Be terse.",
        "-o",
        "temperature=0.3",
        "--session",
        "m1",
        "hello",
        env=env,
    )
    assert first.returncode == 0, first.stderr
    again = ollang("ask", "-c", "and again", env=env)
    assert again.returncode == 0, again.stderr
    body = last_chat(fake_ollama)
    assert body["model"] == "mistral"
    assert body["messages"][0] == {"role": "system", "content": "Be terse."}
    assert body["options"]["temperature"] == 0.3
    assert again.stderr.decode() == ""  # nothing overridden, nothing said
    # An explicit override wins, says so once, and is what the session continues with.
    switched = ollang("ask", "--session", "m1", "-m", "llama3", "third", env=env)
    assert "using model llama3 (the session used mistral)" in switched.stderr.decode()
    assert last_chat(fake_ollama)["model"] == "llama3"
    ollang("ask", "--session", "m1", "fourth", env=env)
    assert last_chat(fake_ollama)["model"] == "llama3"
    shown = ollang("sessions", "show", "m1", env=env).stdout.decode()
    assert "system: Be terse." in shown and "temperature=0.3" in shown
    exported = json.loads(ollang("sessions", "export", "m1", "-f", "json", env=env).stdout)
    assert exported["session"]["system"] == "Be terse."


def test_chat_continue_resumes_the_session_settings(env, fake_ollama):
    ollang("ask", "-m", "mistral", "-s", "Be terse.", "--session", "m2", "hi", env=env)
    out = subprocess.run(
        [*OLLANG, "chat", "-c"], input=b"next\n/bye\n", capture_output=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    body = last_chat(fake_ollama)
    assert body["model"] == "mistral" and body["messages"][0]["content"] == "Be terse."
    assert [m["content"] for m in body["messages"][1:]] == ["hi", "echo: hi", "next"]


# -- 2. images -----------------------------------------------------------------------------
def test_ask_with_images_sends_them_stores_them_once_and_resends_them(env, fake_ollama, png):
    out = ollang("ask", "-i", str(png), "--session", "pics", "what is this?", env=env)
    assert out.returncode == 0, out.stderr
    sent = last_chat(fake_ollama)["messages"][-1]
    # ChatOllama joins a message's text blocks each after a newline (langchain-ollama).
    assert sent["content"].strip() == "what is this?" and sent["images"] == [B64]
    ollang("ask", "-c", "-i", str(png), "and this one?", env=env)
    ollang("ask", "-c", "describe the first again", env=env)
    history = last_chat(fake_ollama)["messages"]
    assert history[0]["images"] == [B64], "resent with the history"
    db = Path(env["OLLANG_HOME"]) / "sessions.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM images").fetchone()[0] == 1
    shown = ollang("sessions", "show", "pics", env=env).stdout.decode()
    assert "you: what is this? [image:" in shown and "png]" in shown


def test_bad_images_are_clear_usage_errors(env, fake_ollama, tmp_path):
    missing = ollang("ask", "-i", str(tmp_path / "nope.png"), "x", env=env)
    assert missing.returncode == 2 and "nope.png" in missing.stderr.decode()
    text = tmp_path / "notes.png"
    text.write_text("just words")
    wrong = ollang("ask", "-i", str(text), "x", env=env)
    assert wrong.returncode == 2 and "not an image" in wrong.stderr.decode()
    big = tmp_path / "big.png"
    big.write_bytes(PNG + b"\0" * (11 * 1024 * 1024))
    large = ollang("ask", "-i", str(big), "x", env=env)
    assert large.returncode == 2 and "at most 10 MiB" in large.stderr.decode()
    assert "Traceback" not in missing.stderr.decode() + wrong.stderr.decode()
    assert not fake_ollama.chat_requests()


# -- 3. structured output ------------------------------------------------------------------
def test_format_json_and_schemas(env, fake_ollama, tmp_path):
    out = ollang("ask", "--format", "json", "a person", env=env)
    assert out.returncode == 0, out.stderr
    assert last_chat(fake_ollama)["format"] == "json"
    json.loads(out.stdout)

    out = ollang("ask", "--schema", "name, age int", "a person", env=env)
    assert out.returncode == 0, out.stderr
    schema = last_chat(fake_ollama)["format"]
    assert schema["properties"] == {"name": {"type": "string"}, "age": {"type": "integer"}}
    person = json.loads(out.stdout)
    assert isinstance(person["name"], str) and isinstance(person["age"], int)

    file = tmp_path / "schema.json"
    file.write_text(json.dumps({"type": "object", "properties": {"ok": {"type": "boolean"}}}))
    assert ollang("ask", "--schema", str(file), "x", env=env).returncode == 0
    assert last_chat(fake_ollama)["format"]["properties"] == {"ok": {"type": "boolean"}}

    raw = ollang("ask", "-o", 'format={"type": "object"}', "x", env=env)
    assert raw.returncode == 0, raw.stderr
    assert last_chat(fake_ollama)["format"] == {"type": "object"}  # a schema, not a string

    fake_ollama.queue(Reply(tokens=['{"name": 3}']))
    misfit = ollang("ask", "--schema", "name, age int", "x", env=env)
    assert misfit.returncode == 1
    err = misfit.stderr.decode()
    assert (
        "does not fit the schema" in err and "Traceback" not in err and "ValidationError" not in err
    )
    bad = ollang("ask", "--schema", "name notatype", "x", env=env)
    assert bad.returncode == 2 and "unknown type" in bad.stderr.decode()


# -- 4. Ollama's verbs ----------------------------------------------------------------------
def test_ollamas_verbs_are_top_level_commands(env, fake_ollama):
    assert (
        ollang("run", "mistral", "hi from run", env=env).stdout.decode().strip()
        == "echo: hi from run"
    )
    assert last_chat(fake_ollama)["model"] == "mistral"
    listed = ollang("list", env=env).stdout.decode()
    assert "llama3:latest (4.7 GB)" in listed and "mistral:latest" in listed
    assert ollang("show", "llama3", env=env).returncode == 0
    fake_ollama.loaded["llama3:latest"] = time.time()
    assert "llama3:latest" in ollang("ps", env=env).stdout.decode()
    stopped = ollang("stop", "llama3", env=env)
    assert stopped.returncode == 0, stopped.stderr
    unload = [r.body for r in fake_ollama.requests if r.path == "/api/generate"][-1]
    assert unload["keep_alive"] == 0 and "llama3:latest" not in fake_ollama.loaded
    assert ollang("cp", "llama3", "mine", env=env).returncode == 0
    assert "mine:latest" in fake_ollama.models
    assert ollang("rm", "mine", "-y", env=env).returncode == 0
    assert "mine:latest" not in fake_ollama.models
    fake_ollama.pullable.add("phi3:latest")
    assert "success" in ollang("pull", "phi3", env=env).stdout.decode()


def test_ollama_host_after_the_subcommand(env, fake_ollama):
    dead = f"127.0.0.1:{free_port()}"
    elsewhere = {**env, "OLLAMA_HOST": dead}
    out = ollang("ask", "--ollama-host", fake_ollama.host_port, "hi", env=elsewhere)
    assert out.returncode == 0, out.stderr
    assert ollang("list", "--ollama-host", fake_ollama.host_port, env=elsewhere).returncode == 0


def test_help_screens_show_metavars_not_types(env):
    text = ollang("ask", "--help", env=env).stdout.decode()
    assert "<bool>" not in text and "{prompt}" not in text
    assert "Usage: ollang ask [OPTIONS] [PROMPT]" in text
    assert "-m, --model NAME" in text


def test_an_import_clash_names_as(env, tmp_path):
    ollang("ask", "--session", "s1", "hi", env=env)
    exported = tmp_path / "s1.json"
    ollang("sessions", "export", "s1", "-f", "json", "-o", str(exported), env=env)
    clash = ollang("sessions", "import", str(exported), env=env)
    assert clash.returncode == 1 and "--as" in clash.stderr.decode()


# -- 5. search --------------------------------------------------------------------------------
def test_search_finds_stems_and_prefixes_and_shows_roles(env, fake_ollama):
    ollang("ask", "--session", "zoo", "we saw penguins diving", env=env)
    ollang("ask", "--session", "code", "print fizzbuzz", env=env)
    hits = ollang("sessions", "search", "penguin", env=env).stdout.decode()
    assert "zoo" in hits and "you: we saw penguins diving" in hits and "**" not in hits
    assert "code" in ollang("sessions", "search", "fizz*", env=env).stdout.decode()
    listed = ollang("sessions", env=env).stdout.decode().splitlines()
    assert len({line.index("msgs") for line in listed}) == 1, "columns line up"


# -- 6. smaller things --------------------------------------------------------------------
def test_an_error_after_a_partial_answer_starts_its_own_line(env, fake_ollama):
    fake_ollama.queue(Reply(tokens=["half", " an", " answer"], fault="error", fault_after=2))
    child = pexpect.spawn(
        sys.executable,
        ["-m", "ollang", "ask", "go"],
        env={**env, "TERM": "xterm"},
        cwd=str(ROOT),
        timeout=30,
        encoding="utf-8",
        dimensions=(24, 80),
    )
    child.expect(pexpect.EOF)
    screen = pyte.Screen(80, 24)
    pyte.Stream(screen).feed(child.before)
    lines = [line.rstrip() for line in screen.display if line.strip()]
    assert lines[0] == "half an"
    assert lines[1].startswith("error: ")


def test_ctrl_c_in_the_repl_shows_the_partial_answer_once(env, fake_ollama, tmp_path):
    """In tmux, a real terminal emulator (the bug was a terminal's line wrapping: the
    echoed ``^C`` wrapped rich's padded live line and the redraw landed one line low)."""
    import shutil

    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.skip("tmux is absent: `apt-get install -y tmux` (CI installs it)")
    fake_ollama.token_delay = 0.05
    fake_ollama.queue(Reply(tokens=[f" word{i}" for i in range(200)]))
    name = f"ollang-{os.getpid()}"
    variables = " ".join(
        f"{k}={v}"
        for k, v in {**env, "TERM": "xterm"}.items()
        if k.startswith(("OLLA", "TERM", "PATH"))
    )
    # The window's own size (a COLUMNS inherited from the test run would override it).
    command = (
        f"env COLUMNS=60 LINES=30 {variables} {sys.executable} -m ollang chat --session cc; "
        "sleep 30"
    )
    subprocess.run(
        [tmux, "new-session", "-d", "-s", name, "-x", "60", "-y", "30", command], check=True
    )
    try:

        def screen() -> str:
            return subprocess.run(
                [tmux, "capture-pane", "-t", name, "-p"], capture_output=True, text=True
            ).stdout

        def wait_for(text: str) -> str:
            deadline = time.monotonic() + 30
            while text not in (shown := screen()):
                assert time.monotonic() < deadline, shown
                time.sleep(0.1)
            return shown

        wait_for(">>>")
        subprocess.run([tmux, "send-keys", "-t", name, "talk", "Enter"], check=True)
        wait_for("word40")
        subprocess.run([tmux, "send-keys", "-t", name, "C-c"], check=True)
        shown = wait_for("[interrupted]")
        time.sleep(0.5)
        shown = screen()
    finally:
        subprocess.run([tmux, "kill-session", "-t", name], capture_output=True)
    lines = [line for line in shown.splitlines() if line.strip()]
    assert sum(line.startswith("word0 word1 ") for line in lines) == 1, shown
    assert shown.count("[interrupted]") == 1
    stored = (
        sqlite3.connect(Path(env["OLLANG_HOME"]) / "sessions.db")
        .execute("SELECT content, status FROM messages WHERE role = 'ai'")
        .fetchall()
    )
    assert stored and stored[-1][1] == "interrupted" and stored[-1][0].startswith(" word0")


def test_serve_on_a_port_in_use_says_so_and_exits_5(env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = ollang("serve", "--port", str(port), env=env, timeout=60)
    err = out.stderr.decode()
    assert out.returncode == 5, err
    assert f"127.0.0.1:{port}" in err and "in use" in err
    assert "Traceback" not in err and "Ollama not reachable" not in err


def test_repl_speaks_ollamas_commands(env, fake_ollama, png):
    child = pexpect.spawn(
        sys.executable,
        ["-m", "ollang", "chat", "--session", "r1"],
        env={**env, "TERM": "dumb", "PROMPT_TOOLKIT_NO_CPR": "1", "NO_COLOR": "1"},
        cwd=str(ROOT),
        timeout=30,
        encoding="utf-8",
        dimensions=(40, 100),
    )

    def say(line: str) -> str:
        child.sendline(line)
        child.expect_exact(">>> ")
        return child.before

    child.expect_exact(">>> ")
    say("/set parameter temperature 0.4")
    say("/set system You are brief.")
    say("first")
    body = last_chat(fake_ollama)
    assert body["options"]["temperature"] == 0.4
    assert body["messages"][0] == {"role": "system", "content": "You are brief."}
    assert "family" in say("/show info")
    assert "You are brief." in say("/show system")
    assert "added image" in say(f"/image {png}")
    say("what is it?")
    assert last_chat(fake_ollama)["messages"][-1]["images"] == [B64]
    say(f"and {png} again")  # a path typed in the message, as with `ollama run`
    last = last_chat(fake_ollama)["messages"][-1]
    assert last["images"] == [B64] and str(png) not in last["content"]
    assert "saved as r2" in say("/save r2")
    assert "loaded r1" in say("/load r1")
    child.sendline("/bye")
    child.expect(pexpect.EOF)
    info = ollang("sessions", "show", "r2", env=env).stdout.decode()
    assert "system: You are brief." in info
