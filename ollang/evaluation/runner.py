"""Running a suite over several models: each case's answer streamed, timed and checked.

:func:`run_evaluation` streams every case to every model (``repeat`` times each),
measures time to first token, tokens per second and the model's load time, runs the
case's assertions on the answer, and sums it all up per model in an
:class:`Evaluation`. It takes the models through a callback, so the CLI passes real
ones (Ollama, embedded) and tests pass :class:`~ollang.chains.fake.FakeChatModel`.

A model that fails (any :class:`~ollang.errors.OllangError`, a missing model included)
fails that run and the evaluation goes on; Ctrl-C stops it and returns what finished.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from ollang.errors import InvalidInputError, OllangError
from ollang.evaluation.assertions import Check, check
from ollang.evaluation.suite import Case, Suite

__all__ = [
    "CaseResult",
    "Evaluation",
    "ModelSummary",
    "Progress",
    "case_messages",
    "run_evaluation",
    "summarize",
]


@dataclass
class CaseResult:
    """One run of one case on one model.

    Attributes:
        case: The case's name.
        model: The model's name.
        repeat: Which repetition (from 1).
        passed: Whether every check passed (``False`` when the model failed).
        checks: Each assertion's outcome, in the case's order (empty on an error).
        answer: The model's answer ("" on an error).
        ttft_s: Seconds to the first token of the answer, or ``None``.
        tokens_per_s: Output tokens per second after the first, or ``None``.
        total_s: Seconds for the whole answer, or ``None`` on an error.
        output_tokens: Tokens the model generated (its count, else streamed pieces).
        error: The model's error message, or ``None``.
        case_index: The case's position in the suite (from 0).
    """

    case: str
    model: str
    repeat: int
    passed: bool
    checks: list[Check] = field(default_factory=list)
    answer: str = ""
    ttft_s: float | None = None
    tokens_per_s: float | None = None
    total_s: float | None = None
    output_tokens: int | None = None
    error: str | None = None
    case_index: int = 0

    def to_json(self) -> dict[str, Any]:
        """The result as JSON-ready data (checks as ``{type, passed, detail}``)."""
        data = asdict(self)
        data["checks"] = [
            {"type": c.kind, "passed": c.passed, "detail": c.detail} for c in self.checks
        ]
        return data


@dataclass
class ModelSummary:
    """One model's results over the whole suite.

    Attributes:
        model: The model's name.
        pass_rate: Passed runs / runs (errors count as failed runs), 0 to 1.
        passed: Runs whose checks all passed.
        total: Runs.
        errors: Runs the model failed.
        ttft_p50_s, ttft_p90_s, ttft_min_s, ttft_max_s: Time to first token over
            the runs that produced one (``None`` when none did).
        tokens_per_s_p50, tokens_per_s_min, tokens_per_s_max: Generation speed.
        load_s: Seconds the host took to load the model for its first run, when the
            host says (Ollama's ``load_duration``); ``None`` otherwise.
        fit: Whether the model fits this machine, as the caller judges it, or ``None``.
    """

    model: str
    pass_rate: float
    passed: int
    total: int
    errors: int
    ttft_p50_s: float | None = None
    ttft_p90_s: float | None = None
    ttft_min_s: float | None = None
    ttft_max_s: float | None = None
    tokens_per_s_p50: float | None = None
    tokens_per_s_min: float | None = None
    tokens_per_s_max: float | None = None
    load_s: float | None = None
    fit: str | None = None


@dataclass
class Evaluation:
    """What running a suite found.

    Attributes:
        models: A summary per model that ran at least once, in the order given.
        cases: Every finished run, in the order run.
        interrupted: Whether Ctrl-C stopped the evaluation before the end.
        started_at: When it started (ISO 8601, UTC).
        suite: The suite file, or ``None`` for cases built in code.
    """

    models: list[ModelSummary]
    cases: list[CaseResult]
    interrupted: bool = False
    started_at: str = ""
    suite: Path | None = None

    def to_json(self) -> dict[str, Any]:
        """The evaluation as JSON-ready data: ``{"models", "cases", "interrupted", ...}``."""
        return {
            "suite": str(self.suite) if self.suite is not None else None,
            "started_at": self.started_at,
            "interrupted": self.interrupted,
            "models": [asdict(m) for m in self.models],
            "cases": [c.to_json() for c in self.cases],
        }


@dataclass(frozen=True)
class Progress:
    """Reported after each run, for a progress display.

    Attributes:
        model: The model that ran.
        case_index: The case's position in the suite (from 0).
        repeat: Which repetition (from 1).
        done: Runs finished so far, this one included.
        total: Runs in the whole evaluation.
        result: This run's result.
    """

    model: str
    case_index: int
    repeat: int
    done: int
    total: int
    result: CaseResult


@dataclass
class _Streamed:
    """One streamed answer and its timings."""

    answer: str
    ttft_s: float | None
    total_s: float
    output_tokens: int
    load_s: float | None

    @property
    def tokens_per_s(self) -> float | None:
        if self.ttft_s is None or self.total_s - self.ttft_s <= 0:
            return None
        return self.output_tokens / (self.total_s - self.ttft_s)


def case_messages(case: Case) -> list[BaseMessage]:
    """The messages a case sends: its system prompt, then its prompt and images.

    Raises:
        InvalidInputError: an image file cannot be read or is not an image.
    """
    from ollang.turns.images import image_block_from_path

    messages: list[BaseMessage] = [SystemMessage(case.system)] if case.system else []
    if not case.images:
        return [*messages, HumanMessage(case.prompt)]
    blocks: list[str | dict[str, Any]] = [{"type": "text", "text": case.prompt}]
    blocks += [image_block_from_path(image) for image in case.images]
    return [*messages, HumanMessage(blocks)]


def _stream(
    model: BaseChatModel, messages: list[BaseMessage], clock: Callable[[], float]
) -> _Streamed:
    start = clock()
    ttft: float | None = None
    parts: list[str] = []
    counted: int | None = None
    load_ns: float | None = None
    for chunk in model.stream(messages):
        text = chunk.text
        if text:
            if ttft is None:
                ttft = clock() - start
            parts.append(text)
        usage = getattr(chunk, "usage_metadata", None)
        if usage and usage.get("output_tokens") is not None:
            counted = (counted or 0) + int(usage["output_tokens"])
        load = (chunk.response_metadata or {}).get("load_duration")
        if isinstance(load, (int, float)):
            load_ns = float(load)
    total = clock() - start
    return _Streamed(
        answer="".join(parts),
        ttft_s=ttft,
        total_s=total,
        output_tokens=counted if counted is not None else len(parts),
        load_s=load_ns / 1e9 if load_ns is not None else None,
    )


def _run_case(
    model: BaseChatModel,
    name: str,
    case: Case,
    index: int,
    repeat: int,
    judge: BaseChatModel | None,
    clock: Callable[[], float],
) -> tuple[CaseResult, float | None]:
    """One run: the result and the load time the host reported (or ``None``)."""
    try:
        streamed = _stream(model, case_messages(case), clock)
    except OllangError as err:
        result = CaseResult(case.name, name, repeat, False, error=err.message, case_index=index)
        return result, None
    checks = [check(a, streamed.answer, judge, question=case.prompt) for a in case.assertions]
    result = CaseResult(
        case=case.name,
        model=name,
        repeat=repeat,
        passed=all(c.passed for c in checks),
        checks=checks,
        answer=streamed.answer,
        ttft_s=streamed.ttft_s,
        tokens_per_s=streamed.tokens_per_s,
        total_s=streamed.total_s,
        output_tokens=streamed.output_tokens,
        case_index=index,
    )
    return result, streamed.load_s


def run_evaluation(
    suite_or_cases: Suite | Sequence[Case],
    models: Sequence[str],
    open_model: Callable[[str], BaseChatModel],
    *,
    repeat: int = 1,
    judge: BaseChatModel | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Evaluation:
    """Run every case on every model, ``repeat`` times, and sum it up per model.

    Models run one after another (each case, each repetition, then the next model),
    so one model is loaded at a time. The first run of a model records its load time.

    Args:
        suite_or_cases: The suite, or its cases.
        models: The models' names, passed to ``open_model``.
        open_model: Makes the chat model for a name (once per model). An
            :class:`~ollang.errors.OllangError` from it fails that model's runs.
        repeat: Runs per case and model (at least 1).
        judge: The model that grades ``rubric`` assertions.
        on_progress: Called after each run.
        clock: Seconds, for timing (tests pass a fake).

    Returns:
        The evaluation; ``interrupted`` if Ctrl-C stopped it (finished runs are kept).

    Raises:
        InvalidInputError: no models, no cases, ``repeat`` < 1, or rubric assertions
            with no judge.
    """
    if isinstance(suite_or_cases, Suite):
        suite: Suite | None = suite_or_cases
        cases = list(suite_or_cases.cases)
    else:
        suite, cases = None, list(suite_or_cases)
    if not models:
        raise InvalidInputError("no models to evaluate", "name one or more models")
    if not cases:
        raise InvalidInputError("the suite has no cases", "add cases to the suite file")
    if repeat < 1:
        raise InvalidInputError(f"repeat must be at least 1, got {repeat}")
    if judge is None and any(a.kind == "rubric" for c in cases for a in c.assertions):
        raise InvalidInputError(
            "the suite has rubric assertions but no judge model",
            "name a judge model (--judge MODEL), or drop the rubric assertions",
        )
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results: list[CaseResult] = []
    loads: dict[str, float | None] = {}
    total = len(models) * len(cases) * repeat
    interrupted = False
    try:
        for name in models:
            try:
                model: BaseChatModel | OllangError = open_model(name)
            except OllangError as err:
                model = err
            for index, case in enumerate(cases):
                for rep in range(1, repeat + 1):
                    if isinstance(model, OllangError):
                        result = CaseResult(
                            case.name, name, rep, False, error=model.message, case_index=index
                        )
                        load = None
                    else:
                        result, load = _run_case(model, name, case, index, rep, judge, clock)
                    if name not in loads:
                        loads[name] = load
                    results.append(result)
                    if on_progress is not None:
                        on_progress(Progress(name, index, rep, len(results), total, result))
    except KeyboardInterrupt:
        interrupted = True
    summaries = [
        summarize(name, [r for r in results if r.model == name], loads.get(name))
        for name in dict.fromkeys(models)
        if any(r.model == name for r in results)
    ]
    return Evaluation(
        models=summaries,
        cases=results,
        interrupted=interrupted,
        started_at=started_at,
        suite=suite.path if suite is not None else None,
    )


def _percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile of ``values`` (interpolated between the nearest ranks)."""
    if len(values) == 1:
        return values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[round(share * 100) - 1]


def summarize(model: str, results: Sequence[CaseResult], load_s: float | None) -> ModelSummary:
    """One model's summary from its runs (medians with :func:`statistics.median`)."""
    passed = sum(r.passed for r in results)
    ttfts = [r.ttft_s for r in results if r.ttft_s is not None]
    speeds = [r.tokens_per_s for r in results if r.tokens_per_s is not None]
    return ModelSummary(
        model=model,
        pass_rate=passed / len(results) if results else 0.0,
        passed=passed,
        total=len(results),
        errors=sum(r.error is not None for r in results),
        ttft_p50_s=statistics.median(ttfts) if ttfts else None,
        ttft_p90_s=_percentile(ttfts, 0.9) if ttfts else None,
        ttft_min_s=min(ttfts, default=None),
        ttft_max_s=max(ttfts, default=None),
        tokens_per_s_p50=statistics.median(speeds) if speeds else None,
        tokens_per_s_min=min(speeds, default=None),
        tokens_per_s_max=max(speeds, default=None),
        load_s=load_s,
    )
