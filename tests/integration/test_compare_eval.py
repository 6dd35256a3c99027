"""``ollang compare --suite`` and ``POST /compare``: evaluations over the fake Ollama.

The CLI runs as a subprocess against :class:`~tests.fake_ollama.FakeOllama`, which echoes
the last user message (``echo: ...``) unless scripted, and answers JSON when asked for a
``format``; the suites below pass and fail on exactly those answers. The server is the
real app on a real port (:class:`~ollang.server.testing.LiveServer`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from ollang.server import ServerSettings
from ollang.server.context import context_of
from ollang.server.testing import LiveServer
from tests.cli_process import cli as ollang
from tests.cli_process import cli_popen
from tests.fake_ollama import FakeOllama, Reply

SUITE = """\
description: echo checks
cases:
  - name: greet
    prompt: hello world
    assert:
      - contains: hello
      - regex: "^echo: hello"
      - equals: "echo: hello world"
  - name: wrong
    prompt: bye
    assert:
      - contains: hello
      - equals: bye
  - name: not json
    prompt: give me the 'name'
    assert:
      - json-schema: {type: object, required: [name]}
"""

JSON_SUITE = """\
cases:
  - name: has name
    prompt: give me the 'name'
    assert:
      - json-schema: {type: object, required: [name], properties: {name: {type: string}}}
  - name: lacks age
    prompt: give me the 'name'
    assert:
      - json-schema: {type: object, required: [age]}
"""

RUBRIC_SUITE = """\
cases:
  - prompt: hello
    assert:
      - rubric: The answer greets the user.
