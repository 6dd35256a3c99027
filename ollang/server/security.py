"""Host and Origin checks: no web page on another site drives the server (issue 26).

A server on 127.0.0.1 is reachable by every web page its user opens: a page on
``https://evil.example`` may ``POST /chat`` with a ``text/plain`` or form body (no CORS
preflight for those), and with *DNS rebinding* (``evil.example`` re-resolved to
127.0.0.1) it may even read the answers, as the browser then thinks the server is
``evil.example``'s own. Two checks close both, on every route (``/health`` included,
keyed or not), before anything else runs:

* **Host.** The ``Host`` header must name this server: ``localhost``, any IP address
  (an address cannot be rebound; only a name can), this machine's name
  (``socket.gethostname()``), the ``--host`` given, or a name listed in
  ``OLLANG_SERVER_ALLOWED_HOSTS`` (``*``: any name). Binding to all interfaces
  (``--host 0.0.0.0``) does not lift the check: without keys that would let any web page
  read the server, not only the machines that can reach it. Anything else is 403.
* **Origin.** A browser's request from another origin is 403: an ``Origin`` header that
  is neither the server's own (the same host and port as ``Host``, over http or https, so
  a TLS proxy in front keeps working) nor one given with ``--cors-origin``; without an
  ``Origin``, ``Sec-Fetch-Site: cross-site`` or ``same-site`` (another port, another
  subdomain), except following a link (a top-level ``GET`` navigation: the answer is
  shown to the user, never to the page that linked). Clients that are not browsers send
  neither header and are not affected: curl, ``curl -d``, the SDKs.

The decision is :func:`decide`, a pure function of those headers and a :class:`Policy`;
:class:`HostOriginGuard` is the ASGI middleware that reads the headers and answers a
refusal in the dialect of the path (``/v1/*`` OpenAI's error, ``/api/*`` Ollama's, else
ollang's ``{"error", "hint"}``). On the hot path (a client that is not a browser, a Host
seen before) it costs one pass over the headers and a set lookup.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ollang.errors import OllangError
from ollang.server.errors import ForbiddenError, error_body

__all__ = [
    "HostOriginGuard",
    "Policy",
    "Refusal",
    "allowed_host_entry",
    "decide",
    "host_name",
    "refusal_error",
]

log = logging.getLogger("ollang.server")

#: Names that always mean this machine (RFC 6761); addresses are checked apart.
LOOPBACK_NAMES = frozenset({"localhost"})
#: ``Sec-Fetch-Site`` values of a request from another origin (``same-site`` is another
#: port or subdomain: another origin all the same).
_OTHER_SITES = frozenset({"cross-site", "same-site"})
#: A host name as a settings entry may give it (after :func:`host_name`).
_NAME = re.compile(r"[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?|\[[0-9a-f:.%a-z]+\]")
#: Longest Host or Origin quoted back in a refusal.
_SHOWN = 100
#: Distinct Host values remembered as accepted (bounded: a flood of made-up names
#: must not grow memory); beyond it each is decided again, which is cheap anyway.
_REMEMBERED = 256


def host_name(host: str) -> str:
    """The name a ``Host`` header (or an address) gives: lowercase, without port or
    trailing dot, an IPv6 address in brackets (``[::1]:8000`` -> ``[::1]``)."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        if end > 0 and host[end + 1 : end + 2] in ("", ":"):
            return host[: end + 1]
        return host  # not an address with a port: kept whole, so it matches nothing
    if host.count(":") > 1:  # a bare IPv6 address (an address setting, not a Host header)
        return f"[{host}]"
    return host.partition(":")[0].rstrip(".")


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name[1:-1] if name.startswith("[") else name)
    except ValueError:
        return False
    return True


def allowed_host_entry(text: str) -> str:
    """One ``OLLANG_SERVER_ALLOWED_HOSTS`` entry as :func:`host_name` gives it, or ``*``.

    Raises:
        ValueError: not a bare host name (a scheme, port or path).
    """
    entry = text.strip().lower()
    if entry == "*":
        return entry
    name = host_name(entry)
    bare = entry.rstrip(".")
    if not _NAME.fullmatch(name) or (name != bare and name != f"[{bare}]"):
        raise ValueError(f"{text!r} is not a host name")
    return name


def _machine_names() -> frozenset[str]:
    """This machine's name (and its first label when it has dots)."""
    try:
        name = socket.gethostname().lower().rstrip(".")
    except OSError:
        return frozenset()
    return frozenset(n for n in (name, name.partition(".")[0]) if n)


@dataclass(frozen=True)
class Policy:
    """Which hosts and origins the server answers (see the module's docstring).

    Attributes:
        names: Host names accepted besides any IP address (and ``localhost``).
        any_host: ``*`` was listed: every Host is accepted.
        origins: The ``--cors-origin`` origins, lowercase.
        any_origin: ``*`` was given as a CORS origin.
    """

    names: frozenset[str]
    any_host: bool = False
    origins: frozenset[str] = frozenset()
    any_origin: bool = False

    @classmethod
    def of(
        cls,
        host: str = "127.0.0.1",
        allowed_hosts: Iterable[str] = (),
        cors_origins: Iterable[str] = (),
        machine_names: Iterable[str] | None = None,
    ) -> Policy:
        """The policy of a server bound to ``host`` (``--host``) with these settings;
        ``machine_names`` default to this machine's (:func:`socket.gethostname`)."""
        listed = {allowed_host_entry(entry) for entry in allowed_hosts}
        machine = _machine_names() if machine_names is None else frozenset(machine_names)
        names = LOOPBACK_NAMES | machine | {host_name(host)} | (listed - {"*"})
        origins = {origin.strip().lower().rstrip("/") for origin in cors_origins}
        return cls(
            names=frozenset(n for n in names if n),
            any_host="*" in listed,
            origins=frozenset(origins - {"*"}),
            any_origin="*" in origins,
        )

    def host_ok(self, host: str) -> bool:
        """Whether a ``Host`` header value names this server."""
        name = host_name(host)
        return self.any_host or name in self.names or _is_address(name)

    def origin_ok(self, origin: str, host: str | None) -> bool:
        """Whether an ``Origin`` is the server's own (same host and port as ``host``) or
        a CORS origin."""
        origin = origin.strip().lower()
        if self.any_origin or origin in self.origins:
            return True
        scheme, sep, authority = origin.partition("://")
        return bool(
            host and sep and scheme in ("http", "https") and authority == host.strip().lower()
        )


