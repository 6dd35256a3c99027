"""Checking an answer against one assertion of a suite (see :mod:`ollang.evaluation.suite`).

Every kind but ``rubric`` is a pure function of the answer. A ``rubric`` asks a judge
model to grade the answer with a fixed prompt and reads its verdict leniently: the
first JSON object in its reply (``{"pass": true, "reason": "..."}``), else a leading
PASS or FAIL. A verdict that cannot be read, a judge that fails, or no judge at all
is a failed check that says so: a check never raises.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from ollang.errors import OllangError
from ollang.evaluation.suite import Assertion

__all__ = ["JUDGE_PROMPT", "Check", "check", "parse_verdict", "strip_fences"]

#: The judge's instructions; the rubric, question and answer follow in the user message.
JUDGE_PROMPT = (
    "You grade an AI assistant's answer against a rubric. Judge only whether the answer "
    "meets the rubric, not whether you like it. Reply with one JSON object and nothing "
    'else: {"pass": true or false, "reason": "one short sentence"}.'
)

_FENCED = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n(.*?)\n?[ \t]*```", re.DOTALL)
_THINKING = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_LEADING_WORD = re.compile(r"^\W*(PASS|FAIL)(?:ED|ES)?\b", re.IGNORECASE)


@dataclass(frozen=True)
class Check:
    """The outcome of one assertion on one answer.

    Attributes:
        passed: Whether the answer met the assertion.
        detail: Why, in a few words (what was missing, the judge's reason, ...).
        kind: The assertion's kind (``contains``, ``rubric``, ...).
    """

    passed: bool
    detail: str
    kind: str = ""


def check(
    assertion: Assertion, answer: str, judge: BaseChatModel | None, *, question: str = ""
) -> Check:
    """Check ``answer`` against ``assertion``.

    Args:
        assertion: What to check.
        answer: The model's answer.
        judge: The model that grades ``rubric`` assertions (unused by the others).
        question: The prompt the answer replies to, shown to the judge.
    """
    kind = assertion.kind
    if kind in ("contains", "not-contains"):
        passed, detail = _contains(assertion, answer)
    elif kind == "equals":
        passed, detail = _equals(assertion, answer)
    elif kind == "regex":
        passed, detail = _regex(assertion, answer)
    elif kind == "json-schema":
        passed, detail = _json_schema(assertion, answer)
    else:
        passed, detail = _rubric(str(assertion.value), question, answer, judge)
    return Check(passed, detail, kind)


def _fold(text: str, ignore_case: bool) -> str:
    return text.casefold() if ignore_case else text


def _contains(assertion: Assertion, answer: str) -> tuple[bool, str]:
    value = assertion.value
    texts = value if isinstance(value, tuple) else (str(value),)
    haystack = _fold(answer, assertion.ignore_case)
    present = [t for t in texts if _fold(t, assertion.ignore_case) in haystack]
    if assertion.kind == "contains":
        missing = [t for t in texts if t not in present]
        if missing:
            return False, "missing " + ", ".join(map(repr, missing))
        return True, "contains " + ", ".join(map(repr, texts))
    if present:
        return False, "contains " + ", ".join(map(repr, present))
    return True, "none of " + ", ".join(map(repr, texts))


def _equals(assertion: Assertion, answer: str) -> tuple[bool, str]:
    expected = str(assertion.value).strip()
    got = answer.strip()
    if _fold(got, assertion.ignore_case) == _fold(expected, assertion.ignore_case):
        return True, f"equals {expected!r}"
    return False, f"expected {expected!r}, got {_short(got)!r}"


def _regex(assertion: Assertion, answer: str) -> tuple[bool, str]:
    pattern = str(assertion.value)
    flags = re.IGNORECASE if assertion.ignore_case else 0
    match = re.search(pattern, answer, flags)
    if match:
        return True, f"/{pattern}/ matched {_short(match.group(0))!r}"
    return False, f"no match for /{pattern}/"


def strip_fences(answer: str) -> str:
    """The JSON in ``answer``: the answer itself, or the first ```json fenced block in it."""
    text = answer.strip()
    match = _FENCED.search(text)
    if match and not text.startswith(("{", "[")):
        return match.group(1).strip()
    return text


def _json_schema(assertion: Assertion, answer: str) -> tuple[bool, str]:
    from jsonschema import ValidationError
    from jsonschema.exceptions import best_match

    from ollang.chains.structured import schema_validator

    try:
        data = json.loads(strip_fences(answer))
    except ValueError as err:
        return False, f"not JSON: {err}"
    schema = assertion.value
    assert isinstance(schema, dict)
    validator = schema_validator(schema)
    try:
        error: ValidationError | None = best_match(validator.iter_errors(data))
    except Exception as err:  # e.g. a $ref nothing resolves (remote ones are never fetched)
        return False, f"the schema cannot be applied: {err}"
    if error is None:
        return True, "matches the schema"
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return False, f"{where.lstrip('.') or 'the answer'}: {error.message}"


def _rubric(
    rubric: str, question: str, answer: str, judge: BaseChatModel | None
) -> tuple[bool, str]:
    if judge is None:
        return False, "no judge model to grade the rubric"
    messages = [
        SystemMessage(JUDGE_PROMPT),
        HumanMessage(
            f"Rubric:\n{rubric}\n\nQuestion:\n{question or '(none)'}\n\nAnswer:\n{answer}"
        ),
    ]
    try:
        reply = judge.invoke(messages).text
    except OllangError as err:
        return False, f"the judge failed: {err.message}"
    return parse_verdict(reply)


def parse_verdict(reply: str) -> tuple[bool, str]:
    """A judge's verdict: ``(passed, reason)``.

    The first JSON object with a ``pass`` field, else a leading PASS/FAIL word (the
    rest of the reply is the reason); anything else is a failure saying the verdict
    could not be read.
    """
    text = _THINKING.sub("", reply).strip()
    verdict = _first_object(text)
    if verdict is not None and "pass" in verdict:
        passed = _truthy(verdict["pass"])
        if passed is not None:
            reason = str(verdict.get("reason") or "").strip()
            return passed, reason or ("the judge passed it" if passed else "the judge failed it")
    match = _LEADING_WORD.match(text)
    if match:
        passed = match.group(1).upper() == "PASS"
        reason = text[match.end() :].strip(" \t\n:.-—")
        return passed, reason or ("the judge passed it" if passed else "the judge failed it")
    return False, f"cannot read the judge's verdict: {_short(text) or '(empty reply)'!r}"


def _first_object(text: str) -> dict[str, Any] | None:
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _truthy(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "pass", "passed", "yes"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "fail", "failed", "no"):
        return False
    return None


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
