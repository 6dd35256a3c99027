"""The clients of an Ollama server: one family, sync and async, over one configuration.

Shaped like ollama-python's ``BaseClient`` / ``Client`` / ``AsyncClient``:

* :class:`BaseOllamaClient` holds what both members share: the server's URL, the
  connect and read timeouts, and extra headers;
* :class:`OllamaClient`, the synchronous member (the CLI's probes, model management),
  is built on the official ``ollama.Client`` and its httpx client — :attr:`~OllamaClient.ollama`
  is that client, for the typed calls LangChain's ``ChatOllama`` also makes;
* :class:`~ollang.transport.wire.OllamaWire` (also :data:`AsyncOllamaClient`), the
  asynchronous member: the server's hot path, a lean keep-alive HTTP/1.1 client.

Both expose the same small JSON surface — ``get_json(path)``, ``post_json(path, body)``
and ``stream(path, body)`` for the NDJSON of chat and pull — and raise only ollang's
errors, made by :mod:`ollang.transport.errors`. Kept apart from :mod:`.chat_model` so
that model management (``ollang models``) does not import LangChain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from ollang.errors import OllamaResponseError
from ollang.settings import Settings, parse_ollama_host
from ollang.transport.errors import status_error, translating

if TYPE_CHECKING:
    import ollama
    from typing_extensions import Self

    from ollang.transport.wire import OllamaWire as AsyncOllamaClient

__all__ = [
    "LIMITS",
    "AsyncOllamaClient",
    "BaseOllamaClient",
    "OllamaClient",
    "client_timeout",
    "ollama_client",
]

#: A JSON object of Ollama's API.
Line = dict[str, Any]

# httpx's default pool (at most 100 connections) made the 101st concurrent stream
# of one model wait for another answer to end, then fail with a "pool timeout"
# after connect_timeout: a server streams many answers at once, and Ollama queues
# requests itself (OLLAMA_NUM_PARALLEL). Idle connections kept stay at httpx's 20:
# httpcore scans the pool per idle connection, so hundreds get slow (O(idle x n)).
LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=20)


def _timeout(connect: float, read: float) -> httpx.Timeout:
    # Connect fast (a missing server should fail in seconds); allow long gaps
    # between reads, since the first token waits for the model to load.
    return httpx.Timeout(connect=connect, read=read, write=30.0, pool=connect)


def client_timeout(settings: Settings) -> httpx.Timeout:
    """ollang's timeouts for an httpx client (``ChatOllama``'s, the sync client's)."""
    return _timeout(settings.connect_timeout, settings.read_timeout)


