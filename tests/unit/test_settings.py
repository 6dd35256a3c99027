"""The one settings object: the core :class:`Settings` and the server's, which contains it.

Every value is read by one rule wherever it is read; a bad value is a
:class:`SettingsError` naming the variable. No sockets here (see conftest).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ollang.errors import InvalidInputError, SettingsError
from ollang.server.settings import CORE_OVERRIDES, ServerSettings
from ollang.settings import (
    DEFAULT_OLLAMA_URL,
    HostSpec,
    Settings,
    parse_backend,
    parse_bool,
    parse_hosts,
    parse_ollama_host,
)


@pytest.fixture(autouse=True)
def _bare_env(monkeypatch, tmp_path) -> None:
    """No ollang or Ollama variable from the machine or the suite's conftest."""
    for name in list(os.environ):
        if name.startswith(("OLLANG_", "OLLAMA_", "XDG_DATA_HOME")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OLLANG_HOME", str(tmp_path / "home"))


# -- each kind of value --------------------------------------------------------------------
@pytest.mark.parametrize("text", ["1", "true", "YES", "on", "y", "T", " 1 "])
def test_booleans_true(text):
    assert parse_bool(text, "X") is True


@pytest.mark.parametrize("text", ["0", "false", "No", "OFF", "n", "f"])
def test_booleans_false(text):
    assert parse_bool(text, "X") is False


@pytest.mark.parametrize("text", ["", "maybe", "2", "enabled"])
def test_an_unreadable_boolean_names_the_variable(text):
    with pytest.raises(SettingsError, match=r"^OLLANG_DEBUG must be a boolean"):
        Settings.from_env({"OLLANG_DEBUG": text or " x "})


@pytest.mark.parametrize(
    ("value", "url"),
    [
        (None, DEFAULT_OLLAMA_URL),
        ("", DEFAULT_OLLAMA_URL),
        (":4321", "http://127.0.0.1:4321"),
        ("gpu1", "http://gpu1:11434"),
        ("http://gpu1", "http://gpu1:80"),
        ("https://gpu1", "https://gpu1:443"),
        ("0.0.0.0:11434", "http://127.0.0.1:11434"),
        ("[::1]:5", "http://[::1]:5"),
        ("host:1/base/", "http://host:1/base"),
    ],
)
def test_ollama_addresses(value, url):
    assert parse_ollama_host(value) == url


@pytest.mark.parametrize("bad", ["ftp://x", "host:port", "http://h:99999"])
def test_a_bad_ollama_address_names_the_variable_it_came_from(bad):
    with pytest.raises(ValueError, match=r"^OLLAMA_HOST "):
        parse_ollama_host(bad)
    with pytest.raises(ValueError, match=r"^OLLANG_SERVER_OLLAMA_URL "):
        parse_ollama_host(bad, "OLLANG_SERVER_OLLAMA_URL")
    with pytest.raises(SettingsError, match=r"^OLLAMA_HOST "):
        Settings.from_env({"OLLAMA_HOST": bad})
    with pytest.raises(SettingsError, match=r"^OLLANG_OLLAMA_HOSTS "):
        Settings.from_env({"OLLANG_OLLAMA_HOSTS": f"a:1,{bad}"})


def test_host_lists():
    hosts = parse_hosts(" gpu1:11434?max=4 , cpu:1?priority=1&weight=0.5 ,embedded,")
    assert hosts == (
        HostSpec("http://gpu1:11434", max_concurrent=4),
        HostSpec("http://cpu:1", priority=1, weight=0.5),
        HostSpec("embedded"),
    )
    assert [h.text for h in hosts] == [
        "http://gpu1:11434?max=4",
        "http://cpu:1?priority=1&weight=0.5",
        "embedded",
    ]
    assert parse_hosts(",".join(h.text for h in hosts)) == hosts  # text reads back


@pytest.mark.parametrize(
    "bad",
    ["a:1,a:1", "a:1?speed=2", "a:1?max", "a:1?max=0", "a:1?weight=-1", "a:1?priority=x"],
)
def test_bad_host_lists_name_the_variable(bad):
    with pytest.raises(SettingsError, match="OLLANG_OLLAMA_HOSTS"):
        Settings.from_env({"OLLANG_OLLAMA_HOSTS": bad})


@pytest.mark.parametrize(("text", "name"), [("auto", "auto"), (" Ollama ", "ollama")])
def test_backends(text, name):
    assert parse_backend(text) == name
    assert Settings.from_env({"OLLANG_BACKEND": text}).backend == name


def test_a_bad_backend_names_the_variable():
    with pytest.raises(SettingsError, match=r"^OLLANG_BACKEND must be one of auto, ollama"):
        Settings.from_env({"OLLANG_BACKEND": "gpu"})
    with pytest.raises(SettingsError, match=r"^--backend must be one of"):
        parse_backend("gpu", "--backend")


@pytest.mark.parametrize("name", ["OLLANG_CONNECT_TIMEOUT", "OLLANG_READ_TIMEOUT"])
@pytest.mark.parametrize("bad", ["soon", "0", "-1", "inf", "nan"])
def test_bad_seconds_name_the_variable(name, bad):
    with pytest.raises(SettingsError, match=rf"^{name} must be a"):
        Settings.from_env({name: bad})


def test_every_variable_of_the_core(tmp_path):
    settings = Settings.from_env(
        {
            "OLLAMA_HOST": "gpu0:1",
            "OLLANG_OLLAMA_HOSTS": "embedded,gpu1:2?max=3,gpu2:3",
            "OLLANG_MODEL": " qwen3 ",
            "OLLANG_BACKEND": "ollama",
            "OLLANG_HOME": str(tmp_path / "h"),
            "OLLANG_STORE_URL": "memory://",
            "OLLAMA_MODELS": str(tmp_path / "m"),
            "OLLANG_CONNECT_TIMEOUT": "1.5",
            "OLLANG_READ_TIMEOUT": "30",
            "OLLANG_DEBUG": "yes",
        }
    )
    assert settings == Settings(
        ollama_url="http://gpu1:2",  # the first Ollama host; OLLAMA_HOST is replaced
        hosts=(
            HostSpec("embedded"),
            HostSpec("http://gpu1:2", max_concurrent=3),
            HostSpec("http://gpu2:3"),
        ),
        model="qwen3",
        backend="ollama",
        home=tmp_path / "h",
        store_url="memory://",
        ollama_models=tmp_path / "m",
        connect_timeout=1.5,
        read_timeout=30.0,
        debug=True,
    )
    assert settings.ollama_hosts == settings.hosts[1:]
    assert settings.store_path == tmp_path / "h" / "sessions.db"


def test_defaults_of_the_core(tmp_path):
    settings = Settings.from_env({"XDG_DATA_HOME": str(tmp_path)})
    assert settings.hosts == (HostSpec(DEFAULT_OLLAMA_URL),)
    assert (settings.model, settings.default_model, settings.backend) == (None, "llama3", "auto")
    assert settings.home == tmp_path / "ollang"
    assert settings.store_url is None
    assert (settings.connect_timeout, settings.read_timeout, settings.debug) == (5.0, 120.0, False)
    blank = Settings.from_env({"OLLANG_MODEL": "  ", "OLLANG_STORE_URL": "", "OLLANG_BACKEND": ""})
    assert (blank.model, blank.store_url, blank.backend) == (None, None, "auto")


# -- the server's settings contain the core's ---------------------------------------------
def test_server_settings_see_the_cores_variables(monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", "gpu1:1")
    monkeypatch.setenv("OLLANG_BACKEND", "ollama")
    monkeypatch.setenv("OLLANG_MODEL", "qwen3")
    monkeypatch.setenv("OLLANG_STORE_URL", "memory://")
    monkeypatch.setenv("OLLANG_READ_TIMEOUT", "7")
    core = ServerSettings().core
    assert core == Settings.from_env()
    assert (core.ollama_url, core.backend, core.model, core.store_url, core.read_timeout) == (
        "http://gpu1:1",
        "ollama",
        "qwen3",
        "memory://",
        7.0,
    )


def test_an_ollang_server_variable_overrides_the_core(monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", "gpu1:1")
    monkeypatch.setenv("OLLANG_BACKEND", "auto")
    monkeypatch.setenv("OLLANG_MODEL", "qwen3")
    monkeypatch.setenv("OLLANG_STORE_URL", "memory://")
    monkeypatch.setenv("OLLANG_SERVER_OLLAMA_URL", "gpu2:2")
    monkeypatch.setenv("OLLANG_SERVER_BACKEND", "Embedded")
    monkeypatch.setenv("OLLANG_SERVER_DEFAULT_MODEL", "mistral")
    monkeypatch.setenv("OLLANG_SERVER_STORE_URL", "sqlite:///server.db")
    settings = ServerSettings()
    core = settings.core
    assert (core.ollama_url, core.hosts) == ("http://gpu2:2", (HostSpec("http://gpu2:2"),))
    assert (core.backend, core.model, core.store_url) == (
        "embedded",
        "mistral",
        "sqlite:///server.db",
    )
    assert settings.backend == "embedded"  # the override, read by the core's rule
    # Several hosts win over the one address.
    monkeypatch.setenv("OLLANG_SERVER_OLLAMA_HOSTS", "gpu3:3?max=2,gpu4:4")
    assert ServerSettings().core.hosts == (
        HostSpec("http://gpu3:3", max_concurrent=2),
        HostSpec("http://gpu4:4"),
    )
    assert ServerSettings().core.ollama_url == "http://gpu3:3"


def test_a_keyword_overrides_the_environment_and_the_core(monkeypatch):
    monkeypatch.setenv("OLLANG_MODEL", "qwen3")
    monkeypatch.setenv("OLLANG_SERVER_DEFAULT_MODEL", "mistral")
    monkeypatch.setenv("OLLANG_SERVER_PORT", "9000")
    settings = ServerSettings(default_model="llama3", ollama_hosts=["a:1", "b:2"], port=0)
    assert settings.core.model == "llama3"
    assert settings.port == 0
    assert [h.url for h in settings.core.hosts] == ["http://a:1", "http://b:2"]
    assert settings.ollama_hosts == ["http://a:1", "http://b:2"]  # normalised, as the core's


def test_given_core_settings_are_the_base(tmp_path):
    base = Settings(ollama_url="http://given:1", model="m", home=tmp_path, read_timeout=3.0)
    assert ServerSettings(core=base).core is base  # nothing to override
    settings = ServerSettings(core=base, backend="ollama")
    assert settings.core == dataclasses.replace(base, backend="ollama")


def test_the_readme_construction_still_works():
    settings = ServerSettings(api_keys=["secret"], allow_models=["llama3*"])
    assert settings.key_values() == ["secret"]
    assert settings.allow_models == ["llama3*"]
    assert "secret" not in repr(settings) and "secret" not in str(settings.model_dump())


def test_a_copy_applies_an_updated_override():
    settings = ServerSettings(backend="ollama", default_model="a")
    moved = settings.model_copy(update={"backend": "embedded"})
    assert (moved.core.backend, moved.core.model) == ("embedded", "a")
    assert settings.core.backend == "ollama"
    unset = settings.model_copy(update={"default_model": None})
    assert unset.core.model is None
    assert settings.model_copy(update={"host": "::1"}).core is settings.core


@pytest.mark.parametrize(
    ("name", "raw", "field", "value"),
    [
        ("OLLANG_SERVER_API_KEYS", "k1, k2", "api_keys", ["k1", "k2"]),
        ("OLLANG_SERVER_API_KEYS", '["k1","k2"]', "api_keys", ["k1", "k2"]),
        ("OLLANG_SERVER_ALLOW_MODELS", "llama3*,qwen*", "allow_models", ["llama3*", "qwen*"]),
        ("OLLANG_SERVER_CORS_ORIGINS", "", "cors_origins", []),
        ("OLLANG_SERVER_ALLOW_PULL", "Yes", "allow_pull", True),
        ("OLLANG_SERVER_PUBLIC_DOCS", "off", "public_docs", False),
        ("OLLANG_SERVER_PORT", "0", "port", 0),
        ("OLLANG_SERVER_MAX_MESSAGE_CHARS", "10", "max_message_chars", 10),
    ],
)
def test_server_values_from_the_environment(monkeypatch, name, raw, field, value):
    monkeypatch.setenv(name, raw)
    got = getattr(ServerSettings(), field)
    if field == "api_keys":
        got = [key.get_secret_value() for key in got]
    assert got == value


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("OLLANG_SERVER_PORT", "http"),
        ("OLLANG_SERVER_PORT", "70000"),
        ("OLLANG_SERVER_ALLOW_PULL", "maybe"),
        ("OLLANG_SERVER_BACKEND", "gpu"),
        ("OLLANG_SERVER_OLLAMA_URL", "ftp://x"),
        ("OLLANG_SERVER_OLLAMA_HOSTS", "a:1,a:1"),
        ("OLLANG_SERVER_OLLAMA_HOSTS", "a:1?speed=3"),
        ("OLLANG_SERVER_MAX_BODY_BYTES", "12"),
        ("OLLANG_SERVER_ALLOW_MODELS", "[not json"),
    ],
)
def test_a_bad_server_value_names_the_variable(monkeypatch, name, raw):
    monkeypatch.setenv(name, raw)
    field = name.removeprefix("OLLANG_SERVER_").lower()
    with pytest.raises(SettingsError, match=rf"^{name} \({field}=\)") as caught:
        ServerSettings()
    assert caught.value.exit_code == 2


def test_a_bad_keyword_names_the_variable_too():
    with pytest.raises(SettingsError, match=r"^OLLANG_SERVER_BACKEND \(backend=\) must be one of"):
        ServerSettings(backend="gpu")


def test_a_bad_api_key_is_never_shown():
    with pytest.raises(SettingsError, match="OLLANG_SERVER_API_KEYS") as caught:
        ServerSettings(api_keys=["ok", " leaked-secret "])
    assert "leaked-secret" not in str(caught.value)


def test_a_bad_core_variable_is_named_by_the_server_settings(monkeypatch):
    monkeypatch.setenv("OLLANG_BACKEND", "bogus")
    with pytest.raises(SettingsError, match=r"^OLLANG_BACKEND must be one of"):
        ServerSettings()
    # ... unless the server's own value replaces it: the core is still read whole.
    with pytest.raises(SettingsError, match=r"^OLLANG_BACKEND"):
        ServerSettings(backend="ollama")


def test_the_settings_travel_pickled_to_worker_processes(monkeypatch):
    """``serve --workers``: uvicorn pickles its Config (with these settings) for each
    spawned worker; the worker must get the same core and keys, not re-read anything."""
    from ollang.server.app import create_app
    from ollang.server.workers import ServeConfig

    monkeypatch.setenv("OLLAMA_HOST", "gpu1:1")
    settings = ServerSettings(api_keys=["k"], allow_models=["llama3*"], backend="ollama")
    config = pickle.loads(pickle.dumps(ServeConfig(settings, workers=2)))
    monkeypatch.setenv("OLLAMA_HOST", "elsewhere:2")  # what a worker's environment says
    factory = config.load_app()
    assert factory.func is create_app and factory.keywords == {"freeze_gc": True}
    carried = factory.args[0]
    assert carried.core == settings.core and carried.core.ollama_url == "http://gpu1:1"
    assert carried.key_values() == ["k"] and carried.allow_models == ["llama3*"]
    assert config.workers == 2 and config.factory


def test_a_worker_unpickles_its_settings_without_importing_the_app():
    """A spawned worker answers uvicorn's health check only once its Config is unpickled:
    that must not wait for FastAPI and LangChain (seconds), or uvicorn kills the worker."""
    from ollang.server.workers import ServeConfig

    data = pickle.dumps(ServeConfig(ServerSettings(api_keys=["k"]), workers=2))
    code = (
        "import pickle, sys; config = pickle.loads(sys.stdin.buffer.read()); "
        "assert config.server_settings.key_values() == ['k']; "
        "print(sorted(m for m in ('fastapi', 'langchain_core', 'ollang.server.app') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=data, capture_output=True, timeout=60, check=True
    )
    assert out.stdout.decode().strip() == "[]", out.stderr.decode()


def test_serve_with_workers_leaves_the_environment_alone(monkeypatch):
    """The settings go to the workers inside uvicorn's Config, not through ``os.environ``."""
    from ollang.server import app, workers

    started = []
    monkeypatch.setattr(app, "_check_address", lambda host, port: None)  # no sockets here
    monkeypatch.setattr(workers, "run_workers", started.append)
    before = dict(os.environ)
    app.serve(ServerSettings(api_keys=["k"], allow_models=["x*"], port=0), workers=2)
    assert dict(os.environ) == before
    (config,) = started
    assert config.workers == 2
    assert config.server_settings.key_values() == ["k"]
    assert config.server_settings.allow_models == ["x*"]


# -- the CLI's settings travel in the typer context ----------------------------------------
def test_cli_settings_apply_ollama_host_over_the_environment(monkeypatch):
    from ollang.commands.common import CliSettings

    monkeypatch.setenv("OLLAMA_HOST", "env:1")
    state = CliSettings()
    assert state.settings.ollama_url == "http://env:1"
    state.use_hosts(["a:1?max=2", "b:2"])
    assert [h.url for h in state.settings.hosts] == ["http://a:1", "http://b:2"]
    assert state.settings.ollama_url == "http://a:1"
    state.use_hosts(["c:3"])  # a command's own option applies over the root's
    assert state.settings.hosts == (HostSpec("http://c:3"),)
    with pytest.raises(InvalidInputError, match="--ollama-host"):
        state.use_hosts(["c:3", "c:3"])


def test_the_cli_keeps_no_settings_in_module_globals():
    import ollang.cli
    import ollang.commands.common as common
    from ollang.commands.common import CliSettings

    for module in (common, ollang.cli):
        held = [
            name
            for name, value in vars(module).items()
            if isinstance(value, Settings | CliSettings)
        ]
        assert held == [], held
        assert "global " not in inspect.getsource(module)


# -- the fields are documented, one entry each (tools/docs_gen.py reads them) --------------
def test_every_server_field_has_a_description():
    for name, field in ServerSettings.model_fields.items():
        assert field.description, name
    assert set(CORE_OVERRIDES) <= set(ServerSettings.model_fields)
    assert set(CORE_OVERRIDES.values()) <= {f.name for f in dataclasses.fields(Settings)}


def test_the_core_docstring_has_one_attribute_entry_per_field():
    doc = inspect.getdoc(Settings) or ""
    section = doc.split("Attributes:", 1)[1]
    entries = re.findall(r"^    (\w+): ", section, flags=re.MULTILINE)
    assert entries == [f.name for f in dataclasses.fields(Settings)]


def test_dead_settings_are_gone():
    for dead in ("chain_cache_size", "models_cache_seconds"):
        assert dead not in ServerSettings.model_fields
    from ollang.transport.wire import OllamaWire

    assert "max_connections" not in inspect.signature(OllamaWire).parameters


def test_home_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("OLLANG_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert Settings.from_env().home == tmp_path / "ollang"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert Settings.from_env().home == Path.home() / ".local" / "share" / "ollang"


# -- host kinds (issue 23): openai+ engines beside Ollama --------------------------------
def test_openai_hosts_are_read_with_their_key_and_context():
    hosts = parse_hosts(
        "gpu1:11434,openai+http://gpu2:8000/v1?max=8&key=sk%2Fa%26b&ctx=32768,"
        "openai+https://api.example.com/v1/?priority=1"
    )
    assert hosts == (
        HostSpec("http://gpu1:11434"),
        HostSpec(
            "http://gpu2:8000/v1", max_concurrent=8, kind="openai", key="sk/a&b", context=32768
        ),
        HostSpec("https://api.example.com/v1", priority=1, kind="openai"),
    )
    assert parse_hosts(",".join(h.text for h in hosts)) == hosts  # the key travels encoded
    assert hosts[1].shown == "openai+http://gpu2:8000/v1?max=8&key=***&ctx=32768"
    assert "sk/a" not in repr(hosts[1])
    assert [h.kind for h in parse_hosts("a:1,embedded")] == ["ollama", "embedded"]


def test_only_ollama_hosts_set_the_ollama_url():
    settings = Settings.from_env(
        {"OLLANG_OLLAMA_HOSTS": "openai+http://gpu2:8000/v1,gpu1:11434", "OLLAMA_HOST": "x:1"}
    )
    assert settings.ollama_url == "http://gpu1:11434"
    assert [h.url for h in settings.ollama_hosts] == ["http://gpu1:11434"]
    assert len(settings.remote_hosts) == 2
    alone = Settings.from_env({"OLLANG_OLLAMA_HOSTS": "openai+http://gpu2:8000/v1"})
    assert alone.ollama_url == DEFAULT_OLLAMA_URL and alone.ollama_hosts == ()


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        ("foo+http://gpu2:8000", r"unknown host kind 'foo' in 'foo\+http://gpu2:8000'"),
        ("openai+gpu2:8000", "needs an http:// or https:// URL"),
        ("openai+ftp://gpu2/v1", "needs an http:// or https:// URL"),
        ("openai+http://gpu2:x/v1", "invalid port"),
        ("openai+http://g/v1?ctx=0", "ctx must be"),
        ("openai+http://g/v1?ctx=big", "not a number"),
        ("gpu1:1?key=sk-secret", r"unknown host option 'key=\*\*\*'"),
        ("gpu1:1?ctx=4096", "unknown host option 'ctx=4096'"),
        (
            "openai+http://g/v1?key=sk-secret&speed=2",
            r"'speed=2' in 'openai\+http://g/v1\?key=\*\*\*&speed=2'",
        ),
        ("openai+http://g/v1?key=sk-secret,openai+http://g/v1", "names a host twice"),
    ],
)
def test_bad_host_kinds_name_the_entry_and_never_the_key(bad, said):
    with pytest.raises(SettingsError, match=said) as caught:
        Settings.from_env({"OLLANG_OLLAMA_HOSTS": bad})
    assert "OLLANG_OLLAMA_HOSTS" in str(caught.value)
    assert "sk-secret" not in str(caught.value)


def test_the_server_settings_never_show_a_hosts_key():
    settings = ServerSettings(ollama_hosts=["openai+http://g:1/v1?key=sk-secret"])
    assert settings.core.hosts[0].key == "sk-secret"
    assert "sk-secret" not in repr(settings) and "sk-secret" not in str(settings)
