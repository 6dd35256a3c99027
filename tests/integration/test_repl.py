"""The chat REPL for real, in a pseudo-terminal (pexpect), against the Ollama-protocol server."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from pathlib import Path

import pexpect
import pytest

from tests.fake_ollama import Reply

ROOT = Path(__file__).resolve().parents[2]
PROMPT = ">>> "


@pytest.fixture
def repl_env(fake_ollama, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLANG_")}
    env.update(
        OLLAMA_HOST=fake_ollama.host_port,
        OLLANG_HOME=str(tmp_path / "home"),
        OLLANG_BACKEND="ollama",
        TERM="dumb",
        COLUMNS="100",
        LINES="40",
        PROMPT_TOOLKIT_NO_CPR="1",
        NO_COLOR="1",
    )
    return env


def spawn(env: dict, *args: str) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "ollang", "chat", *args],
        env=env,
        cwd=str(ROOT),
        timeout=15,
        encoding="utf-8",
        dimensions=(40, 100),
    )
    child.expect_exact(PROMPT)
    return child


def send(child: pexpect.spawn, line: str) -> str:
    child.sendline(line)
    child.expect_exact(PROMPT)
    return child.before


def rows(env: dict) -> list[tuple]:
    with sqlite3.connect(Path(env["OLLANG_HOME"]) / "sessions.db") as db:
        return db.execute(
            "SELECT s.id, m.role, m.content, m.status FROM messages m "
            "JOIN sessions s ON s.key = m.session_key ORDER BY m.rowid"
        ).fetchall()


def test_chat_streams_answers_and_slash_commands_work(repl_env, fake_ollama, tmp_path):
    child = spawn(repl_env, "--session", "pty")
    assert "echo: hello there" in send(child, "hello there")
    assert "/retry" in send(child, "/help")

    out = send(child, "/set verbose")
    assert "verbose on" in out
    out = send(child, "second message")
    assert "tokens/s" in out and "context:" in out and "/8192 tokens" in out

    send(child, "/system You are a pirate.")
    send(child, "third")
    assert fake_ollama.chat_requests()[-1]["messages"][0] == {
        "role": "system",
        "content": "You are a pirate.",
    }

    send(child, "/set temperature 0.25")
    send(child, "fourth")
    assert fake_ollama.chat_requests()[-1]["options"]["temperature"] == 0.25

    fake_ollama.add_model("mistral:latest")
    assert "model mistral" in send(child, "/model mistral")
    send(child, "fifth")
    assert fake_ollama.chat_requests()[-1]["model"] == "mistral"

    before = len(rows(repl_env))
    send(child, "/undo")
    assert len(rows(repl_env)) == before - 2
    fake_ollama.queue("a regenerated answer")
    send(child, "/retry")
    assert rows(repl_env)[-1][2] == "a regenerated answer"
    assert fake_ollama.chat_requests()[-1]["messages"][-1]["content"] == "fourth"

    child.sendline('"""')
    child.expect_exact("... ")
    child.sendline("line one")
    child.expect_exact("... ")
    child.sendline('line two"""')
    child.expect_exact(PROMPT)
    assert fake_ollama.chat_requests()[-1]["messages"][-1]["content"] == "line one\nline two"

    history = send(child, "/history")
    assert "you: hello there" in history and "assistant: echo: hello there" in history

    out_file = tmp_path / "chat.json"
    assert "exported" in send(child, f"/export {out_file}")
    exported = json.loads(out_file.read_text())
    assert exported["session"]["id"] == "pty" and len(exported["messages"]) == len(rows(repl_env))

    assert "forked" in send(child, "/fork branch")
    send(child, "only in the branch")
    ids = {r[0] for r in rows(repl_env)}
    assert ids == {"pty", "branch"}

    assert "new session" in send(child, "/clear")
    send(child, "fresh start")
    assert [m["content"] for m in fake_ollama.chat_requests()[-1]["messages"]] == [
        "You are a pirate.",
        "fresh start",
    ]

    child.send("\x04")  # Ctrl-D
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


@pytest.mark.reliability("Faults", "Ctrl-C in the chat REPL (real pty): partial kept")
def test_ctrl_c_stops_the_answer_keeps_it_and_returns_to_the_prompt(repl_env, fake_ollama):
    fake_ollama.token_delay = 0.1
    fake_ollama.queue(Reply(tokens=[f" part{i}" for i in range(60)]))
    child = spawn(repl_env, "--session", "intr")
    child.sendline("tell me a long story")
    child.expect_exact("part3")
    child.sendintr()
    child.expect_exact("[interrupted]")
    child.expect_exact(PROMPT)
    stored = rows(repl_env)
    assert stored[-1][1] == "ai" and stored[-1][3] == "interrupted"
    assert stored[-1][2].startswith(" part0 part1 part2 part3")

    fake_ollama.token_delay = 0
    assert "echo: still here" in send(child, "still here")
    sent = [m["content"] for m in fake_ollama.chat_requests()[-1]["messages"]]
    assert (
        sent[0] == "tell me a long story"
        and sent[1].startswith(" part0")
        and sent[-1] == "still here"
    )

    child.send("half typed")  # Ctrl-C at the prompt clears the line and stays
    time.sleep(0.3)
    child.sendintr()
    child.expect_exact(PROMPT)
    child.sendline("/bye")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_missing_model_is_reported_and_pulled_only_when_asked(repl_env, fake_ollama):
    fake_ollama.pullable.add("phi3:latest")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "ollang", "chat", "-m", "phi3"],
        env=repl_env,
        cwd=str(ROOT),
        timeout=15,
        encoding="utf-8",
        dimensions=(40, 100),
    )
    child.expect_exact("not found")
    child.expect_exact("ollang models pull phi3")
    child.expect_exact("Pull phi3 now? [y/N]")
    assert not any(r.path == "/api/pull" for r in fake_ollama.requests), "never pull without asking"
    child.sendline("y")
    child.expect_exact(PROMPT)
    assert any(r.path == "/api/pull" for r in fake_ollama.requests)
    assert "echo: hi" in send(child, "hi")
    child.sendline("/exit")
    child.expect(pexpect.EOF)


def test_piped_stdin_without_a_terminal(repl_env):
    import subprocess

    out = subprocess.run(
        [sys.executable, "-m", "ollang", "chat"],
        input=b"first\nsecond\n/bye\n",
        capture_output=True,
        env=repl_env,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0
    assert out.stdout.decode().splitlines() == ["echo: first", "echo: second"]
