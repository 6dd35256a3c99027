"""The package's shape: one import name, layers that import one way, no generic names.

Everything here runs real processes: pip builds the wheel, a fresh interpreter imports
modules and reports what else got imported, and the CLI runs from a folder full of
modules with the generic names ollang used to install.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.cli_process import ROOT

PACKAGE = ROOT / "ollang"
GENERIC = ("chains", "memory", "server", "ollang_cli", "cli", "errors")


def _modules(package: str) -> list[str]:
    """Every module of ``package`` (e.g. ``ollang.memory``), from the files of the tree."""
    base = PACKAGE.joinpath(*package.split(".")[1:])
    names = []
    for path in sorted(base.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        names.append(".".join(["ollang", *parts]))
    return names


#: Loaded before forking, so each module's child only imports ollang's own code
#: (what is checked); the third-party libraries cost seconds per fresh interpreter.
_PRELOAD = ("pydantic", "langchain_core.messages", "psycopg", "psycopg_pool", "sqlite3", "orjson")


def _imported_by_each(modules: list[str]) -> dict[str, list[str]]:
    """For each module, the ``ollang.*`` modules loaded after ``import module`` in an
    interpreter that had loaded none of ollang: one interpreter, forked per module."""
    code = f"""
import importlib, json, os, sys
for name in {_PRELOAD!r}:
    try:
        importlib.import_module(name)
    except ImportError:
        pass
assert not [m for m in sys.modules if m == "ollang" or m.startswith("ollang.")]
found = {{}}
for module in {modules!r}:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        importlib.import_module(module)
        loaded = sorted(m for m in sys.modules if m == "ollang" or m.startswith("ollang."))
        os.write(write, json.dumps(loaded).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert status == 0 and data, (module, status)
    found[module] = json.loads(data)
print(json.dumps(found))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=120
    )
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """This repository cloned as Windows clones it by default: ``core.symlinks=false``
    (each symlink checked out as a small text file holding its target)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (an sdist): nothing to clone")
    where = tmp_path_factory.mktemp("clone") / "ollang"
    cloned = subprocess.run(
        ["git", "clone", "-q", "--no-local", "-c", "core.symlinks=false", str(ROOT), str(where)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cloned.returncode == 0, cloned.stderr
    assert not (where / "chains").is_symlink()  # the design card's links are plain files here
    return where


def _build(kind: str, source: Path, out: Path) -> Path:
    """Build a wheel or an sdist of ``source`` with this environment's setuptools."""
    code = f"import sys; from setuptools import build_meta as b; print(b.build_{kind}(sys.argv[1]))"
    built = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    return out / built.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def wheel(clone, tmp_path_factory) -> Path:
    return _build("wheel", clone, tmp_path_factory.mktemp("wheel"))


