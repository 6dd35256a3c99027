"""Evaluation suites (ollang.evaluation): reading suite files, checking answers, running
models over a suite, the reports and the kept runs. No network: FakeChatModel answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ollang.chains.fake import FakeChatModel
from ollang.errors import InvalidInputError
from ollang.evaluation.assertions import check, parse_verdict
from ollang.evaluation.suite import Assertion, load_suite

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
