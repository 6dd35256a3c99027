"""Evaluation suites: the engine behind ``ollang compare --suite``.

A suite file (:mod:`~ollang.evaluation.suite`) lists prompts and the assertions their
answers must meet (:mod:`~ollang.evaluation.assertions`).

Public API (imported lazily, so reading a suite does not import LangChain)::

    from ollang.evaluation import load_suite, check
    suite = load_suite(Path("capitals.yaml"))
    check(suite.cases[0].assertions[0], "Paris.", judge=None).passed
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ollang._lazy import lazy_exports

__all__ = [
    "ASSERTION_KINDS",
    "Assertion",
    "Case",
    "Check",
    "Suite",
    "check",
    "load_suite",
]

_WHERE = {
    "ASSERTION_KINDS": "ollang.evaluation.suite",
    "Assertion": "ollang.evaluation.suite",
    "Case": "ollang.evaluation.suite",
    "Suite": "ollang.evaluation.suite",
    "load_suite": "ollang.evaluation.suite",
    "Check": "ollang.evaluation.assertions",
    "check": "ollang.evaluation.assertions",
}

if TYPE_CHECKING:
    from ollang.evaluation.assertions import Check, check
    from ollang.evaluation.suite import ASSERTION_KINDS, Assertion, Case, Suite, load_suite

__getattr__, __dir__ = lazy_exports(__name__, globals(), _WHERE)
