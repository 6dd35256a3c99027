"""``ollang serve --workers N``: the settings reach every worker inside uvicorn's ``Config``.

uvicorn starts worker processes with ``spawn`` and hands each one its ``Config`` pickled
(through multiprocessing's pipe, as it does every option). :class:`ServeConfig` carries
the :class:`~ollang.server.settings.ServerSettings` that ``ollang serve`` resolved (its
options over the environment, read once, in the parent), so every worker, and every
worker uvicorn restarts, builds its app from exactly those: nothing is written to
``os.environ`` or to a file, and no worker reads the environment again.

This module stays light (uvicorn's config and the settings, no FastAPI): a worker
unpickles it before it can answer uvicorn's health check. The app is imported by
:meth:`ServeConfig.load_app`, once the worker is up.
"""

from __future__ import annotations

import functools
import inspect
from contextlib import suppress
from typing import Any

import uvicorn

from ollang.server.settings import ServerSettings

__all__ = ["ServeConfig", "run_workers"]


class ServeConfig(uvicorn.Config):
    """uvicorn's ``Config``, carrying the settings the app is built from.

    uvicorn takes the app of worker processes as an import string; :meth:`load_app`, its
    "import the app" step, returns :func:`~ollang.server.app.create_app` bound to the
    carried settings instead.
    """

    def __init__(self, settings: ServerSettings, **options: Any) -> None:
        super().__init__("ollang.server.app:create_app", factory=True, **options)
        self.server_settings = settings

    def load_app(self) -> Any:
        """The app factory, bound to the carried settings (uvicorn calls it)."""
        from ollang.server.app import create_app

        return functools.partial(create_app, self.server_settings, freeze_gc=True)


def run_workers(config: ServeConfig) -> None:
    """What ``uvicorn.run`` does for ``workers`` > 1, with a ``Config`` built here: bind
    once, then supervise ``config.workers`` processes serving that one socket."""
    from uvicorn.supervisors import Multiprocess

    extra: dict[str, Any] = {}
    if "target" in inspect.signature(Multiprocess).parameters:  # older uvicorn took it
        extra["target"] = uvicorn.Server(config).run
    sock = config.bind_socket()
    with suppress(KeyboardInterrupt):  # as uvicorn.run: Ctrl-C is a normal stop
        Multiprocess(config, sockets=[sock], **extra).run()