def test_a_clone_without_symlinks_builds_a_wheel_with_every_module(clone, wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    sources = {
        path.relative_to(clone).as_posix()
        for path in (clone / "ollang").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert sources - names == set(), "missing from the wheel"
    assert any(n.endswith(".py") for n in sources) and len(sources) > 80
    # nothing is a link's text standing in for a module
    with zipfile.ZipFile(wheel) as archive:
        assert all(archive.getinfo(n).file_size > 20 for n in names if n.endswith("cli.py"))


def test_the_sdist_ships_no_tests_and_a_buildable_package(clone, tmp_path):
    import tarfile

    sdist = _build("sdist", clone, tmp_path)
    with tarfile.open(sdist) as archive:
        names = [m.name.split("/", 1)[1] for m in archive.getmembers() if "/" in m.name]
    assert not [n for n in names if n.startswith(("tests/", "bench/"))], "tests without fixtures"
    assert "ollang/server/static/index.html" in names and "ollang/chains/chat.py" in names
    assert "pyproject.toml" in names and "README.md" in names


def test_the_wheel_installs_one_top_level_name(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/", 1)[0] for name in names}
    dist_info = {t for t in top if t.endswith(".dist-info")}
    assert top - dist_info == {"ollang"}, sorted(top)
    assert len(dist_info) == 1
    # The package is whole: the modules behind the symlinks, the page, the type marker.
    for required in (
        "ollang/__init__.py",
        "ollang/__main__.py",
        "ollang/cli.py",
        "ollang/py.typed",
        "ollang/chains/chat.py",
        "ollang/memory/sqlite/store.py",
        "ollang/transport/wire.py",
        "ollang/routing/router.py",
        "ollang/turns/lifecycle.py",
        "ollang/server/app.py",
        "ollang/server/static/index.html",
        "ollang/commands/repl.py",
    ):
        assert required in names, required
    assert not any(name.startswith(("ollang/tests/", "ollang/bench/")) for name in names)
    with zipfile.ZipFile(wheel) as archive:
        entry_points = archive.read(f"{dist_info.pop()}/entry_points.txt").decode()
    assert "ollang = ollang.cli:main" in entry_points


HOSTILE = textwrap.dedent(
    """\
    raise ImportError("an app module named {name} was imported by ollang")
    """
)

APP = textwrap.dedent(
    """\
    from ollang.chains import FakeChatModel, build_chat_chain
    from ollang.memory import open_store

    store = open_store("memory://")
    chain = build_chat_chain(FakeChatModel(replies=["fine, thanks"]), store=store)
    reply = chain.invoke("how are you?", {"configurable": {"session_id": "app"}})
    assert reply == "fine, thanks", reply
    assert [m.content for m in store.get_messages("app")] == ["how are you?", "fine, thanks"]
    print("app ok")
    """
)


@pytest.fixture
def hostile_app(tmp_path) -> Path:
    """An application folder whose own modules have the names ollang used to install."""
    app = tmp_path / "app"
    (app / "server").mkdir(parents=True)
    for name in ("memory", "chains", "cli", "errors", "settings"):
        (app / f"{name}.py").write_text(HOSTILE.format(name=name))
    (app / "server" / "__init__.py").write_text(HOSTILE.format(name="server"))
    (app / "app.py").write_text(APP)
    return app


def test_an_app_with_generic_module_names_runs_a_chat_turn(hostile_app):
    out = subprocess.run(
        [sys.executable, "app.py"], cwd=hostile_app, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "app ok"


@pytest.mark.parametrize(
    "command",
    [[sys.executable, "-m", "ollang"], [str(Path(sys.executable).with_name("ollang"))]],
    ids=["python -m ollang", "ollang"],
)
def test_the_cli_runs_from_an_app_folder_with_generic_names(hostile_app, command):
    out = subprocess.run(
        [*command, "--help"], cwd=hostile_app, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "Usage: ollang" in out.stdout and "sessions" in out.stdout
    version = subprocess.run(
        [*command, "--version"], cwd=hostile_app, capture_output=True, text=True, timeout=60
    )
    from ollang import __version__

    assert version.stdout.strip() == f"ollang {__version__}"
    assert __version__ != "0+unknown"  # read from the installed distribution's metadata


def test_memory_imports_no_chain_server_or_cli_module():
    # Loaded for real, each in an interpreter without ollang (tests/unit/test_layers.py reads every
    # layer's imports from the source; this checks what importing actually pulls in).
    upper = (
        "ollang.turns",
        "ollang.transport",
        "ollang.embedded",
        "ollang.routing",
        "ollang.chains",
        "ollang.server",
        "ollang.cli",
        "ollang.commands",
    )
    for module, loaded in _imported_by_each(_modules("ollang.memory")).items():
        assert module in loaded
        above = [m for m in loaded if m.startswith(upper)]
        assert not above, f"{module} imports {above}"


def test_the_leaves_use_the_standard_library_only():
    for leaf in ("ollang.errors", "ollang.settings", "ollang._lazy", "ollang.iterators"):
        code = (
            "import sys; before = set(sys.modules); "
            f"import {leaf}; "
            "new = sorted(m.split('.')[0] for m in set(sys.modules) - before); "
            "print(' '.join(sorted(set(new))))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=60
        )
        assert out.returncode == 0, out.stderr
        outside = [
            name
            for name in out.stdout.split()
            if name != "ollang" and name not in sys.stdlib_module_names
        ]
        assert not outside, f"{leaf} imports {outside}"


def test_no_source_file_imports_a_generic_top_level_name():
    offenders = []
    for path in [*ROOT.glob("*.py"), *ROOT.glob("[!.]*/**/*.py")]:
        inside = path.relative_to(ROOT).parts
        if any(p.startswith(".") or p in ("build", "site-packages") for p in inside):
            continue  # virtualenvs (.venv, bench/.venv-litellm), build output
        if path.is_symlink():
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno} {name}"
                for name in names
                if name.split(".")[0] in GENERIC
            ]
    assert not offenders, offenders


def test_ollang_serve_honours_ollang_backend(tmp_path, monkeypatch):
    """OLLANG_BACKEND means the same thing to the server as to the CLI (it used to be
    ignored by ``ollang serve``, which only read OLLANG_SERVER_BACKEND)."""
    from ollang.server.context import ServerContext
    from ollang.server.settings import ServerSettings
    from tests.net import free_port

    dead = f"127.0.0.1:{free_port()}"
    monkeypatch.delenv("OLLANG_SERVER_BACKEND", raising=False)
    monkeypatch.setenv("OLLAMA_HOST", dead)
    monkeypatch.setenv("OLLANG_BACKEND", "ollama")
    ctx = ServerContext(ServerSettings(store_url="memory://"))
    try:
        # `auto` would have added the embedded backend as a host.
        assert [h.name for h in ctx.router.hosts] == [f"http://{dead}"]
        assert ctx.ollama_url == f"http://{dead}"
    finally:
        ctx.close()
    from ollang.errors import SettingsError

    monkeypatch.setenv("OLLANG_BACKEND", "bogus")  # read by the same rule: refused, named

    with pytest.raises(SettingsError, match="OLLANG_BACKEND"):
        ServerContext(ServerSettings(store_url="memory://"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
    ],
)
def test_booleans_read_the_same_in_the_cli_and_the_server(value, expected, monkeypatch):
    from ollang.server.settings import ServerSettings
    from ollang.settings import Settings

    monkeypatch.setenv("OLLANG_DEBUG", value)
    monkeypatch.setenv("OLLANG_SERVER_ALLOW_PULL", value)
    assert Settings.from_env().debug is expected
    assert ServerSettings().allow_pull is expected


def test_an_unreadable_boolean_is_an_error_not_off(monkeypatch, tmp_path):
    from tests.cli_process import cli

    env = {"PATH": "/usr/bin:/bin", "OLLANG_HOME": str(tmp_path), "OLLANG_DEBUG": "maybe"}
    out = cli("sessions", env=env)
    assert out.returncode == 2
    assert "OLLANG_DEBUG must be a boolean" in out.stderr.decode()
    assert "Traceback" not in out.stderr.decode()
