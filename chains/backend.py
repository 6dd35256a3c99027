"""Choosing where models run: an Ollama server, or in-process (embedded llama.cpp).

``auto`` (the default, or ``OLLANG_BACKEND``) uses Ollama when it answers, else
the embedded backend when it is installed — and says so once, through the
returned :class:`BackendChoice` notice — else fails with the Ollama-unavailable
error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ollang.chains.errors import OllamaUnavailableError
from ollang.errors import InvalidInputError, OllangError
from ollang.settings import BACKENDS, Settings, parse_ollama_host

if TYPE_CHECKING:  # LangChain is imported only when a model is made
    from langchain_core.language_models import BaseChatModel

__all__ = [
    "BACKENDS",
    "BackendChoice",
    "choose_backend",
    "make_backend_chat_model",
    "ollama_reachable",
]

BackendName = Literal["ollama", "embedded"]


@dataclass(frozen=True)
class BackendChoice:
    """The backend in use, and the one-line notice to show the user (if any)."""

    name: BackendName
    ollama_url: str
    notice: str | None = None


def ollama_reachable(url: str, timeout: float = 1.0) -> bool:
    """Whether an Ollama server answers ``/api/version`` at ``url``."""
    import httpx

    try:
        return httpx.get(f"{url}/api/version", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


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
    from ollang.chains.gguf import EMBEDDED_DEFAULT_MODEL, embedded_available

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
        from ollang.chains.models import make_chat_model

        return make_chat_model(model, base_url=choice.ollama_url, settings=settings, **options)
    from ollang.chains.embedded import make_embedded_chat_model

    settings = settings or Settings.from_env()
    return make_embedded_chat_model(model or settings.model, settings=settings, **options)
