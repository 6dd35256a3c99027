"""Evaluation suites (ollang.evaluation): reading suite files, checking answers, running
models over a suite, the reports and the kept runs. No network: FakeChatModel answers."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk

from ollang.chains.fake import FakeChatModel, FakeReply
from ollang.errors import InvalidInputError, ModelNotFoundError, OllamaResponseError
from ollang.evaluation.assertions import check, parse_verdict
from ollang.evaluation.report import markdown, plot
from ollang.evaluation.runner import CaseResult, Evaluation, Progress, run_evaluation, summarize
from ollang.evaluation.runs import measured_speeds, save_run
from ollang.evaluation.suite import Assertion, Case, load_suite

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


def _write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- suite files --------------------------------------------------------------------------

GOOD = """\
description: capitals
defaults:
  system: Answer briefly.
  assert:
    - not-contains: [I don't know, As an AI]
cases:
  - name: France
    prompt: What is the capital of France?
    assert:
      - contains: paris
        ignore_case: true
      - regex: "\\\\bParis\\\\b"
  - prompt: Return a JSON person.
    system: JSON only.
    images: [cat.png]
    assert:
      - json-schema: {type: object, required: [name]}
      - rubric: The answer is a person.
      - equals: 4
"""


def test_a_suite_reads_with_defaults_applied(tmp_path: Path):
    (tmp_path / "cat.png").write_bytes(PNG)
    suite = load_suite(_write(tmp_path, GOOD))
    assert suite.description == "capitals"
    first, second = suite.cases
    assert first.name == "France" and first.system == "Answer briefly."
    assert [a.kind for a in first.assertions] == ["not-contains", "contains", "regex"]
    assert first.assertions[0].value == ("I don't know", "As an AI")
    assert first.assertions[1].ignore_case and first.assertions[1].line == 10
    assert first.line == 7
    assert second.name == "case 2" and second.system == "JSON only."
    assert second.images == ((tmp_path / "cat.png").resolve(),)
    assert second.assertions[-1] == Assertion("equals", "4", False, 19)
    assert suite.needs_judge


def test_a_suite_without_rubrics_needs_no_judge(tmp_path: Path):
    suite = load_suite(_write(tmp_path, "cases: [{prompt: hi, assert: [{contains: hi}]}]"))
    assert not suite.needs_judge
    assert suite.cases[0].system is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cases:\n  - prompt: [unclosed\n", "suite.yaml:3: not valid YAML"),
        (
            "cases:\n  - prompt: a\n  - prompt: b\n    assert:\n      - contain: x\n",
            "suite.yaml:5: cases[1].assert[0]: unknown assertion 'contain' (expected one of "
            "contains, not-contains, regex, equals, json-schema, rubric)",
        ),
        ("cases:\n  - name: x\n    system: s\n", "suite.yaml:2: cases[0]: missing field 'prompt'"),
        ("cases:\n  - prompt: '  '\n", "suite.yaml:2: cases[0].prompt: must not be empty"),
        (
            "cases:\n  - prompt: 3\n",
            "suite.yaml:2: cases[0].prompt: expected a string, got a number",
        ),
        (
            "cases:\n  - prompt: a\n    assert:\n      - regex: '(unclosed'\n",
            "suite.yaml:4: cases[0].assert[0].regex: invalid regex '(unclosed'",
        ),
        (
            "cases:\n  - prompt: a\n    assert: [{json-schema: {type: 12}}]\n",
            "suite.yaml:3: cases[0].assert[0].json-schema: invalid JSON schema",
        ),
        (
            "cases:\n  - prompt: a\n    images: [missing.png]\n",
            "suite.yaml:3: cases[0].images[0]: no image file missing.png",
        ),
        ("cases:\n  - prompt: a\n    asert: []\n", "suite.yaml:3: cases[0].asert: unknown field"),
        ("cases: []\n", "suite.yaml:1: cases: the suite has no cases"),
        ("description: x\n", "suite.yaml:1: (top level): missing field 'cases'"),
        (
            "cases:\n  - prompt: a\n    assert: [{rubric: x, ignore_case: true}]\n",
            "cases[0].assert[0].ignore_case: rubric does not take ignore_case",
        ),
        (
            "cases:\n  - prompt: a\n    assert: [{contains: x, regex: y}]\n",
            "cases[0].assert[0]: an assertion has exactly one kind, found contains, regex",
        ),
    ],
)
def test_a_bad_suite_names_file_line_and_field(tmp_path: Path, text: str, message: str):
    path = _write(tmp_path, text)
    with pytest.raises(InvalidInputError) as caught:
        load_suite(path)
    assert message in caught.value.message
    assert caught.value.message.startswith(str(path))
    assert caught.value.exit_code == 2


def test_a_json_suite_reads_and_reports_lines(tmp_path: Path):
    good = {"cases": [{"prompt": "2+2?", "assert": [{"equals": "4"}]}]}
    suite = load_suite(_write(tmp_path, json.dumps(good, indent=2), "s.json"))
    assert suite.cases[0].assertions[0].value == "4"

    bad = '{\n  "cases": [\n    {"prompt": "a"},\n    {\n      "prompt": "b",\n      "assert": [\n        {"contain": "x"}\n      ]\n    }\n  ]\n}\n'
    with pytest.raises(InvalidInputError, match=r"s\.json:7: cases\[1\]\.assert\[0\]: unknown"):
        load_suite(_write(tmp_path, bad, "s.json"))
    with pytest.raises(InvalidInputError, match=r"s\.json:3: not valid JSON"):
        load_suite(_write(tmp_path, '{\n "cases": [\n  {"prompt": }\n]}', "s.json"))


def test_an_unreadable_or_unknown_suite_file_is_a_usage_error(tmp_path: Path):
    with pytest.raises(InvalidInputError, match="cannot read the suite"):
        load_suite(tmp_path / "nope.yaml")
    with pytest.raises(InvalidInputError, match=r"\.yaml, \.yml or \.json"):
        load_suite(_write(tmp_path, "cases: []", "suite.txt"))


# -- assertions ---------------------------------------------------------------------------


def _assertion(kind: Any, value: Any, ignore_case: bool = False) -> Assertion:
    return Assertion(kind, value, ignore_case)


@pytest.mark.parametrize(
    ("assertion", "answer", "passed"),
    [
        (_assertion("contains", ("Paris",)), "It is Paris.", True),
        (_assertion("contains", ("Paris",)), "It is paris.", False),
        (_assertion("contains", ("Paris",), True), "It is PARIS.", True),
        (_assertion("contains", ("Paris", "France")), "Paris, France", True),
        (_assertion("contains", ("Paris", "France")), "Paris", False),
        (_assertion("not-contains", ("London",)), "Paris", True),
        (_assertion("not-contains", ("London", "Rome")), "Rome", False),
        (_assertion("regex", r"\d{4}"), "in 1889", True),
        (_assertion("regex", r"\d{4}"), "long ago", False),
        (_assertion("regex", "paris", True), "PARIS", True),
        (_assertion("equals", "4"), "  4\n", True),
        (_assertion("equals", "4"), "4.", False),
        (
            _assertion("json-schema", {"type": "object", "required": ["name"]}),
            '{"name": "A"}',
            True,
        ),
        (
            _assertion("json-schema", {"type": "object", "required": ["name"]}),
            'Here:\n```json\n{"name": "A"}\n```',
            True,
        ),
        (_assertion("json-schema", {"type": "object", "required": ["name"]}), '{"age": 3}', False),
        (_assertion("json-schema", {"type": "object"}), "not json", False),
    ],
)
def test_each_assertion_kind(assertion: Assertion, answer: str, passed: bool):
    result = check(assertion, answer, None)
    assert result.passed is passed, result.detail
    assert result.kind == assertion.kind and result.detail


def test_failed_checks_say_why():
    assert check(_assertion("contains", ("a", "b")), "a", None).detail == "missing 'b'"
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}}
    detail = check(_assertion("json-schema", schema), '{"age": "x"}', None).detail
    assert detail.startswith("age: 'x' is not of type 'integer'")


@pytest.mark.parametrize(
    ("reply", "passed", "detail"),
    [
        ('{"pass": true, "reason": "names Paris"}', True, "names Paris"),
        ('Sure! {"pass": false, "reason": "two sentences"} hope it helps', False, "two sentences"),
        ('```json\n{"pass": "true"}\n```', True, "the judge passed it"),
        ("<think>hmm {pass}</think>PASS: it names Paris", True, "it names Paris"),
        ("FAIL", False, "the judge failed it"),
        ("I am not sure.", False, "cannot read the judge's verdict: 'I am not sure.'"),
    ],
)
def test_judge_verdicts_are_read_leniently(reply: str, passed: bool, detail: str):
    assert parse_verdict(reply) == (passed, detail)


def test_rubric_asks_the_judge_with_question_and_answer():
    judge = FakeChatModel(replies=['{"pass": true}', "FAIL: too long", "garbage"])
    rubric = _assertion("rubric", "Names the capital.")
    first = check(rubric, "Paris.", judge, question="Capital of France?")
    assert first.passed and first.kind == "rubric"
    sent = judge.prompts[0][-1].text
    assert "Names the capital." in sent and "Capital of France?" in sent and "Paris." in sent
    second = check(rubric, "Paris.", judge)
    assert not second.passed and second.detail == "too long"
    third = check(rubric, "Paris.", judge)
    assert not third.passed and "cannot read the judge's verdict" in third.detail
    assert not check(rubric, "Paris.", None).passed


# -- the runner ---------------------------------------------------------------------------


def _case(name: str, prompt: str, *assertions: Assertion, **kwargs: Any) -> Case:
    return Case(name=name, prompt=prompt, assertions=assertions, **kwargs)


class _Clock:
    """A clock that reads out scripted times, one per call."""

    def __init__(self, *times: float) -> None:
        self.times = list(times)

    def __call__(self) -> float:
        return self.times.pop(0)


class _LoadingModel(FakeChatModel):
    """A fake that reports Ollama's load_duration (ns) on its final chunk, as Ollama does."""

    def _chunks(self, reply: FakeReply, messages: Any) -> Iterator[AIMessageChunk]:
        for chunk in super()._chunks(reply, messages):
            if chunk.usage_metadata:
                chunk.response_metadata["load_duration"] = 2_500_000_000
            yield chunk


def test_runner_times_checks_and_sums_up_per_model():
    cases = [
        _case("capital", "Capital of France?", Assertion("contains", ("Paris",))),
        _case("sum", "2+2?", Assertion("equals", "4")),
    ]
    models = {
        "good": _LoadingModel(replies=["It is Paris", "Paris it is", "4", "4"]),
        "bad": FakeChatModel(replies=["London", "Rome", "4", "five"]),
    }
    # Per run the clock is read at the start, at the first token and at the end.
    clock = _Clock(
        *(0, 1, 3),  # good: ttft 1 s, 3 tokens in 2 s
        *(0, 2, 3),  # 3 tokens in 1 s
        *(0, 0.5, 1.5),  # 1 token in 1 s
        *(0, 1, 2),
        *(0, 1, 2),  # bad
        *(0, 1, 2),
        *(0, 1, 2),
        *(0, 1, 2),
    )
    progress: list[Progress] = []
    evaluation = run_evaluation(
        cases,
        ["good", "bad"],
        models.__getitem__,
        repeat=2,
        on_progress=progress.append,
        clock=clock,
    )
    good, bad = evaluation.models
    assert (good.model, good.pass_rate, good.passed, good.total, good.errors) == (
        "good",
        1,
        4,
        4,
        0,
    )
    assert good.ttft_p50_s == 1 and good.ttft_min_s == 0.5 and good.ttft_max_s == 2
    assert good.tokens_per_s_p50 == 1.25  # median of 1.5, 3, 1, 1
    assert (good.tokens_per_s_min, good.tokens_per_s_max) == (1, 3)
    assert good.load_s == 2.5 and bad.load_s is None
    assert bad.pass_rate == 0.25 and bad.passed == 1
    assert [(p.model, p.case_index, p.repeat, p.done, p.total) for p in progress[:3]] == [
        ("good", 0, 1, 1, 8),
        ("good", 0, 2, 2, 8),
        ("good", 1, 1, 3, 8),
    ]
    first = evaluation.cases[0]
    assert (first.case, first.model, first.repeat, first.answer) == (
        "capital",
        "good",
        1,
        "It is Paris",
    )
    assert first.ttft_s == 1 and first.tokens_per_s == 1.5 and first.output_tokens == 3
    data = json.loads(json.dumps(evaluation.to_json()))
    assert data["interrupted"] is False and data["models"][0]["tokens_per_s_p50"] == 1.25
    assert data["cases"][4]["checks"] == [
        {"type": "contains", "passed": False, "detail": "missing 'Paris'"}
    ]


def test_runner_sends_system_prompt_and_images_and_measures_real_delays(tmp_path: Path):
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    model = FakeChatModel(replies=[FakeReply("a b c", delay=0.02)])
    case = _case("look", "What is it?", system="Be brief.", images=(image,))
    evaluation = run_evaluation([case], ["m"], lambda _: model)
    system, human = model.prompts[0]
    assert system.text == "Be brief."
    assert human.content[1]["type"] == "image" and human.content[1]["mime_type"] == "image/png"
    result = evaluation.cases[0]
    assert result.passed and result.answer == "a b c"  # no assertions: passed
    assert result.ttft_s is not None and result.ttft_s >= 0.02
    assert result.total_s is not None and result.total_s >= 0.08  # 3 words, then the usage
    assert result.tokens_per_s is not None and result.tokens_per_s > 0


def test_a_failing_model_fails_its_runs_and_the_rest_go_on():
    cases = [_case("a", "x", Assertion("contains", ("ok",))), _case("b", "y")]
    broken = FakeChatModel(
        replies=[FakeReply("o", fail_after=0, error=OllamaResponseError("boom")), "ok"]
    )

    def open_model(name: str) -> FakeChatModel:
        if name == "missing":
            raise ModelNotFoundError(name)
        return broken

    evaluation = run_evaluation(cases, ["broken", "missing"], open_model)
    first, second, third, fourth = evaluation.cases
    assert not first.passed and first.error and "boom" in first.error and first.checks == []
    assert second.passed
    assert third.error == fourth.error == "model 'missing' not found"
    broken_summary, missing = evaluation.models
    assert (broken_summary.errors, broken_summary.pass_rate) == (1, 0.5)
    assert (missing.errors, missing.pass_rate, missing.ttft_p50_s) == (2, 0.0, None)


def test_ctrl_c_keeps_the_finished_runs():
    model = FakeChatModel(
        replies=["one", "two", FakeReply("three", fail_after=0, error=KeyboardInterrupt()), "four"]
    )
    cases = [_case(f"c{i}", "x") for i in range(4)]
    evaluation = run_evaluation(cases, ["m", "other"], lambda _: model)
    assert evaluation.interrupted
    assert [r.answer for r in evaluation.cases] == ["one", "two"]
    assert [(m.model, m.total) for m in evaluation.models] == [("m", 2)]
    assert evaluation.to_json()["interrupted"] is True


def test_runner_refuses_rubrics_without_a_judge_and_bad_arguments():
    cases = [_case("a", "x", Assertion("rubric", "Is kind."))]
    with pytest.raises(InvalidInputError, match="no judge model"):
        run_evaluation(cases, ["m"], lambda _: FakeChatModel())
    with pytest.raises(InvalidInputError, match="no models"):
        run_evaluation(cases, [], lambda _: FakeChatModel())
    with pytest.raises(InvalidInputError, match="repeat"):
        run_evaluation(cases, ["m"], lambda _: FakeChatModel(), repeat=0, judge=FakeChatModel())


def test_runner_grades_rubrics_with_the_judge(tmp_path: Path):
    suite = load_suite(
        _write(tmp_path, "cases: [{prompt: 'Capital?', assert: [{rubric: Names Paris.}]}]")
    )
    judge = FakeChatModel(replies=['{"pass": false, "reason": "no city"}'])
    evaluation = run_evaluation(suite, ["m"], lambda _: FakeChatModel(replies=["Hm."]), judge=judge)
    assert evaluation.suite == suite.path
    assert evaluation.cases[0].checks[0].detail == "no city"
    assert "Capital?" in judge.prompts[0][-1].text


def test_percentiles_and_medians():
    results = [
        CaseResult("c", "m", 1, True, ttft_s=t, tokens_per_s=s)
        for t, s in [(1.0, 10.0), (2.0, 20.0), (3.0, None), (4.0, 40.0), (10.0, 50.0)]
    ]
    summary = summarize("m", results, None)
    assert summary.ttft_p50_s == 3.0 and summary.tokens_per_s_p50 == 30.0
    assert summary.ttft_p90_s == pytest.approx(7.6)
    assert summarize("m", results[:1], None).ttft_p90_s == 1.0


# -- reports ------------------------------------------------------------------------------


def _evaluation() -> Evaluation:
    cases = [
        _case("capital", "Capital?", Assertion("contains", ("Paris",))),
        _case("sum", "2+2?", Assertion("equals", "4")),
    ]
    models = {
        "good": FakeChatModel(replies=["Paris", "4"]),
        "bad": FakeChatModel(
            replies=["London", FakeReply("x", fail_after=0, error=OllamaResponseError("boom"))]
        ),
    }
    clock = _Clock(*(0, 1, 2) * 3, 0)
    evaluation = run_evaluation(cases, ["good", "bad"], models.__getitem__, clock=clock)
    evaluation.models[0].fit = "fits in RAM"
    return evaluation


def test_markdown_has_the_table_and_the_failed_checks():
    text = markdown(_evaluation())
    assert (
        "| model | pass rate | TTFT p50 s (min-max) | tokens/s p50 (min-max) | load | fit |" in text
    )
    assert "| `good` | 100% (2/2) | 1.00 | 1.0 | - | fits in RAM |" in text
    assert "| `bad` | 0% (0/2), 1 error | 1.00 | 1.0 | - | - |" in text
    assert "- **capital** on `bad`: contains: missing 'Paris'" in text
    assert "- **sum** on `bad`: error: Ollama reported an error (mid-answer): boom" in text


def test_plot_writes_a_png(tmp_path: Path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "chart.png"
    plot(_evaluation(), path)
    assert path.read_bytes().startswith(b"\x89PNG")


def test_plot_without_matplotlib_says_what_to_install(tmp_path: Path, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # None: import raises ImportError
    with pytest.raises(InvalidInputError, match=r"pip install 'ollang\[eval\]'"):
        plot(_evaluation(), tmp_path / "chart.png")


# -- kept runs ----------------------------------------------------------------------------


def test_runs_are_kept_and_the_newest_speed_read_back(tmp_path: Path):
    home = tmp_path / "home"
    older = _evaluation()
    older.started_at = "2024-01-01T00:00:00+00:00"
    newer = _evaluation()
    newer.started_at = "2025-01-01T00:00:00+00:00"
    newer.models[0].tokens_per_s_p50 = 99.0
    newer.models[1].tokens_per_s_p50 = None  # measured nothing: the older speed stands
    path = save_run(newer, home)
    with path.open("a", encoding="utf-8") as file:
        file.write('{"started_at": "2026-01-01T00:00:00+00:00", "models": [{"model": "good"\n')
        file.write("not json at all\n")
    save_run(older, home)
    assert path == home / "evaluations.jsonl" and len(path.read_text().splitlines()) == 4
    speeds = measured_speeds(home)
    assert set(speeds) == {"good", "bad"}
    assert speeds["good"].tokens_per_s_p50 == 99.0 and speeds["good"].pass_rate == 1.0
    assert speeds["good"].when.year == 2025
    assert speeds["bad"].tokens_per_s_p50 == 1.0 and speeds["bad"].when.year == 2024
    assert measured_speeds(tmp_path / "nowhere") == {}


def test_a_schema_whose_ref_resolves_nowhere_fails_the_check_instead_of_raising():
    from ollang.evaluation.assertions import check
    from ollang.evaluation.suite import Assertion

    assertion = Assertion("json-schema", {"$ref": "http://127.0.0.1:9/nowhere.json"})
    result = check(assertion, '{"a": 1}', None)
    assert not result.passed and "cannot be applied" in result.detail


def test_a_remote_ref_in_an_answers_schema_is_never_fetched():
    import pytest

    from ollang.chains.structured import AnswerDoesNotFitError, check_answer

    with pytest.raises(AnswerDoesNotFitError, match="cannot be applied"):
        check_answer('{"a": 1}', {"$ref": "http://127.0.0.1:9/nowhere.json"})
