"""ollang's HTTP API and browser chat page: FastAPI over ``chains`` and ``memory``.

Run it with ``ollang serve`` (or :func:`serve`), or build the app for any ASGI
server::

    from server import ServerSettings, create_app
    app = create_app(ServerSettings(api_keys=["secret"], allow_models=["llama3*"]))

Modules: :mod:`server.app` (factory, ``serve``), :mod:`server.routes_chat`,
:mod:`server.routes_models`, :mod:`server.routes_sessions`, :mod:`server.auth`,
:mod:`server.errors` (the one exception handler), :mod:`server.streaming`
(plain/SSE/NDJSON), :mod:`server.schemas` (typed bodies), :mod:`server.body`
(body parsing and limits), :mod:`server.context` (shared state),
:mod:`server.settings`; ``static/`` holds the page.
"""

from __future__ import annotations

__version__ = "0.1.0"

from server.app import create_app, serve
from server.settings import ServerSettings

__all__ = ["ServerSettings", "__version__", "create_app", "serve"]
