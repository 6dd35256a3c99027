"""Facts about models and machines: how much memory a model needs, and whether it fits.

* :mod:`ollang.catalog.sizes` — sizes as people write them (``8GB``) and as Ollama prints them;
* :mod:`ollang.catalog.fit` — the estimate (weights, KV cache, compute buffer) and its
  placement on GPUs and RAM, after Ollama's scheduler;
* :mod:`ollang.catalog.machine` — this machine's free RAM and VRAM, or one described;
* :mod:`ollang.catalog.gguf_info` — a GGUF file's header as Ollama's /api/show gives it;
* :mod:`ollang.catalog.facts` — what a model is and can do (parameters, quantization,
  context, capabilities), from /api/show or a GGUF header, cached per digest;
* :mod:`ollang.catalog.recommend` — which installed model to use for a task.

Standard library, :mod:`ollang.errors`, :mod:`ollang.settings` and third-party packages
only, and :mod:`ollang.transport` for the /api/show requests of
:func:`~ollang.catalog.facts.gather_facts` (``tests/unit/test_layers.py``); psutil, NVML
and ``gguf`` are imported when used.
"""

from __future__ import annotations

from ollang.catalog.facts import (
    CAPABILITIES,
    FactsCache,
    ModelFacts,
    facts_from_gguf,
    facts_from_show,
    facts_from_tags,
    gather_facts,
)
from ollang.catalog.fit import (
    KV_CACHE_TYPES,
    Architecture,
    Estimate,
    Fit,
    Machine,
    estimate,
    fit,
    kv_cache_bytes,
)
from ollang.catalog.gguf_info import capabilities_from_gguf, model_info_from_gguf
from ollang.catalog.machine import described_machine, gpu_note, this_machine
from ollang.catalog.recommend import TASKS, Candidate, Recommendation, check_task, recommend
from ollang.catalog.sizes import format_size, parse_size

__all__ = [
    "CAPABILITIES",
    "KV_CACHE_TYPES",
    "TASKS",
    "Architecture",
    "Candidate",
    "Estimate",
    "FactsCache",
    "Fit",
    "Machine",
    "ModelFacts",
    "Recommendation",
    "capabilities_from_gguf",
    "check_task",
    "described_machine",
    "estimate",
    "facts_from_gguf",
    "facts_from_show",
    "facts_from_tags",
    "fit",
    "format_size",
    "gather_facts",
    "gpu_note",
    "kv_cache_bytes",
    "model_info_from_gguf",
    "parse_size",
    "recommend",
    "this_machine",
]
