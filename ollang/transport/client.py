"""The official ``ollama`` client with ollang's timeouts and connection limits.

Kept apart from :mod:`chains.models` so that model management (``ollang models``)
does not import LangChain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from ollang.settings import Settings, parse_ollama_host

if TYPE_CHECKING:
    import ollama

__all__ = ["LIMITS", "client_timeout", "ollama_client"]

# httpx's default pool (at most 100 connections) made the 101st concurrent stream
# of one model wait for another answer to end, then fail with a "pool timeout"
# after connect_timeout: a server streams many answers at once, and Ollama queues
# requests itself (OLLAMA_NUM_PARALLEL). Idle connections kept stay at httpx's 20:
# httpcore scans the pool per idle connection, so hundreds get slow (O(idle x n)).
LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=20)


def client_timeout(settings: Settings) -> httpx.Timeout:
    # Connect fast (a missing server should fail in seconds); allow long gaps
    # between reads, since the first token waits for the model to load.
    return httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.read_timeout,
        write=30.0,
        pool=settings.connect_timeout,
    )


def ollama_client(
    base_url: str | None = None, *, settings: Settings | None = None
) -> ollama.Client:
    """An official ``ollama.Client`` for the configured server, with ollang's timeouts."""
    import ollama

    settings = settings or Settings.from_env()
    url = parse_ollama_host(base_url) if base_url else settings.ollama_url
    return ollama.Client(host=url, timeout=client_timeout(settings))
