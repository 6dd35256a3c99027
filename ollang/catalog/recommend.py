"""Which installed model to use for a task: ``ollang recommend --for TASK``.

Pure: it takes the models' facts, their fits on this machine and the speeds ``ollang
compare`` measured, and ranks. The rule, in order:

1. **It can do the task.** Each task needs a capability (:data:`TASKS`); models without
   it are not listed. For ``reasoning`` a model that does not think (``completion``
   only) is still listed, after every thinking model, with a note.
2. **It runs here.** A model that does not fit this machine's memory is listed last,
   marked so. Among the others: whole on the GPU, then split between GPU and CPU, then
   on the CPU alone, then those whose fit is unknown (no header to estimate from).
3. **Measured speed.** Where an evaluation (``ollang compare --suite``) measured a
   model, the faster comes first; a measured model comes before an unmeasured one
   that runs in the same place (a measurement is evidence, a size only a guess).
4. **Size.** For ``code`` and ``reasoning`` the larger model first (more parameters
   write better code and reason further, and they already run in the same place); for
   the other tasks the smaller first (a conversation, a tool call, an image caption
   or an embedding is about the answer's latency once the capability is there).
5. The name, so the order is stable.

With no model that can do the task and runs here, :attr:`Recommendation.advice` says
what to pull.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ollang.catalog.facts import ModelFacts
from ollang.catalog.fit import Fit
from ollang.catalog.sizes import format_size
from ollang.errors import InvalidInputError

__all__ = [
    "TASKS",
    "Candidate",
    "Recommendation",
    "Speed",
    "check_task",
    "recommend",
]

#: Each task and the capability (/api/show's name) a model needs for it.
TASKS: dict[str, str] = {
    "chat": "completion",
    "code": "completion",
    "vision": "vision",
    "tools": "tools",
    "embedding": "embedding",
    "reasoning": "thinking",
}
#: Tasks where, among models that run in the same place, the larger is the better.
_LARGER_IS_BETTER = frozenset({"code", "reasoning"})
#: Per task: what no installed model can do, and what to pull for it.
_MISSING: dict[str, tuple[str, str]] = {
    "chat": ("can chat", "`ollang pull llama3.1`"),
    "code": ("can write code", "`ollang pull qwen2.5-coder`"),
    "vision": ("can read images", "`ollang pull llava`"),
    "tools": ("can call tools", "`ollang pull llama3.1` (or qwen3)"),
    "embedding": ("makes embeddings", "`ollang pull nomic-embed-text`"),
    "reasoning": ("thinks before it answers", "`ollang pull qwen3` (or deepseek-r1)"),
}
#: Per task: a small model to pull when those installed are too large for this machine.
_SMALL: dict[str, str] = {
    "chat": "llama3.2:1b",
    "code": "qwen2.5-coder:1.5b",
    "vision": "moondream",
    "tools": "qwen3:1.7b",
    "embedding": "all-minilm",
    "reasoning": "qwen3:1.7b",
}
#: The order of where a model runs; an unknown fit ranks after the CPU, ``none`` last.
_PLACEMENT = {"gpu": 0, "split": 1, "cpu": 2, None: 3, "none": 4}


class Speed(Protocol):
    """What an evaluation measured of a model (:class:`ollang.evaluation.runs.ModelSpeed`)."""

    @property
    def tokens_per_s_p50(self) -> float | None: ...

    @property
    def when(self) -> datetime: ...


@dataclass(frozen=True)
class Candidate:
    """One model as ranked for a task, and why it stands where it does."""

    facts: ModelFacts
    fit: Fit | None
    #: It has the task's capability (``False``: a reasoning task's non-thinking stand-in).
    capable: bool
    tokens_per_s: float | None
    measured_at: datetime | None
    why: str

    @property
    def runs(self) -> bool | None:
        """Whether it fits this machine; ``None`` when that is not known."""
        return None if self.fit is None else self.fit.runs_on != "none"

    def to_json(self) -> dict[str, Any]:
        """The candidate as ``recommend --json`` lists it."""
        return {
            "model": self.facts.name,
            "why": self.why,
            "fits": self.runs,
            "processor": self.fit.processor() if self.fit is not None else "?",
            "tokens_per_s": self.tokens_per_s,
            "capabilities": list(self.facts.capabilities),
            "size": self.facts.size_bytes,
        }


@dataclass(frozen=True)
class Recommendation:
    """The models for a task, best first, and advice when none will do."""

    task: str
    models: tuple[Candidate, ...]
    #: What to pull (or why the choice is weak), or ``None`` when the best is fine.
    advice: str | None

    @property
    def use(self) -> str | None:
        """The model to use: the best that may run here; ``None`` when none does."""
        best = self.models[0] if self.models else None
        return best.facts.name if best is not None and best.runs is not False else None

    def to_json(self) -> dict[str, Any]:
        """``{"use", "models", "advice"}``, as ``recommend --json`` prints it."""
        return {
            "use": self.use,
            "models": [c.to_json() for c in self.models],
            "advice": self.advice,
        }


def check_task(task: str) -> str:
    """``task`` as :data:`TASKS` names it (case aside).

    Raises:
        InvalidInputError: a task ollang does not know, with the valid ones.
    """
    name = task.strip().lower()
    if name not in TASKS:
        raise InvalidInputError(
            f"unknown task {task!r} for --for", "use one of " + ", ".join(TASKS)
        )
    return name


def _speed_of(name: str, speeds: Mapping[str, Speed]) -> Speed | None:
    """The measurement of ``name``, under its name or without ``:latest``."""
    found = speeds.get(name)
    if found is None and name.endswith(":latest"):
        found = speeds.get(name.removesuffix(":latest"))
    return found if found is not None and found.tokens_per_s_p50 is not None else None


def _why(
    task: str, facts: ModelFacts, fitted: Fit | None, capable: bool, speed: Speed | None
) -> str:
    """The reasons, in the ranking's order: ``tools ✓, runs 100% CPU, 12.3 tok/s measured
    2026-12-04, 4.7 GB``."""
    need = TASKS[task]
    parts = [f"{need} ✓" if capable else f"no {need}: answers without reasoning first"]
    if fitted is None:
        parts.append("fit unknown")
    elif fitted.runs_on == "none":
        parts.append(f"does not fit (needs {format_size(fitted.estimate.total_bytes)})")
    else:
        parts.append(f"runs {fitted.processor()}")
    if speed is not None and speed.tokens_per_s_p50 is not None:
        parts.append(f"{speed.tokens_per_s_p50:.1f} tok/s measured {speed.when:%Y-%m-%d}")
    parts.append(format_size(facts.size_bytes))
    return ", ".join(parts)


def _bigness(facts: ModelFacts) -> int:
    """How large a model is: its parameters, else its size in bytes."""
    return facts.parameter_count or facts.size_bytes


def recommend(
    task: str,
    facts: Sequence[ModelFacts],
    fits: Mapping[str, Fit | None],
    speeds: Mapping[str, Speed],
) -> Recommendation:
    """Rank the installed models ``facts`` for ``task`` (see the module for the rule).

    ``fits``: each model's fit on this machine by name (missing: unknown). ``speeds``:
    what evaluations measured, by model name.

    Raises:
        InvalidInputError: an unknown ``task``.
    """
    task = check_task(task)
    need = TASKS[task]
    candidates: list[Candidate] = []
    for model in facts:
        capable = need in model.capabilities
        standing_in = task == "reasoning" and "completion" in model.capabilities
        if not (capable or standing_in):
            continue
        fitted = fits.get(model.name)
        speed = _speed_of(model.name, speeds)
        candidates.append(
            Candidate(
                facts=model,
                fit=fitted,
                capable=capable,
                tokens_per_s=speed.tokens_per_s_p50 if speed is not None else None,
                measured_at=speed.when if speed is not None else None,
                why=_why(task, model, fitted, capable, speed),
            )
        )
    sign = -1 if task in _LARGER_IS_BETTER else 1

    def key(c: Candidate) -> tuple[Any, ...]:
        placement = _PLACEMENT[c.fit.runs_on if c.fit is not None else None]
        return (
            placement == _PLACEMENT["none"],
            not c.capable,
            placement,
            c.tokens_per_s is None,
            -(c.tokens_per_s or 0.0),
            sign * _bigness(c.facts),
            c.facts.name,
        )

    ranked = tuple(sorted(candidates, key=key))
    return Recommendation(task, ranked, _advice(task, ranked))


def _advice(task: str, ranked: Sequence[Candidate]) -> str | None:
    """What to pull when nothing installed will do (or only a stand-in will)."""
    what, pull = _MISSING[task]
    if not ranked:
        return f"no installed model {what}; try {pull}"
    best = ranked[0]
    if best.runs is False:
        count = len(ranked)
        them = "it" if count == 1 else f"all {count}"
        return (
            f"no installed model that {what} fits this machine's memory ({them} too large); "
            f"free memory, or try a smaller one: `ollang pull {_SMALL[task]}`"
        )
    if not best.capable:
        if any(c.capable for c in ranked):
            return (  # only reasoning has stand-ins: the thinking models are too large
                f"no installed thinking model fits this machine; {best.facts.name} answers "
                f"directly; try a smaller one: `ollang pull {_SMALL[task]}`"
            )
        return f"no installed model {what}; {best.facts.name} answers directly; try {pull}"
    return None
