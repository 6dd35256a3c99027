"""Facts about models and machines: how much memory a model needs, and whether it fits.

* :mod:`ollang.catalog.sizes` — sizes as people write them (``8GB``) and as Ollama prints them;
* :mod:`ollang.catalog.fit` — the estimate (weights, KV cache, compute buffer) and the
  placement on GPUs and RAM, after Ollama's scheduler.

Standard library, :mod:`ollang.errors`, :mod:`ollang.settings` and third-party packages
only (``tests/unit/test_layers.py``).
"""

from __future__ import annotations

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
from ollang.catalog.sizes import format_size, parse_size

__all__ = [
    "KV_CACHE_TYPES",
    "Architecture",
    "Estimate",
    "Fit",
    "Machine",
    "estimate",
    "fit",
    "format_size",
    "kv_cache_bytes",
    "parse_size",
]
