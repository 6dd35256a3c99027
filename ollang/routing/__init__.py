"""Where a turn runs: model hosts, their health, the routing order, and failover.

* :mod:`~ollang.routing.hosts` — a host: an Ollama server, or the embedded backend
  (llama.cpp in-process) as the last tier;
* :mod:`~ollang.routing.order` — the routing order and the availability of a model, as
  pure functions of the hosts' states;
* :mod:`~ollang.routing.prefix` — cache-aware routing of clients that name no session: a
  digest per message boundary, and the host of the longest prefix known;
* :mod:`~ollang.routing.router` — health checks and leases over those decisions;
* :mod:`~ollang.routing.failover` — which errors move a request to another host, and what
  is raised when none is left (the server's turns and the CLI's model alike);
* :mod:`~ollang.routing.routed` — a LangChain chat model over the hosts that have a model;
* :mod:`~ollang.routing.backend` — choosing the backend for the CLI and the library
  (``OLLANG_BACKEND``).

Imports the leaves, :mod:`ollang.transport` and :mod:`ollang.embedded`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ollang._lazy import lazy_exports

_WHERE = {
    "Host": "ollang.routing.hosts",
    "HostState": "ollang.routing.hosts",
    "OllamaHost": "ollang.routing.hosts",
    "EmbeddedHost": "ollang.routing.hosts",
    "make_hosts": "ollang.routing.hosts",
    "Router": "ollang.routing.router",
    "HostLease": "ollang.routing.router",
    "NoHostError": "ollang.routing.router",
    "QueueFullError": "ollang.routing.queueing",
    "WaitingRoom": "ollang.routing.queueing",
    "choose_backend": "ollang.routing.backend",
    "make_backend_chat_model": "ollang.routing.backend",
    "routed_chat_model": "ollang.routing.backend",
}
__all__ = [
    "EmbeddedHost",
    "Host",
    "HostLease",
    "HostState",
    "NoHostError",
    "OllamaHost",
    "QueueFullError",
    "Router",
    "WaitingRoom",
    "choose_backend",
    "make_backend_chat_model",
    "make_hosts",
    "routed_chat_model",
]

if TYPE_CHECKING:
    from ollang.routing.backend import choose_backend, make_backend_chat_model, routed_chat_model
    from ollang.routing.hosts import EmbeddedHost, Host, HostState, OllamaHost, make_hosts
    from ollang.routing.queueing import QueueFullError, WaitingRoom
    from ollang.routing.router import HostLease, NoHostError, Router

__getattr__, __dir__ = lazy_exports(__name__, globals(), _WHERE)
