"""What the server knows of each model it lists: its facts (capabilities, parameters,
context) and where it would run on the server's machine.

``GET /models`` and ``GET /models/{name}/fit`` read them through one :class:`ServerFacts`
per app (:func:`facts_of`). Facts come from each Ollama host's ``/api/show``, asked once
per model digest (:func:`~ollang.catalog.facts.gather_facts`, in a worker thread: the
model manager is synchronous), and from the GGUF header for embedded models. They are
gathered when models are listed or fitted, never on a chat turn.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import Request

from ollang.catalog.facts import FactsCache, ModelFacts, facts_from_gguf, gather_facts
from ollang.catalog.fit import Fit, Machine
from ollang.catalog.machine import this_machine
from ollang.errors import OllangError
from ollang.server.context import context_of
from ollang.settings import Settings
from ollang.transport.manage import ModelDetails, ModelManager

__all__ = ["MACHINE_TTL_S", "FitUnknownError", "ServerFacts", "facts_of", "fit_json"]

#: Seconds a reading of this machine's free memory is reused: a page load lists models
#: and may fit one; NVML's start-up alone can take a tenth of a second.
MACHINE_TTL_S = 10.0


class FitUnknownError(OllangError):
    """The model exists, but its header does not tell what the memory estimate needs."""

    http_status = 422

    def __init__(self, model: str) -> None:
        super().__init__(
            f"cannot estimate the memory model {model!r} needs: its host gave no usable "
            "header (architecture, layers, heads, context length) or no size",
            f"`ollama show --verbose {model}` lists its header; is it a llama.cpp (GGUF) model?",
        )


def fit_json(fit: Fit) -> dict[str, Any]:
    """A fit as the server answers it: :meth:`Fit.to_json`, ``processor`` as ``ollama ps``
    prints it, and ``warning``: why the fit is for another context than the asked one
    (it was above the trained one), else ``None``."""
    out = {**fit.to_json(), "processor": fit.processor(), "warning": None}
    if fit.clamped_from is not None:
        out["warning"] = (
            f"{fit.clamped_from} tokens is more context than {fit.model} was trained for "
            f"({fit.ctx}): it runs at {fit.ctx} tokens (Ollama clamps it), the fit is for those"
        )
    return out


class ServerFacts:
    """Model facts and this machine, for the model routes of one app.

    Args:
        managers: The app's Ollama hosts by name (``ServerContext.managers``).
        settings: Where the embedded backend finds its GGUF files.
        machine: Reads the machine fits are for (default: this one, read every
            :data:`MACHINE_TTL_S` seconds at most).

    ``/api/show`` answers are kept in memory per digest (:class:`FactsCache` without a
    file: the server does not write into ollang's data directory behind the CLI's back);
    embedded models' facts per name and file size.
    """

    def __init__(
        self,
        managers: Mapping[str, ModelManager],
        settings: Settings,
        *,
        machine: Callable[[], Machine] = this_machine,
    ) -> None:
        self.managers = managers
        self.settings = settings
        self.cache = FactsCache(None)
        self._read_machine = machine
        self._machine: tuple[float, Machine] | None = None
        self._embedded: dict[tuple[str, int], ModelFacts | None] = {}

    async def machine(self) -> Machine:
        """The machine fits are for: free RAM and VRAM, read at most every few seconds."""
        now = time.monotonic()
        if self._machine is None or now - self._machine[0] > MACHINE_TTL_S:
            self._machine = (now, await asyncio.to_thread(self._read_machine))
        return self._machine[1]

    async def of(
        self, models: Sequence[tuple[ModelDetails, Sequence[str]]]
    ) -> dict[str, ModelFacts]:
        """The facts of ``models`` (as the gate lists them, with their hosts), by name.

        Each is asked of the first Ollama host that has it (the hosts at once, each in a
        thread); a model only the embedded backend has is read from its GGUF file. A
        model whose facts cannot be had is left out.
        """
        by_host: dict[str, list[ModelDetails]] = {}
        embedded: list[ModelDetails] = []
        for details, hosts in models:
            host = next((h for h in hosts if h in self.managers), None)
            if host is not None:
                by_host.setdefault(host, []).append(details)
            elif details.backend == "embedded":
                embedded.append(details)
        jobs = [
            asyncio.to_thread(gather_facts, self.managers[host], listed, self.cache)
            for host, listed in by_host.items()
        ]
        if embedded:
            jobs.append(asyncio.to_thread(self._embedded_facts, embedded))
        found: dict[str, ModelFacts] = {}
        for facts in await asyncio.gather(*jobs):
            found.update(facts)
        return found

    def _embedded_facts(self, listed: Sequence[ModelDetails]) -> dict[str, ModelFacts]:
        """Facts of embedded models from their GGUF headers (read once per name and size)."""
        from ollang.embedded.gguf import resolve_embedded_model

        found: dict[str, ModelFacts] = {}
        for details in listed:
            key = (details.name, details.size)
            if key not in self._embedded:
                try:
                    path = resolve_embedded_model(details.name, self.settings).path
                    self._embedded[key] = facts_from_gguf(details.name, path)
                except OllangError:  # gone, or not a readable GGUF: no facts, no fit
                    self._embedded[key] = None
            facts = self._embedded[key]
            if facts is not None:
                found[details.name] = facts
        return found


def facts_of(request: Request) -> ServerFacts:
    """The :class:`ServerFacts` of the app serving ``request`` (made on first use)."""
    state = request.app.state
    facts: ServerFacts | None = getattr(state, "model_facts", None)
    if facts is None:
        ctx = context_of(request)
        facts = ServerFacts(ctx.managers, ctx.settings.core)
        state.model_facts = facts
    return facts
