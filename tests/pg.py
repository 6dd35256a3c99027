"""A PostgreSQL server for the tests: the one CI started, or a throwaway cluster of our own.

Where the server comes from, in order:

1. ``OLLANG_TEST_POSTGRES_URL`` (``.ci/run`` starts a cluster and exports it): used as is.
2. Else a throwaway cluster started here with Debian's (or any) PostgreSQL binaries
   (``initdb``/``pg_ctl`` from ``OLLANG_TEST_POSTGRES_BIN``, ``pg_config --bindir``,
   ``/usr/lib/postgresql/*/bin`` or ``PATH``) on a free loopback port, with password
   authentication and no fsync (it is thrown away), stopped when the
   test run ends. As root it runs as the ``postgres`` user (``initdb`` refuses root).
3. Else every PostgreSQL test is skipped with the one reason :func:`server` gives.

Each test gets a schema of its own (``?schema=t_...`` in the URL, dropped afterwards), so
tests never see each other's sessions and a server is started once per run. Tests that
stop or restart PostgreSQL get a cluster of their own (:func:`start_cluster`), never the
shared one.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests.net import free_port

__all__ = ["Cluster", "PgServer", "fresh_schema_url", "server", "start_cluster"]

ENV_URL = "OLLANG_TEST_POSTGRES_URL"
ENV_BIN = "OLLANG_TEST_POSTGRES_BIN"


@dataclass
class PgServer:
    """A reachable PostgreSQL server: ``url`` has a user with a password and a database."""

    url: str
    password: str


@dataclass
class Cluster:
    """A throwaway PostgreSQL cluster this process started; it can stop and start it."""

    bindir: Path
    datadir: Path
    port: int
    password: str
    run_as: str | None  # the user pg_ctl runs as (None: this user)
    log: Path
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"postgresql://ollang:{self.password}@127.0.0.1:{self.port}/ollang_test"

    def _ctl(self, *args: str) -> None:
        cmd = [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.log), *args]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._ctl("-w", "-t", "30", "start")
        self._stopped = False

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate``: like a crash; ``fast``: clean)."""
        if not self._stopped:
            self._ctl("-w", "-m", mode, "stop")
            self._stopped = True

    def destroy(self) -> None:
        """Stop the server and delete its files."""
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.datadir.parent, ignore_errors=True)