class BaseOllamaClient:
    """What every client of an Ollama server holds: where it is and how long to wait.

    Args:
        url: The base URL (``http://host:port``, ``https://...``, perhaps with a path).
        connect_timeout: Seconds to connect (a missing server fails fast).
        read_timeout: Seconds to wait for the next piece of an answer (a model may load).
        headers: Extra headers sent with every request.
    """

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 120.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.headers = dict(headers or {})

    @classmethod
    def from_settings(
        cls, base_url: str | None = None, *, settings: Settings | None = None, **kwargs: Any
    ) -> Self:
        """A client of ``base_url`` (an ``OLLAMA_HOST`` form; default the configured
        server) with the settings' timeouts."""
        settings = settings or Settings.from_env()
        url = parse_ollama_host(base_url) if base_url else settings.ollama_url
        return cls(
            url,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


def _json_object(data: bytes) -> Line:
    """A response body as a JSON object (an empty body is ``{}``)."""
    if not data.strip():
        return {}
    value = orjson.loads(data)
    return value if isinstance(value, dict) else {"value": value}


class OllamaClient(BaseOllamaClient):
    """The synchronous client: the official ``ollama.Client`` and its httpx client.

    Errors are ollang's (:class:`~ollang.errors.OllangError`): a server that is down,
    an error status (with Ollama's ``{"error": ...}`` read), garbage, a timeout.
    """

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 120.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            url, connect_timeout=connect_timeout, read_timeout=read_timeout, headers=headers
        )
        self._ollama: ollama.Client | None = None
        self._http: httpx.Client | None = None

    @property
    def timeout(self) -> httpx.Timeout:
        """The httpx timeouts: connect and pool ``connect_timeout``, read ``read_timeout``."""
        return _timeout(self.connect_timeout, self.read_timeout)

    @property
    def ollama(self) -> ollama.Client:
        """The official ``ollama.Client`` (made on first use); its calls raise raw errors."""
        if self._ollama is None:
            import ollama

            self._ollama = ollama.Client(
                host=self.url, timeout=self.timeout, headers=self.headers or None
            )
        return self._ollama

    @property
    def http(self) -> httpx.Client:
        """The httpx client of ollang's own calls (base URL, timeouts, headers set).

        Not the official client's: importing ``ollama`` (pydantic models of its whole
        API) was most of what ``ollang list`` spent before its first request.
        """
        if self._http is None:
            self._http = httpx.Client(
                base_url=self.url, timeout=self.timeout, headers=dict(self.headers or {})
            )
        return self._http

    def close(self) -> None:
        """Close the connections."""
        if self._ollama is not None:
            self._ollama._client.close()
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request_json(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        model: str | None = None,
        list_models: Callable[[], Sequence[str]] | None = None,
    ) -> Line:
        """``method path`` (with a JSON body) answered with one JSON object.

        Args:
            timeout: Seconds for every phase of this request (default: the client's).
            model: The model a 404 is about (default the body's ``model``).
            list_models: Names the installed models in a :class:`ModelNotFoundError`.

        Raises:
            OllangError: the server is down, answered an error, or sent garbage.
        """
        if model is None and body is not None:
            model = body.get("model")
        with translating(url=self.url, model=model, list_models=list_models):
            response = self.http.request(
                method,
                path,
                json=body,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
            )
            if response.status_code >= 400:
                raise status_error(response.status_code, response.text, model, list_models)
            return _json_object(response.content)

    def get_json(self, path: str, *, timeout: float | None = None) -> Line:
        """``GET path`` as JSON (see :meth:`request_json`)."""
        return self.request_json("GET", path, timeout=timeout)

    def post_json(
        self, path: str, body: Mapping[str, Any], *, timeout: float | None = None
    ) -> Line:
        """``POST path`` with a JSON body, answered with one JSON object."""
        return self.request_json("POST", path, body, timeout=timeout)

    def stream(self, path: str, body: Mapping[str, Any]) -> Iterator[Any]:
        """``POST path`` and yield its NDJSON lines, parsed, as they arrive.

        An ``{"error": ...}`` line (Ollama's in-stream error) raises
        :class:`~ollang.errors.OllamaResponseError`. Closing the iterator closes the
        response.

        Raises:
            OllangError: before or during the stream.
        """
        model = body.get("model")
        with (
            translating(url=self.url, model=model),
            self.http.stream("POST", path, json=dict(body)) as response,
        ):
            if response.status_code >= 400:
                text = response.read().decode("utf-8", "replace")
                raise status_error(response.status_code, text, model)
            for raw in response.iter_lines():
                if not raw.strip():
                    continue
                line = orjson.loads(raw)
                if isinstance(line, dict) and "error" in line:
                    raise OllamaResponseError(str(line["error"]), -1)
                yield line


def ollama_client(
    base_url: str | None = None, *, settings: Settings | None = None
) -> ollama.Client:
    """An official ``ollama.Client`` for the configured server, with ollang's timeouts."""
    return OllamaClient.from_settings(base_url, settings=settings).ollama


def __getattr__(name: str) -> Any:
    if name == "AsyncOllamaClient":  # the async member lives with the hot path
        from ollang.transport.wire import OllamaWire

        return OllamaWire
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
