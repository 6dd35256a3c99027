"""Run the real app with uvicorn on a free loopback port in a background thread (for tests).

Example::

    with LiveServer(ServerSettings(store_url="memory://", ollama_url=fake.url)) as live:
        httpx.post(f"{live.url}/chat", json={"message": "Hi"})
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

from fastapi import FastAPI

from ollang.memory import ChatStore
from ollang.server.app import KEEP_ALIVE_S, create_app
from ollang.server.context import context_of
from ollang.server.settings import ServerSettings

__all__ = ["LiveServer"]


class LiveServer:
    """The app served by a real ``uvicorn.Server`` on ``127.0.0.1:<free port>``.

    Attributes:
        app: The FastAPI app (``app.state.ctx.store`` is the session store).
        url: ``http://127.0.0.1:PORT`` once started.
    """

    def __init__(self, settings: ServerSettings, *, startup_timeout: float = 10.0) -> None:
        import uvicorn

        self.app: FastAPI = create_app(settings.model_copy(update={"host": "127.0.0.1"}))
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
            timeout_keep_alive=KEEP_ALIVE_S,
        )
        self.server = uvicorn.Server(config)
        self.startup_timeout = startup_timeout
        self.url = ""
        self._thread: threading.Thread | None = None

    @property
    def store(self) -> ChatStore:
        """The app's session store."""
        return context_of(self.app).store

    def start(self) -> LiveServer:
        """Start serving; returns once the socket accepts connections."""
        self._thread = threading.Thread(target=self.server.run, name="ollang-live", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for it."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
