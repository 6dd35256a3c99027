"""The model gate: which models a request may use (the allow-list), and what they are called
on the hosts that have them."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from ollang.embedded.gguf import EMBEDDED_DEFAULT_MODEL
from ollang.routing.router import Router
from ollang.server.errors import ForbiddenError
from ollang.server.keys import current_key
from ollang.settings import DEFAULT_MODEL
from ollang.transport.manage import ModelDetails, normalise_model

__all__ = ["ModelGate"]


class ModelGate:
    """Answers "may this request use that model, and what is it called there?".

    Args:
        patterns: ``--allow-model`` fnmatch patterns; none admits every installed model.
        router: The hosts, which know what is installed where.
        default_model: The model for requests that name none (``OLLANG_MODEL``); ``None``
            picks ``llama3``, or the embedded ``smollm2:135m`` when no host has llama3 and
            the embedded backend is up.
    """

    def __init__(
        self, patterns: Sequence[str], router: Router, *, default_model: str | None = None
    ) -> None:
        self.patterns = list(patterns)
        self.router = router
        self.configured_default = default_model

    @property
    def default_model(self) -> str:
        """The model used when a request names none (see the class docstring)."""
        if self.configured_default:
            return self.configured_default
        if not self.router.has_model(DEFAULT_MODEL) and any(
            h.is_embedded and h.state.up for h in self.router.hosts
        ):
            return EMBEDDED_DEFAULT_MODEL
        return DEFAULT_MODEL

    def allowed(self, name: str) -> bool:
        """Whether the allow patterns (if any) and those of the request's key (a managed
        key's ``--models``, :func:`~ollang.server.keys.current_key`) admit ``name``."""
        return _matches(name, self.patterns) and _matches(name, current_key().models)

    def check_allowed(self, name: str) -> None:
        """Raise :class:`ForbiddenError` (403) unless ``name`` is allowed."""
        if not self.allowed(name):
            key = current_key().models
            raise ForbiddenError(
                f"model {name!r} is not allowed on this server",
                "allowed: "
                + ", ".join(self.patterns if not _matches(name, self.patterns) else key),
            )

    def usable(self) -> list[tuple[ModelDetails, list[str]]]:
        """Models on the hosts that are up and that the allow patterns admit, with the
        hosts that have each."""
        return [(d, hosts) for d, hosts in self.router.models() if self.allowed(d.name)]

    def resolve(self, requested: str | None) -> str:
        """The installed model a request may use, as it is installed (never pulls one).

        Raises:
            ForbiddenError: the allow patterns exclude it (403).
            ModelNotFoundError: every host that answered lacks it (404, naming the allowed
                models there are).
            NoHostError: no host is up, or one that is down was last seen with it (503).
        """
        name = requested or self.default_model
        self.check_allowed(name)
        self.router.check_model(name, allowed=self.allowed)
        return self.router.installed_name(name)


def _matches(name: str, patterns: Sequence[str]) -> bool:
    """Whether fnmatch ``patterns`` admit model ``name`` (as given or normalised; no
    patterns admit all)."""
    if not patterns:
        return True
    full = normalise_model(name)
    return any(
        fnmatchcase(name, p) or fnmatchcase(full, p) or full == normalise_model(p) for p in patterns
    )