"""


@pytest.fixture
def env(fake_ollama, tmp_path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("OLLANG_", "COLUMNS"))}
    e.update(
        OLLAMA_HOST=fake_ollama.host_port,
        OLLANG_HOME=str(tmp_path / "home"),
        OLLANG_BACKEND="ollama",
    )
    fake_ollama.add_model("mistral:latest")
    return e


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def saved_runs(env: dict[str, str]) -> list[dict]:
    path = Path(env["OLLANG_HOME"]) / "evaluations.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# -- the CLI -------------------------------------------------------------------------------
def test_suite_checks_answers_and_writes_json_report_plot_and_run(env, fake_ollama, tmp_path):
    suite = write(tmp_path, SUITE)
    report, chart = tmp_path / "report.md", tmp_path / "chart.png"
    out = ollang(
        "compare", "--suite", str(suite), "-m", "llama3", "-m", "mistral",
        "--json", "--report", str(report), "--plot", str(chart),
        env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr  # failed checks are results, not a failure
    data = json.loads(out.stdout)
    assert [m["model"] for m in data["models"]] == ["llama3", "mistral"]
    for summary in data["models"]:
        assert summary["passed"] == 1 and summary["total"] == 3 and summary["errors"] == 0
        assert summary["pass_rate"] == pytest.approx(1 / 3)
        assert summary["ttft_p50_s"] > 0 and summary["tokens_per_s_p50"] > 0
        assert {"ttft_min_s", "ttft_max_s", "tokens_per_s_min", "load_s", "fit"} <= set(summary)
    assert data["interrupted"] is False and len(data["cases"]) == 6
    by_case = {(c["model"], c["case"]): c for c in data["cases"]}
    greet = by_case["llama3", "greet"]
    assert greet["passed"] and greet["answer"] == "echo: hello world"
    assert [c["type"] for c in greet["checks"]] == ["contains", "regex", "equals"]
    wrong = by_case["mistral", "wrong"]
    assert [c["passed"] for c in wrong["checks"]] == [False, False]
    assert by_case["llama3", "not json"]["checks"][0]["detail"].startswith("not JSON")
    # The models were asked in order, one case after the other.
    sent = [(r["model"], r["messages"][-1]["content"]) for r in fake_ollama.chat_requests()]
    assert [text for _, text in sent] == ["hello world", "bye", "give me the 'name'"] * 2
    # Without a terminal: one progress line per model on stderr.
    lines = out.stderr.decode().splitlines()
    assert lines == ["llama3: 1/3 passed (3/6 runs)", "mistral: 1/3 passed (6/6 runs)"]
    # The report: the summary table, then the failed checks.
    text = report.read_text(encoding="utf-8")
    assert "| model | pass rate |" in text and "| `llama3` | 33% (1/3) |" in text
    assert "**wrong** on `mistral`: equals" in text
    assert chart.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    # Kept for `ollang recommend`.
    (run,) = saved_runs(env)
    assert run["models"] == data["models"] and run["suite"] == str(suite)


def test_summary_table_on_stdout(env, tmp_path):
    out = ollang("compare", "--suite", str(write(tmp_path, SUITE)), "-m", "llama3", env=env)
    assert out.returncode == 0, out.stderr
    text = out.stdout.decode()
    assert (
        "| model | pass rate | ttft p50 s (min-max) | tokens/s p50 (min-max) | load | fit |" in text
    )
    assert re.search(r"^\| llama3 \| 33% \(1/3\) \| [\d.]+", text, re.MULTILINE)
    assert "wrong on llama3: equals: expected 'bye', got 'echo: bye'" in text
    assert len(saved_runs(env)) == 1


def test_json_schema_on_json_answers(env, tmp_path):
    suite = write(tmp_path, JSON_SUITE)
    out = ollang("compare", "--suite", str(suite), "-m", "llama3", "-o", "format=json", "--json",
                 env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    cases = {c["case"]: c for c in json.loads(out.stdout)["cases"]}
    assert cases["has name"]["passed"] and json.loads(cases["has name"]["answer"])["name"]
    assert not cases["lacks age"]["passed"]
    assert "'age' is a required property" in cases["lacks age"]["checks"][0]["detail"]


def test_repeat_runs_each_case_several_times(env, fake_ollama, tmp_path):
    out = ollang("compare", "--suite", str(write(tmp_path, SUITE)), "-m", "llama3",
                 "--repeat", "2", "--json", env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["models"][0]["total"] == 6 and len(fake_ollama.chat_requests()) == 6
    assert [c["repeat"] for c in data["cases"][:2]] == [1, 2]


def test_system_option_is_the_default_system_prompt(env, fake_ollama, tmp_path):
    out = ollang("compare", "--suite", str(write(tmp_path, RUBRIC_SUITE.replace(
        "      - rubric: The answer greets the user.\n", "      - contains: hello\n"
    ))), "-m", "llama3", "--system", "Be brief.", env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert fake_ollama.chat_requests()[0]["messages"][0] == {
        "role": "system",
        "content": "Be brief.",
    }


def test_every_run_an_error_exits_1(env, fake_ollama, tmp_path):
    fake_ollama.queue(*[Reply([], fault="http500") for _ in range(3)])
    out = ollang("compare", "--suite", str(write(tmp_path, SUITE)), "-m", "llama3", "--json",
                 env=env)  # fmt: skip
    assert out.returncode == 1, out.stderr
    data = json.loads(out.stdout)
    assert data["models"][0]["errors"] == 3 and all(c["error"] for c in data["cases"])
    assert len(saved_runs(env)) == 1


def test_a_bad_suite_exits_2_naming_file_line_and_field(env, fake_ollama, tmp_path):
    suite = write(tmp_path, "cases:\n  - prompt: hi\n    assert:\n      - contain: x\n")
    out = ollang("compare", "--suite", str(suite), "-m", "llama3", env=env)
    assert out.returncode == 2
    err = out.stderr.decode()
    assert f"error: {suite}:4: cases[0].assert[0]: unknown assertion 'contain'" in err
    assert "Traceback" not in err
    assert fake_ollama.chat_requests() == [] and saved_runs(env) == []


def test_an_unknown_model_exits_4_before_anything_runs(env, fake_ollama, tmp_path):
    suite = write(tmp_path, SUITE)
    out = ollang("compare", "--suite", str(suite), "-m", "llama3", "-m", "ghost", env=env)
    assert out.returncode == 4
    err = out.stderr.decode()
    assert "model 'ghost' not found" in err and "pull it with `ollama pull ghost`" in err
    assert fake_ollama.chat_requests() == [] and saved_runs(env) == []


def test_rubric_needs_an_installed_judge_before_anything_runs(env, fake_ollama, tmp_path):
    suite = write(tmp_path, RUBRIC_SUITE)
    out = ollang("compare", "--suite", str(suite), "-m", "llama3", "--judge", "judgy", env=env)
    assert out.returncode == 4
    err = out.stderr.decode()
    assert "model 'judgy' not found" in err and "ollama pull judgy" in err
    out = ollang("compare", "--suite", str(suite), "-m", "llama3", env=env)
    assert out.returncode == 2
    assert "rubric assertions but no judge model" in out.stderr.decode()
    assert "--judge MODEL" in out.stderr.decode()
    assert fake_ollama.chat_requests() == [] and saved_runs(env) == []


def test_rubric_graded_by_the_judge(env, fake_ollama, tmp_path):
    fake_ollama.queue("hello there", '{"pass": true, "reason": "it greets"}')
    out = ollang("compare", "--suite", str(write(tmp_path, RUBRIC_SUITE)), "-m", "llama3",
                 "--judge", "mistral", "--json", env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    (case,) = json.loads(out.stdout)["cases"]
    assert case["passed"] and case["checks"][0] == {
        "type": "rubric",
        "passed": True,
        "detail": "it greets",
    }
    assert [r["model"] for r in fake_ollama.chat_requests()] == ["llama3", "mistral"]


@pytest.mark.parametrize(
    "args",
    [
        ["--repeat", "0"],
        ["--repeat", "-1"],
    ],
)
def test_repeat_below_1_exits_2(env, fake_ollama, tmp_path, args):
    out = ollang("compare", "--suite", str(write(tmp_path, SUITE)), "-m", "llama3", *args,
                 env=env)  # fmt: skip
    assert out.returncode == 2
    assert "--repeat must be at least 1" in out.stderr.decode()
    assert fake_ollama.chat_requests() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["hi", "--json"], "--json need --suite"),
        (["hi", "--report", "r.md", "--repeat", "2"], "--repeat, --report need --suite"),
        ([], "give a PROMPT or --suite FILE"),
        (["hi"], "name the models to compare"),
    ],
)
def test_usage_errors_exit_2(env, args, message):
    models = [] if message.startswith("name the models") else ["-m", "llama3"]
    out = ollang("compare", *args, *models, env=env)
    assert out.returncode == 2 and message in out.stderr.decode()


def test_a_report_nowhere_is_refused_before_anything_runs(env, fake_ollama, tmp_path):
    suite = write(tmp_path, SUITE)
    report = tmp_path / "missing" / "report.md"
    out = ollang("compare", "--suite", str(suite), "-m", "llama3", "--report", str(report),
                 env=env)  # fmt: skip
    assert out.returncode == 2 and "--report" in out.stderr.decode()
    assert fake_ollama.chat_requests() == [] and saved_runs(env) == []


def test_prompt_and_suite_together_exit_2(env, tmp_path):
    out = ollang("compare", "hi", "--suite", str(write(tmp_path, SUITE)), "-m", "llama3", env=env)
    assert out.returncode == 2 and "either a PROMPT or --suite" in out.stderr.decode()


def test_ctrl_c_keeps_the_finished_runs_and_exits_130(env, fake_ollama, tmp_path):
    fake_ollama.token_delay = 0.3  # about a second per answer
    suite = write(tmp_path, SUITE)
    report = tmp_path / "report.md"
    proc = cli_popen("compare", "--suite", str(suite), "-m", "llama3", "-m", "mistral",
                     "--json", "--report", str(report), env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while len(fake_ollama.chat_requests()) < 2:  # the first run has finished
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    match = re.search(rb"interrupted: (\d+) of 6 runs finished, kept", stderr)
    assert match is not None, stderr
    finished = int(match.group(1))
    assert 1 <= finished < 6
    data = json.loads(stdout)
    assert data["interrupted"] is True and len(data["cases"]) == finished
    assert data["cases"][0]["case"] == "greet" and data["cases"][0]["passed"]
    (run,) = saved_runs(env)
    assert run["interrupted"] is True and len(run["cases"]) == finished
    assert "**Interrupted**" in report.read_text(encoding="utf-8")


def test_the_example_suite_parses(env):
    from ollang.evaluation import load_suite

    root = Path(__file__).resolve().parents[2]
    suite = load_suite(root / "docs" / "examples" / "suite.yaml")
    assert len(suite.cases) >= 4 and suite.needs_judge
    kinds = {a.kind for case in suite.cases for a in case.assertions}
    assert kinds == {"contains", "not-contains", "regex", "equals", "json-schema", "rubric"}


# -- POST /compare -------------------------------------------------------------------------
HTTP_SUITE = {
    "cases": [
        {"name": "greet", "prompt": "hello", "assert": [{"contains": "hello"}]},
        {"name": "wrong", "prompt": "bye", "assert": [{"equals": "hello"}]},
    ]
}


@pytest.fixture
def server(tmp_path):
    with FakeOllama(models=["llama3:latest", "mistral:latest", "secret:latest"]) as fake:
        settings = ServerSettings(
            store_url="memory://",
            ollama_hosts=[fake.url],
            backend="ollama",
            allow_models=["llama3*", "mistral*"],
        )
        with LiveServer(settings) as live:
            yield live, fake


def test_server_streams_progress_then_the_result(server):
    live, fake = server
    body = {"models": ["llama3", "mistral"], "suite": HTTP_SUITE, "repeat": 2}
    with httpx.stream("POST", f"{live.url}/compare", json=body, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in response.iter_lines() if line]
    *progress, result = lines
    assert [p["type"] for p in progress] == ["progress"] * 8
    assert [p["done"] for p in progress] == list(range(1, 9))
    assert progress[0] == {
        "type": "progress",
        "model": "llama3",
        "case": "greet",
        "repeat": 1,
        "done": 1,
        "total": 8,
        "passed": True,
        "error": None,
    }
    assert [p["passed"] for p in progress[:4]] == [True, True, False, False]
    assert result["type"] == "result" and result["interrupted"] is False
    assert [m["model"] for m in result["models"]] == ["llama3", "mistral"]
    assert all(m["pass_rate"] == 0.5 and m["total"] == 4 for m in result["models"])
    assert len(result["cases"]) == 8 and len(fake.chat_requests()) == 8
    home = context_of(live.app).settings.core.home
    (saved,) = [json.loads(line) for line in (home / "evaluations.jsonl").read_text().splitlines()]
    assert saved["models"] == result["models"]


@pytest.mark.parametrize("model", ["ghost", "secret"])  # not installed; not allowed
def test_server_unknown_or_disallowed_model_is_404_with_the_pull_hint(server, model):
    live, fake = server
    response = httpx.post(
        f"{live.url}/compare", json={"models": ["llama3", model], "suite": HTTP_SUITE}
    )
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == f"model {model!r} not found"
    assert f"ollama pull {model}" in body["hint"] and "secret" not in body["hint"].split(";")[1]
    assert fake.chat_requests() == []


def test_server_judge_must_be_installed_and_given_for_rubrics(server):
    live, fake = server
    suite = {"cases": [{"prompt": "hi", "assert": [{"rubric": "It greets."}]}]}
    response = httpx.post(f"{live.url}/compare", json={"models": ["llama3"], "suite": suite})
    assert response.status_code == 422 and "no judge model" in response.json()["error"]
    response = httpx.post(
        f"{live.url}/compare", json={"models": ["llama3"], "suite": suite, "judge": "ghost"}
    )
    assert response.status_code == 404 and "ollama pull ghost" in response.json()["hint"]
    assert fake.chat_requests() == []


@pytest.mark.parametrize(
    ("suite", "error"),
    [
        (
            {"cases": [{"prompt": "hi", "assert": [{"contain": "x"}]}]},
            "<request>: cases[0].assert[0]: unknown assertion 'contain'",
        ),
        ({"cases": []}, "<request>: cases: the suite has no cases"),
        ({"cases": [{"assert": []}]}, "<request>: cases[0]: missing field 'prompt'"),
        (
            {"cases": [{"prompt": "hi", "images": ["/etc/hostname"]}]},
            "<request>: cases[0].images[0]: images are not supported here",
        ),
    ],
)
def test_server_bad_suite_is_422_naming_the_field(server, suite, error):
    live, fake = server
    response = httpx.post(f"{live.url}/compare", json={"models": ["llama3"], "suite": suite})
    assert response.status_code == 422
    assert response.json()["error"].startswith(error)
    assert fake.chat_requests() == []


@pytest.mark.parametrize(
    "body",
    [
        {"models": [], "suite": HTTP_SUITE},
        {"models": ["llama3"], "suite": HTTP_SUITE, "repeat": 0},
        {"models": ["llama3"]},
        {"models": ["../etc"], "suite": HTTP_SUITE},
    ],
)
def test_server_bad_body_is_422(server, body):
    live, _ = server
    response = httpx.post(f"{live.url}/compare", json=body)
    assert response.status_code == 422 and response.json()["fields"]


def test_server_needs_the_key_when_keys_are_set(tmp_path):
    with FakeOllama() as fake:
        settings = ServerSettings(
            store_url="memory://", ollama_hosts=[fake.url], backend="ollama", api_keys=["k1"]
        )
        with LiveServer(settings) as live:
            body = {"models": ["llama3"], "suite": HTTP_SUITE}
            assert httpx.post(f"{live.url}/compare", json=body).status_code == 401
            response = httpx.post(
                f"{live.url}/compare", json=body, headers={"Authorization": "Bearer k1"}
            )
            assert response.status_code == 200 and '"type":"result"' in response.text


def test_server_client_that_leaves_stops_the_evaluation(server):
    live, fake = server
    fake.token_delay = 0.2
    suite = {
        "cases": [{"prompt": f"question {i}", "assert": [{"contains": "q"}]} for i in range(10)]
    }
    body = {"models": ["llama3", "mistral"], "suite": suite}
    with httpx.stream("POST", f"{live.url}/compare", json=body, timeout=30) as response:
        first = json.loads(next(response.iter_lines()))
        assert first["type"] == "progress" and first["done"] == 1
    # Gone: the run in progress stops at its next token, and no other starts.
    time.sleep(1.5)
    asked = len(fake.chat_requests())
    time.sleep(1.0)
    assert len(fake.chat_requests()) == asked <= 3
