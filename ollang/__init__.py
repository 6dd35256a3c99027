"""ollang: LangChain chat chains, durable chat memory, a CLI and an HTTP server over Ollama.

Everything lives under this one import name; the package tree is the architecture,
from the bottom up:

* :mod:`ollang.errors`, :mod:`ollang.settings` (and ``iterators``, ``_lazy``) — the
  standard-library leaves: the errors a user sees, the one reading of the environment;
* :mod:`ollang.memory` — session stores (in-memory, ``sqlite/``, ``postgres/``);
* :mod:`ollang.turns` — one chat turn: the I/O-free life cycle, history and window, the
  reply recorder;
* :mod:`ollang.transport` — the way to Ollama: one client family, one translation module,
  one error translator; :mod:`ollang.embedded` — llama.cpp in-process;
* :mod:`ollang.routing` — hosts, health, the routing order, one failover policy;
* :mod:`ollang.chains` — LangChain runnables: the chat chain, the generate chain, the fake;
* :mod:`ollang.server` (routes, dialects) and :mod:`ollang.cli` (with ``commands``) — the
  adapters people use.

Each layer imports only the layers before it (``tests/unit/test_layers.py``).
"""

from __future__ import annotations

from importlib import metadata

__all__ = ["__version__"]

try:
    #: The installed distribution's version: the one place it is written is pyproject.toml.
    __version__ = metadata.version("ollang")
except metadata.PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"
