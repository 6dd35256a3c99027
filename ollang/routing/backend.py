"""Choosing where models run: Ollama hosts, OpenAI-compatible engines, or in-process
(embedded llama.cpp).

:func:`routed_chat_model` is what the CLI (and any synchronous caller) uses: it checks
the configured hosts once (:class:`~ollang.routing.router.Router`), finds the ones that
have the model, and returns a chat model on the best of them that falls back, before
its first token, to the next ones. ``auto`` (the default, or ``OLLANG_BACKEND``) puts
the embedded backend last; with no Ollama host up and no model named, it answers with
the embedded default model and says so once.

:func:`choose_backend` / :func:`make_backend_chat_model` are the one-host form kept for
callers that pick a backend themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ollang.errors import InvalidInputError, OllamaUnavailableError, OllangError
from ollang.settings import BACKENDS, Settings, parse_ollama_host

if TYPE_CHECKING:  # LangChain is imported only when a model is made
    from langchain_core.language_models import BaseChatModel
    from langchain_core.runnables import Runnable

__all__ = [
    "BACKENDS",
    "BackendChoice",
    "RoutedModel",
    "choose_backend",
    "make_backend_chat_model",
    "ollama_reachable",
    "routed_chat_model",
]

BackendName = Literal["ollama", "embedded"]


@dataclass(frozen=True)
class BackendChoice:
    """The backend in use, and the one-line notice to show the user (if any)."""

    name: BackendName
    ollama_url: str
    notice: str | None = None


def ollama_reachable(url: str, timeout: float = 1.0) -> bool:
    """Whether an Ollama server answers ``/api/version`` at ``url`` (within ``timeout``)."""
    from ollang.transport.client import OllamaClient

    try:
        with OllamaClient(url, connect_timeout=timeout, read_timeout=timeout) as client:
            client.get_json("/api/version", timeout=timeout)
    except OllangError:
        return False
    return True


def choose_backend(
    requested: str | None = None,
    *,
    base_url: str | None = None,
    settings: Settings | None = None,
    model: str | None = None,
) -> BackendChoice:
    """Resolve ``requested`` (``auto``/``ollama``/``embedded``; default ``$OLLANG_BACKEND``).

    Raises:
        InvalidInputError: an unknown backend name.
        OllamaUnavailableError: ``auto`` with neither Ollama nor the embedded backend.
        OllangError: ``embedded`` requested but not installed.
    """
    from ollang.embedded.gguf import EMBEDDED_DEFAULT_MODEL, embedded_available

    settings = settings or Settings.from_env()
    url = parse_ollama_host(base_url) if base_url else settings.ollama_url
    name = (requested or settings.backend).strip().lower()
    if name not in BACKENDS:
        raise InvalidInputError(
            f"unknown backend {name!r}", "choose one of: " + ", ".join(BACKENDS)
        )
    if name == "ollama":
        return BackendChoice("ollama", url)
    if name == "embedded":
        if not embedded_available():
            raise OllangError(
                "the embedded backend is not installed",
                'install it with `pip install "ollang[embedded]"`',
            )
        return BackendChoice("embedded", url)
    if ollama_reachable(url, timeout=min(settings.connect_timeout, 1.0)):
        return BackendChoice("ollama", url)
    if embedded_available():
        shown = model or EMBEDDED_DEFAULT_MODEL
        return BackendChoice(
            "embedded", url, f"Ollama not reachable at {url}; using embedded model {shown}"
        )
    raise OllamaUnavailableError(url)


def make_backend_chat_model(
    choice: BackendChoice,
    model: str | None = None,
    *,
    settings: Settings | None = None,
    **options: object,
) -> BaseChatModel:
    """A chat model on the chosen backend.

    On the embedded backend, no explicit model (no ``-m``, no ``OLLANG_MODEL``)
    means the bundled ``smollm2:135m``; a named model is looked up as a GGUF path
    or in Ollama's local model store.
    """
    if choice.name == "ollama":
        from ollang.transport.chat_model import make_chat_model

        return make_chat_model(model, base_url=choice.ollama_url, settings=settings, **options)
    from ollang.embedded.model import make_embedded_chat_model

    settings = settings or Settings.from_env()
    return make_embedded_chat_model(model or settings.model, settings=settings, **options)


@dataclass(frozen=True)
class RoutedModel:
    """A chat model over the hosts that have it, and the notice to show (if any)."""

    model: Runnable[Any, Any]
    name: str
    hosts: list[str]
    notice: str | None = None


def routed_chat_model(
    model: str | None = None,
    *,
    backend: str | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> RoutedModel:
    """A chat model for ``model`` on the best host that has it, falling back to the others.

    Args:
        model: The model; default ``OLLANG_MODEL``, else ``llama3`` — or the embedded
            ``smollm2:135m`` when no Ollama host is up (with a notice).
        backend: ``auto``, ``ollama`` or ``embedded`` (default ``OLLANG_BACKEND``).
        settings: Hosts and timeouts (default: from the environment).
        **options: Model options, as for :func:`~ollang.chains.make_chat_model`.

    Raises:
        InvalidInputError: an unknown backend name.
        NoHostError: no host that could run the model is up (names them, and what is
            available instead).
        ModelNotFoundError: the hosts that are up lack the model (names what they have).
    """
    from ollang.embedded.gguf import EMBEDDED_DEFAULT_MODEL
    from ollang.routing.router import Router
    from ollang.settings import DEFAULT_MODEL

    settings = settings or Settings.from_env()
    name = (backend or settings.backend).strip().lower()
    if name not in BACKENDS:
        raise InvalidInputError(
            f"unknown backend {name!r}", "choose one of: " + ", ".join(BACKENDS)
        )
    router = Router.from_settings(settings, name)
    router.check_all_sync()
    chosen = model or settings.model
    notice = None
    if chosen is None:
        chosen = DEFAULT_MODEL
        embedded_up = any(h.is_embedded and h.state.up for h in router.hosts)
        ollama_up = any(h.state.up for h in router.hosts if not h.is_embedded)
        if name == "embedded" or (embedded_up and not ollama_up):
            chosen = EMBEDDED_DEFAULT_MODEL
            if name == "auto":
                notice = (
                    f"Ollama not reachable at {settings.ollama_url}; "
                    f"using embedded model {EMBEDDED_DEFAULT_MODEL}"
                )
    router.check_model(chosen)
    hosts = router.order(chosen)
    models = [_host_model(host, chosen, settings, options) for host in hosts]
    names = [h.name for h in hosts]
    primary: BaseChatModel = models[0]
    if len(models) > 1:  # failover before the first token, by the server's rules
        from ollang.routing.routed import RoutedChatModel

        primary = RoutedChatModel(model=chosen, hosts=names, models=models)
    return RoutedModel(primary, chosen, names, notice)


def _host_model(host: Any, model: str, settings: Settings, options: dict[str, Any]) -> Any:
    if host.is_embedded:
        from ollang.embedded.model import make_embedded_chat_model

        return make_embedded_chat_model(model, settings=settings, **options)
    if host.kind == "openai":  # an engine: langchain-openai's model, with ollang's errors
        from ollang.transport.manage import normalise_model
        from ollang.transport.openai_chat_model import make_openai_chat_model

        details = host.state.models.get(normalise_model(model))
        return make_openai_chat_model(
            host.installed_name(model),
            base_url=host.spec.url,
            key=host.spec.key,
            context_window=(details.context_length if details else None) or host.spec.context,
            settings=settings,
            **options,
        )
    from ollang.transport.chat_model import make_chat_model

    # The name as the user wrote it: Ollama reads it the same way, and it is what is shown.
    return make_chat_model(model, base_url=host.name, settings=settings, **options)