class Refusal(NamedTuple):
    """Why a request is refused: its ``Host`` (``reason="host"``) or where it comes
    from (``"origin"``: an ``Origin`` header, or ``Sec-Fetch-Site``'s value)."""

    reason: Literal["host", "origin"]
    value: str


def decide(
    policy: Policy,
    host: str | None,
    origin: str | None = None,
    fetch_site: str | None = None,
    fetch_mode: str | None = None,
    method: str = "GET",
) -> Refusal | None:
    """``None`` when a request with these headers may be served, else why not.

    Args:
        policy: The server's :class:`Policy`.
        host: The ``Host`` header (``None``: none, as from some HTTP/1.0 clients).
        origin: The ``Origin`` header, which browsers send with every request but a
            same-origin or no-cors ``GET``.
        fetch_site, fetch_mode: ``Sec-Fetch-Site`` and ``Sec-Fetch-Mode`` (browsers).
        method: The request's method.
    """
    if host and not policy.host_ok(host):
        return Refusal("host", host)
    if origin is not None:
        return None if policy.origin_ok(origin, host) else Refusal("origin", origin)
    if fetch_site is not None and fetch_site.strip().lower() in _OTHER_SITES:
        if fetch_mode == "navigate" and method in ("GET", "HEAD"):
            return None  # following a link: the user sees the answer, the linking page not
        return Refusal("origin", fetch_site)
    return None


def refusal_error(refusal: Refusal) -> ForbiddenError:
    """The 403 error for a refusal, saying how to allow what was refused."""
    value = refusal.value[:_SHOWN]
    if refusal.reason == "host":
        return ForbiddenError(
            f"this server does not answer to the host name {host_name(value)!r}",
            "it answers to localhost, IP addresses, this machine's name and the --host "
            "given; list other names in OLLANG_SERVER_ALLOWED_HOSTS (this guards "
            "against DNS rebinding)",
        )
    where = f"from {value}" if "://" in value or value == "null" else f"({value})"
    return ForbiddenError(
        f"requests from web pages of other origins are refused {where}",
        "only this server's own page may call it from a browser; to let a web app use it, "
        "start the server with --cors-origin https://APP.ORIGIN",
    )


Renderer = Callable[[OllangError], ASGIApp]


def _own(origin: bytes, host: bytes) -> bool:
    """``origin`` is ``http://HOST`` or ``https://HOST`` byte for byte (no allocation):
    what :meth:`Policy.origin_ok` accepts as the server's own, in its commonest spelling."""
    extra = len(origin) - len(host)
    return (
        (extra == 7 and origin.startswith(b"http://"))
        or (extra == 8 and origin.startswith(b"https://"))
    ) and origin.endswith(host)


class HostOriginGuard:
    """ASGI middleware: :func:`decide` on every HTTP request; a refusal is a 403 in the
    path's dialect (``shapes``: path prefix -> renderer, as the app's error handler
    uses), ollang's ``{"error", "hint"}`` elsewhere."""

    def __init__(
        self, app: ASGIApp, policy: Policy, shapes: Mapping[str, Renderer] | None = None
    ) -> None:
        self.app = app
        self.policy = policy
        self.shapes = tuple((shapes or {}).items())
        self._hosts: set[bytes] = set()  # Host values decide() accepted, as sent
        self._logged: set[Refusal] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = origin = site = mode = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"origin":
                origin = value
            elif name == b"sec-fetch-site":
                site = value
            elif name == b"sec-fetch-mode":
                mode = value
        same = origin is None and (site is None or site == b"same-origin" or site == b"none")
        if same and (host is None or host in self._hosts):  # the hot path: decided before
            await self.app(scope, receive, send)
            return
        if origin is not None and host in self._hosts and _own(origin, host):  # the page
            await self.app(scope, receive, send)
            return
        refusal = decide(
            self.policy,
            None if host is None else host.decode("latin-1"),
            None if origin is None else origin.decode("latin-1"),
            None if site is None else site.decode("latin-1"),
            None if mode is None else mode.decode("latin-1"),
            scope.get("method", "GET"),
        )
        if refusal is None:
            if host is not None and len(self._hosts) < _REMEMBERED:
                self._hosts.add(host)  # decide() passed it: the Host is accepted
            await self.app(scope, receive, send)
            return
        await self._refuse(refusal, scope, receive, send)

    async def _refuse(self, refusal: Refusal, scope: Scope, receive: Receive, send: Send) -> None:
        err = refusal_error(refusal)
        if refusal not in self._logged and len(self._logged) < _REMEMBERED:
            self._logged.add(refusal)  # once per Host or Origin: an attack is not a log flood
            log.warning(
                "refused %s %s: %s; %s",
                scope.get("method"),
                scope.get("path"),
                err.message,
                err.hint,
            )
        path = scope.get("path", "")
        for prefix, render in self.shapes:
            if path.startswith(prefix):
                await render(err)(scope, receive, send)
                return
        await JSONResponse(error_body(err), status_code=err.http_status)(scope, receive, send)
