"""Choosing a model: ``ollang models fit`` (will it run here?) and ``ollang recommend``.

Also what ``ollang models`` lists per model (:func:`listed_facts`, :func:`fits_here`):
the facts of every installed model, from its host's ``/api/show`` (cached per digest)
or, for the embedded backend, from its GGUF header, and where it would run on this
machine. The estimate and the ranking are :mod:`ollang.catalog`'s; this module finds
the models, renders, and says which exit code.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ollang.catalog.facts import FactsCache, ModelFacts, facts_from_gguf, facts_from_tags
from ollang.catalog.fit import KV_CACHE_TYPES, Fit, Machine
from ollang.catalog.sizes import format_size
from ollang.errors import InvalidInputError, OllangError
from ollang.settings import Settings

if TYPE_CHECKING:
    from ollang.routing.router import Router
    from ollang.transport.manage import ModelDetails

__all__ = [
    "describe_machine",
    "fit_model",
    "fit_report",
    "fits_here",
    "listed_facts",
    "recommend_models",
    "render_fit",
]


# -- facts of the installed models ---------------------------------------------------------
def listed_facts(
    settings: Settings, router: Router, listed: Sequence[tuple[ModelDetails, list[str]]]
) -> dict[str, ModelFacts]:
    """The facts of each model ``listed`` (as :meth:`Router.models` lists them), by name.

    An Ollama model's come from the first host that has it (``/api/show``, only for
    digests the cache in the data directory lacks); an embedded model's from its GGUF
    header. A model whose facts cannot be read keeps what the listing says of it.
    """
    from ollang.catalog.facts import gather_facts
    from ollang.transport.manage import ModelManager

    embedded = {h.name for h in router.hosts if h.is_embedded}
    by_host: dict[str, list[ModelDetails]] = {}
    found: dict[str, ModelFacts] = {}
    ollama = {h.name for h in router.hosts if h.kind == "ollama"}
    for details, hosts in listed:
        if details.backend == "embedded" or all(h in embedded for h in hosts):
            found[details.name] = _embedded_facts(settings, details)
            continue
        host = next((h for h in hosts if h in ollama), None)
        if host is None:  # only engines (openai kind) serve it: what they listed
            found[details.name] = facts_from_tags(details)
            continue
        by_host.setdefault(host, []).append(details)
    cache = FactsCache(settings.home)
    for host, models in by_host.items():
        found.update(gather_facts(ModelManager(host, settings=settings), models, cache))
    return found


def _embedded_facts(settings: Settings, details: ModelDetails) -> ModelFacts:
    """An embedded model's facts from its GGUF file (the listing's, if it cannot be read)."""
    from ollang.embedded.gguf import resolve_embedded_model

    try:
        return facts_from_gguf(details.name, resolve_embedded_model(details.name, settings).path)
    except OllangError:
        return facts_from_tags(details)


def fits_here(
    facts: Mapping[str, ModelFacts], machine: Machine, ctx: int | None = None
) -> dict[str, Fit | None]:
    """Where each model runs on ``machine`` at ``ctx`` (default: Ollama's); ``None``: unknown."""
    return {name: f.fit(machine, ctx) for name, f in facts.items()}


# -- ollang models fit ------------------------------------------------------------------------
def fit_report(
    facts: ModelFacts, machine: Machine, ctx: int | None = None, kv_cache_type: str = "f16"
) -> Fit:
    """Where the model of ``facts`` runs on ``machine`` at ``ctx`` tokens with that KV cache.

    Raises:
        InvalidInputError: ``ctx`` is not positive, or ``kv_cache_type`` is unknown.
        OllangError: the model's header lacks what the estimate needs.
    """
    found = facts.fit(machine, ctx, kv_cache_type)
    if found is not None:
        return found
    arch = facts.architecture()
    if arch is None and facts.model_info:
        from ollang.catalog.fit import Architecture

        Architecture.from_model_info(facts.model_info)  # raises the error naming the key
    raise OllangError(
        f"cannot estimate the memory {facts.name} needs: "
        + ("its size is unknown" if arch is not None else "its host gave no header"),
        f"`ollang show {facts.name}` says what its host reports",
    )


def describe_machine(machine: Machine) -> str:
    """The machine a fit was computed for, in one line.

    ``this machine: 23.1 GB free RAM, no GPU found (NVIDIA via NVML)``, or
    ``described: GPU 8 GB, RAM 16 GB``.
    """
    if machine.described:
        parts = [f"GPU {format_size(g)}" for g in machine.gpus]
        return "described: " + ", ".join([*parts, f"RAM {format_size(machine.ram_bytes)}"])
    gpus = [
        f"{name} ({format_size(free)} free)"
        for name, free in zip(machine.gpu_names, machine.gpus, strict=False)
    ]
    return f"this machine: {format_size(machine.ram_bytes)} free RAM, " + (
        ", ".join(gpus) if gpus else "no GPU found (NVIDIA via NVML)"
    )


def render_fit(fit: Fit, facts: ModelFacts, machine: Machine) -> str:
    """A fit for people: where it runs, the memory split, the machine, the largest context."""
    est = fit.estimate
    lines = [f"{fit.model} at {fit.ctx} tokens ({fit.kv_cache_type} KV cache): {fit.processor()}"]
    for label, size in (
        ("weights", est.weights_bytes),
        ("KV cache", est.kv_cache_bytes),
        ("compute", est.compute_bytes),
        ("total", est.total_bytes),
    ):
        lines.append(f"  {label:<9} {format_size(size)}")
    if fit.runs_on == "split":
        lines.append(
            f"  on the GPU {format_size(fit.gpu_bytes)}, in RAM {format_size(fit.cpu_bytes)}"
        )
    lines.append(describe_machine(machine))
    trained = f" (trained for {facts.context_length})" if facts.context_length else ""
    if fit.max_ctx:
        lines.append(f"largest context that fits: {fit.max_ctx} tokens{trained}")
    else:
        lines.append(f"no context fits, not even 256 tokens{trained}")
    return "\n".join(lines) + "\n"


def _check_fit_options(ctx: int | None, kv_cache_type: str) -> None:
    """Refuse a bad ``--ctx`` or ``--kv-cache`` before any host is asked."""
    if ctx is not None and ctx <= 0:
        raise InvalidInputError(
            f"--ctx {ctx} is not above zero", "give a number of tokens, e.g. --ctx 8192"
        )
    if kv_cache_type not in KV_CACHE_TYPES:
        raise InvalidInputError(
            f"unknown --kv-cache {kv_cache_type!r}", "use one of " + ", ".join(KV_CACHE_TYPES)
        )


def _one_model_facts(settings: Settings, name: str) -> ModelFacts:
    """The facts of installed model ``name`` (an Ollama host's, else the embedded backend's).

    Raises:
        ModelNotFoundError: no host has it (with the pull hint and what is installed).
        NoHostError: no host that could have it is up.
    """
    from ollang.routing.router import Router
    from ollang.transport.manage import normalise_model

    router = Router.from_settings(settings)
    router.check_all_sync()
    router.check_model(name)  # raises the not-found (exit 4) or no-host (exit 3) error
    wanted = normalise_model(name)
    for details, hosts in router.models():
        if normalise_model(details.name) == wanted:
            return listed_facts(settings, router, [(details, hosts)])[details.name]
    # The embedded backend also runs a .gguf path it does not list.
    from ollang.embedded.gguf import resolve_embedded_model

    model = resolve_embedded_model(name, settings)
    return facts_from_gguf(model.name, model.path)


def fit_model(
    settings: Settings,
    name: str,
    *,
    ctx: int | None,
    kv_cache_type: str,
    gpus: Sequence[str],
    ram: str | None,
    as_json: bool,
) -> int:
    """``ollang models fit``: where ``name`` runs on this machine (or one described).

    A context above the model's trained one is clamped to it, with a warning on stderr.
    """
    from ollang.catalog.machine import described_machine, gpu_note, this_machine

    _check_fit_options(ctx, kv_cache_type)
    machine = described_machine(gpus, ram) if gpus or ram is not None else this_machine()
    facts = _one_model_facts(settings, name)
    found = fit_report(facts, machine, ctx, kv_cache_type)
    if found.clamped_from is not None:
        sys.stderr.write(
            f"warning: {found.model} was trained for {found.ctx} tokens; --ctx "
            f"{found.clamped_from} is clamped to {found.ctx}, as Ollama does\n"
        )
    if as_json:
        sys.stdout.write(json.dumps(found.to_json(), indent=2) + "\n")
        return 0
    sys.stdout.write(render_fit(found, facts, machine))
    note = gpu_note(machine)
    if note:
        sys.stderr.write(f"note: {note}; describe one with --gpu SIZE\n")
    return 0


# -- ollang recommend ------------------------------------------------------------------------
def recommend_models(settings: Settings, task: str, as_json: bool) -> int:
    """``ollang recommend --for TASK``: the installed models ranked for ``task``.

    Exit 0 when there is a model to use (with advice when it is only a stand-in, as a
    non-thinking model for reasoning); 1 when there is none (nothing installed can do
    the task, or nothing that can fits this machine), the advice on stdout as the
    answer, so a script can ``ollang recommend --for vision || ollang pull llava``.
    """
    from ollang.catalog.machine import this_machine
    from ollang.catalog.recommend import check_task, recommend
    from ollang.evaluation.runs import measured_speeds
    from ollang.routing.router import NoHostError, Router

    task = check_task(task)
    router = Router.from_settings(settings)
    router.check_all_sync()
    if not any(h.state.up for h in router.hosts):
        raise NoHostError(None, router.hosts)
    listed = router.models()
    facts = listed_facts(settings, router, listed)
    fits = fits_here(facts, this_machine())
    chosen = recommend(
        task, [facts[d.name] for d, _ in listed], fits, measured_speeds(settings.home)
    )
    code = 0 if chosen.use is not None else 1
    if as_json:
        sys.stdout.write(json.dumps(chosen.to_json(), indent=2, ensure_ascii=False) + "\n")
        return code
    if chosen.use is not None:
        sys.stdout.write(f"for {task}, use {chosen.use}\n")
    for rank, candidate in enumerate(chosen.models, start=1):
        sys.stdout.write(f"{rank}. {candidate.facts.name}: {candidate.why}\n")
    if chosen.advice:
        sys.stdout.write(f"{chosen.advice}\n")
    return code
