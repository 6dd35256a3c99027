"""A real nginx on loopback balancing ``ollang serve`` replicas round-robin (tests, bench).

The configuration is the one README's "PostgreSQL and replicas" section shows, plus
test-only paths (everything under one temporary directory) and an ``X-Upstream``
response header naming the replica that answered, so a test can tell which one
streams a reply before it ends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from tests.net import free_port

__all__ = ["Nginx", "nginx_binary"]


def nginx_binary() -> str | None:
    """The nginx executable (Debian's ``/usr/sbin/nginx``), or ``None``."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


# The part that matters (README shows it): streaming passes straight through
# (no buffering), keep-alive to the replicas, and a replica that cannot be reached
# is skipped, even for a POST, since nothing was sent to it.
_CONFIG = """
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
{user}
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    log_format replicas '$request_method $uri $status $upstream_addr';
    access_log {root}/access.log replicas;

    upstream ollang {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 2m;
        location / {{
            proxy_pass http://ollang;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 300s;
            proxy_next_upstream error timeout;
            add_header X-Upstream $upstream_addr always;
        }}
    }}
}}
"""


class Nginx:
    """nginx in front of ``upstreams`` (``host:port`` strings), on a free loopback port."""

    def __init__(self, upstreams: Sequence[str]) -> None:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (apt-get install nginx)")
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="ollang-nginx-"))
        os.chmod(self.root, 0o777)  # workers (another user, when root) write temp files here
        self.port = free_port()
        servers = "\n".join(f"        server {u} max_fails=1 fail_timeout=10s;" for u in upstreams)
        user = "user root;" if os.geteuid() == 0 else ""
        (self.root / "nginx.conf").write_text(
            _CONFIG.format(root=self.root, port=self.port, servers=servers, user=user)
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        conf = str(self.root / "nginx.conf")
        self.proc = subprocess.Popen(
            [self.binary, "-c", conf, "-p", str(self.root), "-e", str(self.root / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(self.url + "/health", timeout=1)
                return self
            except httpx.TransportError as err:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start: {self.error_log()}") from err
                time.sleep(0.05)

    def access_log(self) -> list[list[str]]:
        """Access log lines as ``[method, path, status, upstream]``."""
        path = self.root / "access.log"
        return [line.split() for line in path.read_text().splitlines()] if path.exists() else []

    def error_log(self) -> str:
        path = self.root / "error.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
