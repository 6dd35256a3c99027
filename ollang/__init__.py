"""ollang: LangChain chat chains, durable chat memory, a CLI and an HTTP server over Ollama.

Everything lives under this one import name:

* :mod:`ollang.chains` — chat models, the chat chain, the generate chain, the fake model;
* :mod:`ollang.memory` — session stores (SQLite, in-memory) and their records;
* :mod:`ollang.server` — the HTTP API and the browser page (FastAPI);
* :mod:`ollang.cli` — the ``ollang`` command (also ``python -m ollang``);
* :mod:`ollang.errors` and :mod:`ollang.settings` — the standard-library leaves every
  layer may import: the error base class, and the one reading of the environment.

Layers import one way: leaves ← ``memory`` ← ``chains`` ← ``server`` and the CLI.
"""

from __future__ import annotations

from importlib import metadata

__all__ = ["__version__"]

try:
    #: The installed distribution's version: the one place it is written is pyproject.toml.
    __version__ = metadata.version("ollang")
except metadata.PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"
