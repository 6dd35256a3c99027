"""Failover before the first token: which errors move a request to another host, in
what order hosts are tried, and what is raised when none is left.

One :class:`Failover` per request, driven by the server's turn engine (over leases) and
by :class:`~ollang.routing.routed.RoutedChatModel` (the CLI and the library): the rules
live here once, free of I/O.

* A refused connection, a connection cut before any line, a 5xx, "model not found", a
  refused key (401/403 from an engine) or a busy host (429) on one host moves the
  request to the next (:func:`fails_over`), whatever the host's kind; anything else (a
  bad request, a model error) is the answer.
* A host that failed is marked in the router (down, or its model list corrected) when
  the failure says something about the host (:func:`tells_about_host`).
* The host a session's last answer failed on is tried last (``avoid``).
* When no host is left: every host lacked the model → one :class:`ModelNotFoundError`
  naming what is installed; a single failure → that failure as it was; several →
  the router's own "no host" error naming them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

from ollang.errors import (
    HostAuthError,
    HostBusyError,
    ModelNotFoundError,
    OllamaResponseError,
    OllamaUnavailableError,
)

#: A host as the driver knows it (a :class:`~ollang.routing.hosts.Host`, or its name).
H = TypeVar("H")

__all__ = ["Failover", "fails_over", "is_cut", "tells_about_host"]


def is_cut(err: BaseException) -> bool:
    """A connection cut mid-answer (the host may have died), not the model's own error."""
    return isinstance(err, OllamaResponseError) and err.status_code is None


def tells_about_host(err: BaseException) -> bool:
    """Whether ``err`` says the host is down, lacks the model, refused ollang's key or is
    busy (the router should know)."""
    known = (OllamaUnavailableError, ModelNotFoundError, HostAuthError, HostBusyError)
    return isinstance(err, known) or is_cut(err)


def fails_over(err: BaseException) -> bool:
    """Whether an error before the first token means "try another host"."""
    if tells_about_host(err):
        return True  # a cut before any line: the host may have died after its headers
    return isinstance(err, OllamaResponseError) and (err.status_code or 0) >= 500


class Failover(Generic[H]):
    """One request's attempts over the hosts (see the module docstring).

    Args:
        model: The model asked for.
        avoid: Hosts to try only when no other can answer (the session's last failure).
    """

    def __init__(self, model: str, avoid: Sequence[H] = ()) -> None:
        self.model = model
        self.avoid = list(avoid)
        self.tried: list[H] = []
        self.errors: list[BaseException] = []

    def exclude(self) -> list[H]:
        """Hosts the next attempt must not use."""
        return [*self.tried, *self.avoid]

    def failed(self, host: H, err: BaseException) -> bool:
        """Record that ``host`` failed with ``err``; ``True`` to try another host."""
        if not fails_over(err):
            return False
        self.tried.append(host)
        self.errors.append(err)
        return True

    def no_host_left(
        self, err: BaseException, installed: Sequence[str] | None = None
    ) -> BaseException | None:
        """The router found no host for the next attempt (``err``): ``None`` to try
        again (the avoided hosts, after all), else the error to raise (``installed``:
        the models the hosts have, named when none had this one)."""
        if self.avoid:
            self.avoid = []
            return None
        if self.errors and all(isinstance(e, ModelNotFoundError) for e in self.errors):
            if installed is None:  # what the last host said it has
                last = self.errors[-1]
                installed = last.installed if isinstance(last, ModelNotFoundError) else None
            return ModelNotFoundError(self.model, installed)
        if len(self.errors) == 1:
            return self.errors[0]
        return err
