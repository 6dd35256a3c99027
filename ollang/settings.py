"""ollang's configuration from the environment, read in one place (standard library only).

Every variable has one parsing rule, here, whoever reads it (the library, the CLI,
the server):

=========================  ==============================================================
``OLLAMA_HOST``            Ollama's address in any form Ollama accepts (``host``,
                           ``host:port``, ``:port``, ``http://host:port``, ``https://host``).
``OLLANG_OLLAMA_HOSTS``    Several model hosts, comma-separated: Ollama servers in any
                           ``OLLAMA_HOST`` form, OpenAI-compatible engines as
                           ``openai+http://host:port/v1``, each with optional
                           ``?priority=N&weight=W&max=M`` (and ``key=``, ``ctx=`` for
                           ``openai+``; see :class:`HostSpec`); set, it replaces
                           ``OLLAMA_HOST``.
``OLLANG_MODEL``           Default model (``llama3``; ``smollm2:135m`` on the embedded backend).
``OLLANG_BACKEND``         ``auto`` (default), ``ollama`` or ``embedded``.
``OLLANG_HOME``            Data directory (``sessions.db`` lives there); else
                           ``$XDG_DATA_HOME/ollang``, else ``~/.local/share/ollang``.
``OLLANG_STORE_URL``       Session store URL (``sqlite:///path.db``, ``memory://``);
                           default: ``sessions.db`` in the data directory.
``OLLAMA_MODELS``          Ollama's model store, read by the embedded backend.
``OLLANG_CONNECT_TIMEOUT`` Seconds to connect to Ollama (5): a missing server fails fast.
``OLLANG_READ_TIMEOUT``    Seconds to wait for the next piece of an answer (120): a model
                           may load for a minute before its first token.
``OLLANG_DEBUG``           Show tracebacks. Booleans here and in ``OLLANG_SERVER_*`` accept
                           ``1/true/yes/on/y/t`` and ``0/false/no/off/n/f`` (any case).
=========================  ==============================================================

The server's settings (``OLLANG_SERVER_*``, :class:`ollang.server.settings.ServerSettings`)
contain a :class:`Settings` (``ServerSettings.core``) rather than reading these again.

A bad value raises :class:`~ollang.errors.SettingsError` naming the variable. Standard
library only, so that ``ollang --help`` stays fast and every layer may import it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from ollang.errors import SettingsError

__all__ = [
    "BACKENDS",
    "DEFAULT_MODEL",
    "DEFAULT_OLLAMA_URL",
    "EMBEDDED_HOST",
    "HOST_KINDS",
    "HostSpec",
    "Settings",
    "parse_backend",
    "parse_bool",
    "parse_hosts",
    "parse_ollama_host",
]

DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"
DEFAULT_MODEL = "llama3"
DEFAULT_PORT = 11434
#: Where models may run: ``auto`` picks Ollama when it answers, else the embedded backend.
BACKENDS = ("auto", "ollama", "embedded")

#: The name of the embedded backend when it is listed among the hosts.
EMBEDDED_HOST = "embedded"
#: What a host can be: an Ollama server, an OpenAI-compatible engine (vLLM, SGLang,
#: llama.cpp's server, LM Studio, TGI...), or the embedded backend.
HOST_KINDS = ("ollama", "openai", "embedded")
#: The host options every kind takes, and those only ``openai+`` hosts take.
_OPTIONS = ("priority", "weight", "max")
_OPENAI_OPTIONS = ("key", "ctx")

_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "off", "n", "f"})


def parse_bool(value: str | bool, name: str = "value") -> bool:
    """A boolean setting: ``1/true/yes/on/y/t`` or ``0/false/no/off/n/f``, in any case.

    Raises:
        SettingsError: anything else (an unreadable flag is an error, never silently off).
    """
    if isinstance(value, bool):
        return value
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SettingsError(
        f"{name} must be a boolean, got {value!r}", "use 1/true/yes/on or 0/false/no/off"
    )


def parse_backend(value: str, name: str = "OLLANG_BACKEND") -> str:
    """A backend name: ``auto``, ``ollama`` or ``embedded``, in any case.

    Raises:
        SettingsError: any other name (the message names ``name``).
    """
    backend = value.strip().lower()
    if backend not in BACKENDS:
        raise SettingsError(f"{name} must be one of {', '.join(BACKENDS)}, got {value!r}")
    return backend


def parse_ollama_host(value: str | None, name: str = "OLLAMA_HOST") -> str:
    """Normalise an ``OLLAMA_HOST`` value to a base URL such as ``http://host:port``.

    Mirrors Ollama's own parsing (``ollama._client._parse_host``): the scheme
    defaults to ``http`` and the port to 11434; an explicit ``http://`` or
    ``https://`` without a port means 80 or 443; an empty host means
    127.0.0.1; ``0.0.0.0`` (a bind address) is reached via 127.0.0.1.

    Raises:
        ValueError: if the value cannot be read as a host (the message names ``name``).
    """
    raw = (value or "").strip()
    if not raw:
        return DEFAULT_OLLAMA_URL
    explicit_scheme = "://" in raw
    if not explicit_scheme:
        raw = "http://" + raw
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"{name} has an unsupported scheme: {value!r}")
    try:
        port = parts.port
    except ValueError as err:
        raise ValueError(f"{name} has an invalid port: {value!r}") from err
    host = parts.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if port is None:
        port = {"https": 443}.get(scheme, 80 if explicit_scheme else DEFAULT_PORT)
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    path = parts.path.rstrip("/")
    return f"{scheme}://{host}:{port}{path}"


@dataclass(frozen=True)
class HostSpec:
    """One model host as configured: an Ollama server, an OpenAI-compatible engine, or
    the embedded backend.

    Written ``URL[?priority=N&weight=W&max=M]``: ``URL`` in any ``OLLAMA_HOST`` form for
    Ollama, ``openai+http://host:port/v1`` (or ``openai+https://``) for an engine that
    speaks the OpenAI API, or ``embedded``; e.g.
    ``gpu1:11434?max=4,openai+http://gpu2:8000/v1?key=sk-1&ctx=32768``.

    Attributes:
        url: The base URL (``http://host:port`` for Ollama; ``http://host:port/v1``, the
            path where ``/models`` and ``/chat/completions`` live, for ``openai``), or
            ``embedded``.
        priority: Tier; lower is preferred. A host of a later tier is used only when no
            host of an earlier tier can take the request (down, lacking the model, full).
            The embedded backend, added last by ``auto``, has the lowest tier.
        weight: Within a tier, requests spread by in-flight requests per unit of weight.
        max_concurrent: Most requests in flight at once on this host (``None``: no limit);
            more wait for a free slot.
        kind: ``ollama``, ``openai`` or ``embedded`` (:data:`HOST_KINDS`).
        key: An ``openai`` host's API key (``key=``, percent-encoded in the entry), sent
            as ``Authorization: Bearer``; never shown (:attr:`shown`, ``repr``).
        context: An ``openai`` host's context window in tokens (``ctx=``), used when
            the engine does not report its models' ``max_model_len``.
    """

    url: str
    priority: int = 0
    weight: float = 1.0
    max_concurrent: int | None = None
    kind: str = "ollama"
    key: str | None = field(default=None, repr=False)
    context: int | None = None

    def __post_init__(self) -> None:
        if self.url == EMBEDDED_HOST:
            object.__setattr__(self, "kind", "embedded")

    @property
    def is_embedded(self) -> bool:
        """Whether this is the in-process backend."""
        return self.url == EMBEDDED_HOST

    @property
    def address(self) -> str:
        """The host's address as written in an entry: ``openai+`` before an engine's URL."""
        return f"openai+{self.url}" if self.kind == "openai" else self.url

    def _written(self, key: str | None) -> str:
        options = []
        if self.priority:
            options.append(f"priority={self.priority}")
        if self.weight != 1.0:
            options.append(f"weight={self.weight:g}")
        if self.max_concurrent is not None:
            options.append(f"max={self.max_concurrent}")
        if key is not None:
            options.append(f"key={key}")
        if self.context is not None:
            options.append(f"ctx={self.context}")
        return self.address + ("?" + "&".join(options) if options else "")

    @property
    def text(self) -> str:
        """The spec written back as an entry (what :meth:`parse` reads), key included:
        for passing settings on, never for showing."""
        return self._written(quote(self.key, safe="") if self.key is not None else None)

    @property
    def shown(self) -> str:
        """The spec as logs and pages may show it: :attr:`text` with the key redacted."""
        return self._written("***" if self.key is not None else None)

    @classmethod
    def parse(cls, text: str, name: str = "OLLANG_OLLAMA_HOSTS") -> HostSpec:
        """Read one ``[KIND+]URL[?priority=N&weight=W&max=M[&key=K&ctx=N]]`` entry.

        Raises:
            SettingsError: an unknown kind, an unreadable address or option (the entry
                named, its key redacted).
        """
        address, _, query = text.strip().partition("?")
        address = address.strip()
        entry = _redacted(text.strip())
        kind, prefixed = "ollama", False
        if "+" in address.partition("/")[0]:  # no host name has a "+": a kind is named
            prefixed = True
            kind, _, rest = address.partition("+")
            kind = kind.lower()
            if kind not in ("ollama", "openai"):
                raise SettingsError(
                    f"{name}: unknown host kind {kind!r} in {entry!r}",
                    "write openai+http://host:port/v1 for an OpenAI-compatible engine, "
                    "or an Ollama address (host:port, http://host:port)",
                )
            address = rest
        if address.lower() == EMBEDDED_HOST and not prefixed:
            url, kind = EMBEDDED_HOST, "embedded"
        elif kind == "openai":
            url = _engine_url(address, name, entry)
        else:
            try:
                url = parse_ollama_host(address, name)
            except ValueError as err:
                raise SettingsError(str(err), "e.g. gpu1:11434?max=4") from err
        options = _host_options(query, kind, name, entry)
        try:
            priority = int(options.get("priority", "0"))
            weight = float(options.get("weight", "1"))
            most = int(options["max"]) if "max" in options else None
            context = int(options["ctx"]) if "ctx" in options else None
        except ValueError as err:
            raise SettingsError(f"{name}: a host option is not a number in {entry!r}") from err
        if not weight > 0 or (most is not None and most < 1):
            raise SettingsError(f"{name}: weight must be > 0 and max >= 1 in {entry!r}")
        if context is not None and context < 1:
            raise SettingsError(f"{name}: ctx must be a number of tokens >= 1 in {entry!r}")
        key = unquote(options["key"]) if options.get("key") else None
        return cls(url, priority, weight, most, kind, key, context)


def _redacted(entry: str) -> str:
    """An entry as error messages show it: any ``key=`` value replaced by ``***``."""
    address, sep, query = entry.partition("?")
    parts = ["key=***" if part.startswith("key=") else part for part in query.split("&")]
    return address + sep + "&".join(parts)


def _engine_url(address: str, name: str, entry: str) -> str:
    """An OpenAI-compatible engine's base URL: ``http(s)://host[:port][/path]``, as given."""
    parts = urlsplit(address)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            f"{name}: an openai+ host needs an http:// or https:// URL, got {entry!r}",
            "e.g. openai+http://gpu2:8000/v1",
        )
    try:
        parts.port  # noqa: B018 - reading it checks it
    except ValueError as err:
        raise SettingsError(f"{name} has an invalid port: {entry!r}") from err
    return address.rstrip("/")


