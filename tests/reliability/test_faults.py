"""Faults: the CLI killed mid-answer, Ollama killed, restarted, refusing, hanging or talking
nonsense. Each must give a clear error, keep what arrived and leave the next turn working."""

from __future__ import annotations

import signal
import time

import pytest

from tests.cli_process import cli, cli_popen
from tests.fake_ollama import Reply
from tests.reliability.conftest import db_path, integrity, read_at_least, stored

pytestmark = pytest.mark.timeout(120)


@pytest.mark.reliability("Faults", "`kill -9` of the CLI mid-answer")
def test_kill_9_mid_answer_keeps_the_question_and_the_flushed_answer(cli_env, fake_ollama, ledger):
    cli_env["OLLAMA_HOST"] = fake_ollama.host_port
    fake_ollama.token_delay = 0.05
    fake_ollama.queue(Reply(tokens=[f" w{i}" for i in range(400)]))
    proc = cli_popen("ask", "remember the tide tables", "--session", "k9", env=cli_env)
    printed = read_at_least(proc.stdout, 3)
    time.sleep(2.5)  # past at least two of the once-a-second flushes
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    printed += proc.stdout.read()
    assert proc.returncode == -signal.SIGKILL

    assert integrity(db_path(cli_env)) == "ok"
    rows = stored(cli_env, "k9")
    # On disk the flushed answer is a streaming snapshot ("partial", outside the search
    # index); every reader of the store sees it as cut short (checked below).
    assert [(r[0], r[2]) for r in rows] == [("human", "complete"), ("ai", "partial")]
    assert rows[0][1] == "remember the tide tables"
    partial = rows[1][1]
    ledger.note = f"{len(partial)} of {len(printed)} printed characters kept; integrity ok"
    assert partial.startswith(" w0 w1 w2") and printed.decode().startswith(partial)

    again = cli("ask", "and now?", "-c", env=cli_env)
    assert again.returncode == 0, again.stderr
    sent = [m["content"] for m in fake_ollama.chat_requests()[-1]["messages"]]
    assert sent[0] == "remember the tide tables" and sent[-1] == "and now?"
    humans = [r[1] for r in stored(cli_env, "k9") if r[0] == "human"]
    ledger.account(["remember the tide tables", "and now?"], humans)
    assert humans == ["remember the tide tables", "and now?"]
    assert [r[2] for r in stored(cli_env, "k9")][1] == "interrupted"  # the next open marked it
    found = cli("sessions", "search", "w2", "--json", env=cli_env)
    assert found.returncode == 0 and b"k9" in found.stdout, found.stderr  # and search finds it
    assert integrity(db_path(cli_env)) == "ok"


@pytest.mark.reliability("Faults", "Ollama killed mid-stream, down, then restarted")
def test_ollama_killed_mid_stream_then_down_then_restarted(cli_env, ollama_process, ledger):
    cli_env["OLLAMA_HOST"] = ollama_process.host_port
    proc = cli_popen("ask", "first question", "--session", "ok", env=cli_env)
    read_at_least(proc.stdout, 20)
    time.sleep(1.2)
    ollama_process.kill()
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    err_text = err.decode()
    assert err_text.startswith("error: ") and "Traceback" not in err_text
    rows = stored(cli_env, "ok")
    assert [(r[0], r[2]) for r in rows] == [("human", "complete"), ("ai", "error")]
    assert rows[1][1].startswith("tok0 tok1 ")

    down = cli("ask", "second question", "-c", env=cli_env)
    assert down.returncode == 3
    assert f"http://{ollama_process.host_port}" in down.stderr.decode()
    assert "Traceback" not in down.stderr.decode()

    ollama_process.start()  # same port
    up = cli("ask", "third question", "-c", env=cli_env, timeout=90)
    assert up.returncode == 0, up.stderr
    assert up.stdout.decode().startswith("tok0 tok1")
    rows = stored(cli_env, "ok")
    humans = [r[1] for r in rows if r[0] == "human"]
    ledger.account(["first question", "second question", "third question"], humans)
    assert humans == ["first question", "second question", "third question"]
    assert rows[-1][0] == "ai" and rows[-1][2] == "complete"
    assert integrity(db_path(cli_env)) == "ok"


FAULTS = {
    # fault: (expected exit code, words the error must contain)
    "error": (1, "something went wrong"),
    "cut": (1, "was cut"),
    "garbage": (1, "invalid response"),
    "truncated": (1, "invalid response"),
    "http500": (1, "something went wrong"),
    "hang": (1, "did not answer in time"),
}


@pytest.mark.reliability("Faults", "Ollama misbehaves mid-answer, next turn works", each=True)
@pytest.mark.parametrize("fault", list(FAULTS))
def test_ollama_faults_give_a_clear_error_keep_what_arrived_and_recover(
    cli_env, fake_ollama, ledger, fault
):
    cli_env.update(OLLAMA_HOST=fake_ollama.host_port, OLLANG_READ_TIMEOUT="2")
    code, words = FAULTS[fault]
    fake_ollama.queue(Reply(tokens=["kept", " part", " lost"], fault=fault, fault_after=2))
    started = time.monotonic()
    out = cli("ask", f"question before {fault}", "--session", "f", env=cli_env)
    elapsed = time.monotonic() - started
    err = out.stderr.decode()
    assert out.returncode == code, err
    assert err.startswith("error: ") and words in err.lower() and "Traceback" not in err
    assert "hint: " in err
    if fault == "hang":
        ledger.note = f"gave up after {elapsed:.1f} s (read timeout 2 s)"
        assert elapsed < 15, "the read timeout was not honoured"
    rows = stored(cli_env, "f")
    assert rows[0] == ("human", f"question before {fault}", "complete")
    if fault in ("error", "cut", "garbage", "truncated"):
        # Everything that arrived before the fault is kept, marked as an error.
        assert rows[1] == ("ai", "kept part", "error")

    fake_ollama.hang_release.set()
    after = cli("ask", "and after?", "-c", env=cli_env)
    assert after.returncode == 0, after.stderr
    assert after.stdout.decode() == "echo: and after?\n"
    humans = [r[1] for r in stored(cli_env, "f") if r[0] == "human"]
    ledger.account([f"question before {fault}", "and after?"], humans)
    assert humans == [f"question before {fault}", "and after?"]
