"""ollang's HTTP API and browser chat page: FastAPI over :mod:`ollang.chains` and :mod:`ollang.memory`.

Run it with ``ollang serve`` (or :func:`serve`), or build the app for any ASGI
server::

    from ollang.server import ServerSettings, create_app
    app = create_app(ServerSettings(api_keys=["secret"], allow_models=["llama3*"]))

Modules (under ``ollang.server``): ``app`` (factory, ``serve``), ``routes_chat``,
``routes_models``, ``routes_sessions``, ``auth``, ``errors`` (the one exception
handler), ``streaming`` (plain/SSE/NDJSON), ``schemas`` (typed bodies), ``body``
(body parsing and limits), ``context`` (what routes share: ``gate`` for models,
``chain_cache``, ``sessions`` for session access), ``settings``; ``static/`` holds
the page.
"""

from __future__ import annotations

from ollang.server.app import create_app, serve
from ollang.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app", "serve"]