def _host_options(query: str, kind: str, name: str, entry: str) -> dict[str, str]:
    """The ``?a=b&c=d`` options of an entry, each checked against what ``kind`` takes."""
    known = _OPTIONS + (_OPENAI_OPTIONS if kind == "openai" else ())
    options: dict[str, str] = {}
    for part in filter(None, query.split("&")):
        key, sep, value = part.partition("=")
        if not sep or key not in known:
            shown = "key=***" if key == "key" else part
            hint = "host options are priority=N, weight=W and max=M"
            if key in _OPENAI_OPTIONS:
                hint = "key= and ctx= are options of openai+ hosts only"
            raise SettingsError(f"{name}: unknown host option {shown!r} in {entry!r}", hint)
        options[key] = value
    return options


def parse_hosts(value: str, name: str = "OLLANG_OLLAMA_HOSTS") -> tuple[HostSpec, ...]:
    """A comma-separated list of :class:`HostSpec` entries (duplicates refused)."""
    hosts = tuple(HostSpec.parse(part, name) for part in value.split(",") if part.strip())
    urls = [h.address for h in hosts]
    if len(set(urls)) != len(urls):
        shown = ",".join(h.shown for h in hosts)
        raise SettingsError(f"{name} names a host twice: {shown!r}")
    return hosts


