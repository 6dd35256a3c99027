"""Evaluation suites: the engine behind ``ollang compare --suite``.

A suite file (:mod:`~ollang.evaluation.suite`) lists prompts and the assertions their
answers must meet (:mod:`~ollang.evaluation.assertions`); the runner
(:mod:`~ollang.evaluation.runner`) streams each prompt to each model, times it and
checks the answer; :mod:`~ollang.evaluation.report` writes Markdown and a chart, and
:mod:`~ollang.evaluation.runs` keeps each evaluation for ``ollang recommend``.

Public API (imported lazily, so reading a suite does not import LangChain)::

    from ollang.evaluation import load_suite, run_evaluation, markdown, save_run
    suite = load_suite(Path("capitals.yaml"))
    evaluation = run_evaluation(suite, ["llama3", "qwen3"], make_chat_model)
    print(markdown(evaluation))
    save_run(evaluation, settings.home)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ollang._lazy import lazy_exports

__all__ = [
    "ASSERTION_KINDS",
    "RUNS_FILE",
    "Assertion",
    "Case",
    "CaseResult",
    "Check",
    "Evaluation",
    "ModelSpeed",
    "ModelSummary",
    "Progress",
    "Suite",
    "check",
    "load_suite",
    "markdown",
    "measured_speeds",
    "parse_suite",
    "plot",
    "run_evaluation",
    "save_run",
]

_WHERE = {
    **{
        name: "ollang.evaluation.suite"
        for name in (
            "ASSERTION_KINDS",
            "Assertion",
            "Case",
            "Suite",
            "load_suite",
            "parse_suite",
        )
    },
    "Check": "ollang.evaluation.assertions",
    "check": "ollang.evaluation.assertions",
    **{
        name: "ollang.evaluation.runner"
        for name in ("CaseResult", "Evaluation", "ModelSummary", "Progress", "run_evaluation")
    },
    "markdown": "ollang.evaluation.report",
    "plot": "ollang.evaluation.report",
    **{
        name: "ollang.evaluation.runs"
        for name in ("RUNS_FILE", "ModelSpeed", "measured_speeds", "save_run")
    },
}

if TYPE_CHECKING:
    from ollang.evaluation.assertions import Check, check
    from ollang.evaluation.report import markdown, plot
    from ollang.evaluation.runner import (
        CaseResult,
        Evaluation,
        ModelSummary,
        Progress,
        run_evaluation,
    )
    from ollang.evaluation.runs import RUNS_FILE, ModelSpeed, measured_speeds, save_run
    from ollang.evaluation.suite import (
        ASSERTION_KINDS,
        Assertion,
        Case,
        Suite,
        load_suite,
        parse_suite,
    )

__getattr__, __dir__ = lazy_exports(__name__, globals(), _WHERE)