def _bindir() -> Path | None:
    candidates: list[str] = []
    if os.environ.get(ENV_BIN):
        candidates.append(os.environ[ENV_BIN])
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10)
        candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    which = shutil.which("initdb")
    if which:
        candidates.append(str(Path(which).parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").is_file():
            return Path(candidate)
    return None


def start_cluster() -> Cluster:
    """Start a new throwaway cluster; raises ``RuntimeError`` saying why it cannot.

    The database ``ollang_test`` is owned by the role ``ollang``, which logs in with a
    random password over TCP (scram-sha-256), as a real deployment would.
    """
    bindir = _bindir()
    if bindir is None:
        raise RuntimeError(
            f"no PostgreSQL binaries (initdb) found; install Debian's postgresql or set {ENV_BIN}"
        )
    run_as: str | None = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError as err:
            raise RuntimeError(
                "running as root and there is no postgres user to run initdb"
            ) from err
        run_as = "postgres"
    root = Path(tempfile.mkdtemp(prefix="ollang-pg-"))
    datadir, log, pwfile = root / "data", root / "server.log", root / "pw"
    password = "pw-" + secrets.token_hex(8)
    pwfile.write_text(password + "\n")
    if run_as:
        info = pwd.getpwnam(run_as)
        for path in (root, pwfile):
            os.chown(path, info.pw_uid, info.pw_gid)
    prefix = ["runuser", "-u", run_as, "--"] if run_as else []
    initdb = [
        *prefix,
        str(bindir / "initdb"),
        "-D",
        str(datadir),
        "-U",
        "postgres",
        "--pwfile",
        str(pwfile),
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        "-E",
        "UTF8",
        "--locale=C.UTF-8",
        "--no-sync",
    ]
    try:
        subprocess.run(initdb, check=True, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as err:
        shutil.rmtree(root, ignore_errors=True)
        detail = getattr(err, "stderr", b"") or b""
        raise RuntimeError(
            f"initdb failed: {err} {detail.decode(errors='replace')[-300:]}"
        ) from err
    port = free_port()
    with (datadir / "postgresql.conf").open("a") as conf:
        conf.write(
            f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{root}'\n"
            # No fsync (a crash of the machine loses the throwaway cluster anyway), but
            # commits are written to the WAL before they return, so a crash of the
            # server (`pg_ctl stop -m immediate`) loses nothing, as in production.
            "fsync = off\nfull_page_writes = off\n"
            "max_connections = 200\nshared_buffers = 64MB\n"
        )
    cluster = Cluster(bindir, datadir, port, password, run_as, log)
    try:
        cluster.start()
        admin = f"host={root} port={port} user=postgres dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE ollang LOGIN PASSWORD '{password}'")
            conn.execute("CREATE DATABASE ollang_test OWNER ollang")
    except Exception as err:
        tail = log.read_text(errors="replace")[-300:] if log.exists() else ""
        cluster.destroy()
        raise RuntimeError(f"the throwaway PostgreSQL did not start: {err} {tail}") from err
    return cluster


_SERVER: PgServer | None = None
_REASON: str | None = None


def server() -> PgServer:
    """The run's PostgreSQL server (started on first use); ``RuntimeError`` with the one
    reason why there is none."""
    global _SERVER, _REASON
    if _SERVER is not None:
        return _SERVER
    if _REASON is not None:
        raise RuntimeError(_REASON)
    url = os.environ.get(ENV_URL)
    if url:
        password = psycopg.conninfo.conninfo_to_dict(url).get("password") or ""
        try:
            with psycopg.connect(url, connect_timeout=5):
                pass
        except psycopg.Error as err:
            _REASON = f"{ENV_URL} is set but PostgreSQL there does not answer: {err}"
            raise RuntimeError(_REASON) from err
        _SERVER = PgServer(url, str(password))
        return _SERVER
    try:
        cluster = start_cluster()
    except RuntimeError as err:
        _REASON = f"no PostgreSQL server: {ENV_URL} is unset and {err}"
        raise RuntimeError(_REASON) from err
    atexit.register(cluster.destroy)
    _SERVER = PgServer(cluster.url, cluster.password)
    return _SERVER


def with_params(url: str, **params: str) -> str:
    """``url`` with query parameters added."""
    sep = "&" if "?" in url else "?"
    return url + sep + "&".join(f"{key}={value}" for key, value in params.items())


@contextlib.contextmanager
def fresh_schema_url(base: str | None = None) -> Iterator[str]:
    """A store URL on the test server with a new, empty schema, dropped afterwards."""
    base = base or server().url
    schema = "t_" + uuid.uuid4().hex[:12]
    try:
        yield with_params(base, schema=schema)
    finally:
        with contextlib.suppress(psycopg.Error), psycopg.connect(base, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '10s'")  # a store left open must not hang the run
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def wait_until_down(url: str, timeout: float = 10.0) -> None:
    """Wait until nothing answers at ``url`` (after a stop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            psycopg.connect(url, connect_timeout=1).close()
        except psycopg.OperationalError:
            return
        time.sleep(0.05)
    raise AssertionError(f"PostgreSQL still answers at {url}")


def serve_env(store_url: str, ollama_host: str, home: Path) -> dict[str, str]:
    """The environment of an ``ollang serve`` (or CLI) subprocess on ``store_url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLANG_")}
    env.update(
        OLLANG_HOME=str(home),
        OLLAMA_HOST=ollama_host,
        OLLANG_SERVER_STORE_URL=store_url,
        OLLANG_SERVER_BACKEND="ollama",
    )
    return env


def start_serve(
    store_url: str, ollama_host: str, home: Path, *args: str, port: int | None = None
) -> tuple[subprocess.Popen, int]:
    """``ollang serve`` on ``store_url`` as a subprocess, once ``/health`` answers.

    stdout (the access log) and stderr go to ``home/serve-PORT.log`` (read it with
    :func:`serve_log`), so a long run never blocks on a full pipe.
    """
    import httpx

    from tests.cli_process import OLLANG, ROOT

    port = port or free_port()
    home.mkdir(parents=True, exist_ok=True)
    log = (home / f"serve-{port}.log").open("ab")
    proc = subprocess.Popen(
        [*OLLANG, "serve", "--port", str(port), *args],
        cwd=ROOT,
        env=serve_env(store_url, ollama_host, home),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc, port
        except httpx.TransportError as err:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(
                    "serve did not start: " + serve_log(home, port)[-2000:]
                ) from err
            time.sleep(0.1)


def serve_log(home: Path, port: int) -> str:
    """What an ``ollang serve`` started by :func:`start_serve` printed so far."""
    path = home / f"serve-{port}.log"
    return path.read_text(errors="replace") if path.exists() else ""