def _seconds(raw: str, name: str) -> float:
    try:
        value = float(raw)
    except ValueError as err:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from err
    if not value > 0 or value == float("inf"):
        raise SettingsError(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


def _data_dir(env: Mapping[str, str]) -> Path:
    home = env.get("OLLANG_HOME", "").strip()
    if home:
        return Path(home).expanduser()
    xdg = env.get("XDG_DATA_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "ollang"


def _ollama_models(env: Mapping[str, str]) -> Path:
    configured = env.get("OLLAMA_MODELS", "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".ollama" / "models"


@dataclass(frozen=True)
class Settings:
    """Everything ollang reads from the environment, resolved once.

    Use :meth:`from_env`; tests and embedding applications may construct it directly
    and pass it to the factories (``make_chat_model(..., settings=...)``).

    Attributes:
        ollama_url: Ollama's base URL (``OLLAMA_HOST``, normalised; default
            ``http://127.0.0.1:11434``): the first Ollama host of :attr:`hosts`.
        hosts: Every configured host (``OLLANG_OLLAMA_HOSTS``; else the one
            ``OLLAMA_HOST``); the embedded backend is added by ``auto``, not listed here.
        model: The default model named by ``OLLANG_MODEL``; ``None`` when unset (each
            backend then has its own default: :attr:`default_model` for Ollama).
        backend: ``auto`` (default), ``ollama`` or ``embedded`` (``OLLANG_BACKEND``).
        home: The data directory (``OLLANG_HOME``; else ``$XDG_DATA_HOME/ollang``, else
            ``~/.local/share/ollang``).
        store_url: The session store URL (``OLLANG_STORE_URL``), or ``None`` for
            ``sessions.db`` in :attr:`home`.
        ollama_models: Ollama's model store, read by the embedded backend (``OLLAMA_MODELS``;
            default ``~/.ollama/models``).
        connect_timeout: Seconds to connect to Ollama (``OLLANG_CONNECT_TIMEOUT``; 5).
        read_timeout: Seconds to wait for the next piece of an answer
            (``OLLANG_READ_TIMEOUT``; 120).
        debug: Show tracebacks and llama.cpp's own log (``OLLANG_DEBUG``; off).
    """

    ollama_url: str = DEFAULT_OLLAMA_URL
    hosts: tuple[HostSpec, ...] = ()
    model: str | None = None
    backend: str = "auto"
    home: Path = field(default_factory=lambda: _data_dir(os.environ))
    store_url: str | None = None
    ollama_models: Path = field(default_factory=lambda: _ollama_models(os.environ))
    connect_timeout: float = 5.0
    read_timeout: float = 120.0
    debug: bool = False

    def __post_init__(self) -> None:
        if not self.hosts:  # built by hand: the one Ollama at ollama_url
            object.__setattr__(self, "hosts", (HostSpec(self.ollama_url),))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``environ`` (default ``os.environ``).

        Raises:
            SettingsError: a variable has a value that cannot be read (named in the message).
        """
        env = os.environ if environ is None else environ

        def text(name: str) -> str:
            return env.get(name, "").strip()

        try:
            ollama_url = parse_ollama_host(env.get("OLLAMA_HOST"))
        except ValueError as err:
            raise SettingsError(str(err), "e.g. OLLAMA_HOST=127.0.0.1:11434") from err
        backend = parse_backend(text("OLLANG_BACKEND") or "auto")
        hosts = parse_hosts(text("OLLANG_OLLAMA_HOSTS")) if text("OLLANG_OLLAMA_HOSTS") else ()
        ollama_hosts = [h for h in hosts if h.kind == "ollama"]
        if ollama_hosts:
            ollama_url = ollama_hosts[0].url
        connect, read = text("OLLANG_CONNECT_TIMEOUT"), text("OLLANG_READ_TIMEOUT")
        debug = text("OLLANG_DEBUG")
        return cls(
            ollama_url=ollama_url,
            hosts=hosts or (HostSpec(ollama_url),),
            model=text("OLLANG_MODEL") or None,
            backend=backend,
            home=_data_dir(env),
            store_url=text("OLLANG_STORE_URL") or None,
            ollama_models=_ollama_models(env),
            connect_timeout=_seconds(connect, "OLLANG_CONNECT_TIMEOUT") if connect else 5.0,
            read_timeout=_seconds(read, "OLLANG_READ_TIMEOUT") if read else 120.0,
            debug=parse_bool(debug, "OLLANG_DEBUG") if debug else False,
        )

    def with_hosts(self, hosts: tuple[HostSpec, ...]) -> Settings:
        """These settings with other hosts (``--ollama-host``); the first Ollama host is
        :attr:`ollama_url`."""
        first = next((h.url for h in hosts if h.kind == "ollama"), self.ollama_url)
        return dataclasses.replace(self, hosts=hosts, ollama_url=first)

    @property
    def ollama_hosts(self) -> tuple[HostSpec, ...]:
        """The configured Ollama servers (neither an ``embedded`` entry nor engines)."""
        return tuple(h for h in self.hosts if h.kind == "ollama")

    @property
    def remote_hosts(self) -> tuple[HostSpec, ...]:
        """Every configured host that is not the embedded backend (Ollama and engines)."""
        return tuple(h for h in self.hosts if not h.is_embedded)

    @property
    def default_model(self) -> str:
        """The model used on Ollama when a caller names none: ``OLLANG_MODEL`` or ``llama3``."""
        return self.model or DEFAULT_MODEL

    @property
    def store_path(self) -> Path:
        """The default SQLite session database: ``sessions.db`` in :attr:`home`."""
        return self.home / "sessions.db"
