"""ollang's HTTP API and browser chat page: FastAPI over :mod:`ollang.chains` and :mod:`ollang.memory`.

Run it with ``ollang serve`` (or :func:`serve`), or build the app for any ASGI
server::

    from ollang.server import ServerSettings, create_app
    app = create_app(ServerSettings(api_keys=["secret"], allow_models=["llama3*"]))

Modules (under ``ollang.server``), from the leaves up:

* ``settings``, ``errors`` (the error answers), ``schemas`` (typed bodies), ``body`` (body
  parsing and limits), ``auth`` (keys and owners), ``logs``;
* ``writer`` (the store writer task: batched transactions), ``metrics`` (Prometheus),
  ``gate`` (which models clients may use), ``sessions`` (session access by owner),
  ``context`` (what routes share), ``turns`` (the turn engine every chat route streams
  through: setup, routing over hosts, failover, storing), ``streaming`` (plain, SSE and
  NDJSON answers);
* routes: ``routes_chat``, ``routes_models``, ``routes_sessions``; the OpenAI and Ollama
  APIs in ``routes_openai``/``routes_ollama`` with their translations ``dialect_openai``,
  ``dialect_ollama`` and what they share, ``dialects``; ``recording`` (sessions for
  stateless clients);
* ``app`` (the factory and ``serve``), ``testing`` (``LiveServer`` for tests); ``static/``
  holds the page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ollang._lazy import lazy_exports

# Lazy, so that a light module of the package (``settings``, ``workers``) imports without
# FastAPI: a ``--workers`` process unpickles its settings before it answers uvicorn's
# health check.
_WHERE = {
    "ServerSettings": "ollang.server.settings",
    "create_app": "ollang.server.app",
    "serve": "ollang.server.app",
}
__all__ = ["ServerSettings", "create_app", "serve"]

if TYPE_CHECKING:
    from ollang.server.app import create_app, serve
    from ollang.server.settings import ServerSettings

__getattr__, __dir__ = lazy_exports(__name__, globals(), _WHERE)
