"""Issue 26 over real sockets: no web page of another site drives the server, and one
reading of the API key everywhere.

The real server (``LiveServer``, or ``ollang serve`` as a subprocess for ``--host 0.0.0.0``)
in front of the Ollama-protocol test server; httpx sends the headers a browser would
(``Host``, ``Origin``, ``Sec-Fetch-Site``), and one test drives real headless Chromium
(Debian's, through Playwright, as tests/integration/test_page.py): a page on another site
posts to the server by ``fetch`` and by forms, and reads it by DNS rebinding; nothing
reaches the model or the store, while the server's own page still chats. The decision
itself is unit-tested in tests/unit/test_auth_header.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from ollang.memory import ChatStore
from ollang.server import ServerSettings
from ollang.server.testing import LiveServer
from tests.cli_process import OLLANG, ROOT
from tests.fake_ollama import FakeOllama, ModelInfo
from tests.net import free_port

EVIL = "https://evil.example"
APP = "https://app.example"  # a web app the server is told to allow (--cors-origin)
KEY = "sk-ollang-security-0123456789"
ALLOWED = "chat.example.test"


def settings(tmp_path, fake_url: str, **extra) -> ServerSettings:
    return ServerSettings(
        store_url=f"sqlite:///{tmp_path / 'sessions.db'}",
        ollama_url=fake_url,
        backend="ollama",
        default_model="llama3",
        **extra,
    )


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(models=[ModelInfo("llama3:latest")], token_delay=0.0) as srv:
        yield srv


@pytest.fixture(scope="module")
def live(fake, tmp_path_factory) -> Iterator[LiveServer]:
    path = tmp_path_factory.mktemp("security")
    with LiveServer(
        settings(path, fake.url, allowed_hosts=[ALLOWED], cors_origins=[APP])
    ) as server:
        yield server


@pytest.fixture(scope="module")
def keyed(fake, tmp_path_factory) -> Iterator[LiveServer]:
    path = tmp_path_factory.mktemp("security-keyed")
    with LiveServer(settings(path, fake.url, api_keys=[KEY])) as server:
        yield server


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """One client for the module (a new one per request costs a TLS context each)."""
    with httpx.Client(timeout=10) as client:
        yield client


def port_of(server: LiveServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def stored_texts(store: ChatStore) -> list[str]:
    return [
        str(message.content)
        for info in store.list_sessions()
        for message in store.get_messages(info.id)
    ]


def model_texts(fake: FakeOllama) -> list[str]:
    return [str(m.get("content")) for body in fake.chat_requests() for m in body["messages"]]


def assert_nothing_reached(live: LiveServer, fake: FakeOllama, marker: str) -> None:
    assert not [t for t in stored_texts(live.store) if marker in t], "stored"
    assert not [t for t in model_texts(fake) if marker in t], "sent to the model"


def assert_forbidden(response: httpx.Response, path: str, *words: str) -> None:
    """A 403 in the path's dialect: OpenAI's under /v1, Ollama's under /api, else ollang's."""
    assert response.status_code == 403, (path, response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    if path.startswith("/v1/"):
        error = body["error"]
        assert error["type"] == "permission_error" and error["hint"]
        message = error["message"]
    else:
        assert isinstance(body["error"], str) and body["hint"]
        message = body["error"]
    for word in words:
        assert word in message + str(body), (word, body)
    assert "access-control-allow-origin" not in response.headers
    assert "Traceback" not in response.text


#: (method, path, JSON body) on each kind of route: ollang's, OpenAI's and Ollama's.
ROUTES = [
    ("GET", "/sessions", None),
    ("POST", "/chat", {"message": "MARKER"}),
    ("GET", "/v1/models", None),
    ("POST", "/v1/chat/completions", {"model": "llama3", "messages": []}),
    ("GET", "/api/tags", None),
    ("POST", "/api/chat", {"model": "llama3", "messages": []}),
    ("GET", "/health", None),  # decided: every route, /health included (as Ollama)
    ("GET", "/", None),
]


def with_marker(body: dict | None, marker: str) -> dict | None:
    if body is None:
        return None
    if "messages" in body:
        return {**body, "messages": [{"role": "user", "content": marker}]}
    return {**body, "message": marker}


# -- Host ------------------------------------------------------------------------------------
@pytest.mark.reliability("Security", "a foreign Host (DNS rebinding) is 403 on every route")
@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "localhost.evil.example"])
def test_a_foreign_host_is_refused_everywhere(live, fake, host, http):
    host = host.format(port=port_of(live))
    for method, path, body in ROUTES:
        marker = f"host-{path}-{host}"
        r = http.request(
            method,
            live.url + path,
            json=with_marker(body, marker),
            headers={"Host": host},
            timeout=10,
        )
        assert_forbidden(r, path, "host name", "evil.example")
        assert "OLLANG_SERVER_ALLOWED_HOSTS" in r.text
        assert_nothing_reached(live, fake, marker)


@pytest.mark.reliability("Security", "localhost, addresses and listed host names are served")
def test_own_names_and_listed_hosts_are_served(live, http):
    port = port_of(live)
    for host in (
        f"127.0.0.1:{port}",
        f"localhost:{port}",
        f"LocalHost:{port}",
        f"{ALLOWED}:{port}",
        ALLOWED.upper(),
        f"{socket.gethostname()}:{port}",
        f"192.0.2.7:{port}",  # an address (a proxy's, a port forward's): cannot be rebound
    ):
        for method, path, _body in ROUTES:
            if method != "GET":
                continue
            r = http.get(live.url + path, headers={"Host": host}, timeout=10)
            assert r.status_code == 200, (host, path, r.text)


def serve(tmp_path, ollama_host: str, *args: str, **variables: str):
    """``ollang serve --port P ARGS`` as a subprocess with these OLLANG_* ``variables``
    (and none of the suite's), once ``/health`` answers on 127.0.0.1: (process, P)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLANG_")}
    env.update(variables, OLLANG_HOME=str(tmp_path / "home"), OLLAMA_HOST=ollama_host)
    proc = subprocess.Popen(
        [*OLLANG, "serve", "--port", str(port), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc, port
        except httpx.TransportError:
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)


@pytest.mark.reliability("Security", "--host 0.0.0.0: addresses, the machine's name, listed names")
def test_all_interfaces_answer_addresses_the_machines_name_and_listed_names(tmp_path, fake, http):
    # Decided: binding every interface does not lift the Host check (without keys, DNS
    # rebinding would let any web page read the server, not only the LAN).
    proc, port = serve(tmp_path, fake.url, "--host", "0.0.0.0", OLLANG_SERVER_ALLOWED_HOSTS=ALLOWED)
    try:
        base = f"http://127.0.0.1:{port}"
        addresses = {
            info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        }
        hosts = [f"{address}:{port}" for address in addresses | {"10.1.2.3"}]
        hosts += [f"[fe80::1]:{port}", socket.gethostname(), f"{ALLOWED}:{port}"]
        for host in hosts:
            r = http.get(f"{base}/sessions", headers={"Host": host}, timeout=10)
            assert r.status_code == 200, (host, r.text)
        r = http.get(f"{base}/sessions", headers={"Host": f"evil.example:{port}"}, timeout=10)
        assert_forbidden(r, "/sessions", "evil.example")
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=20)
    # the refusal is logged once, saying what to do
    assert "evil.example" in err.decode() and "OLLANG_SERVER_ALLOWED_HOSTS" in err.decode()


# -- Origin ----------------------------------------------------------------------------------
SIMPLE_BODIES = [  # what a page may send cross-origin with no CORS preflight
    ("text/plain", '{{"message": "{marker}"}}'),
    ("text/plain;charset=UTF-8", '{{"message": "{marker}"}}'),
    ("application/x-www-form-urlencoded", "message={marker}"),
    ("multipart/form-data; boundary=x", '{{"message": "{marker}"}}'),
]


@pytest.mark.reliability("Security", "a page on another site cannot POST /chat (no preflight)")
@pytest.mark.parametrize("site", ["cross-site", None])
def test_a_foreign_origin_cannot_post_a_chat(live, fake, site, http):
    for content_type, template in SIMPLE_BODIES:
        marker = f"evil-{content_type}-{site}"
        headers = {"Origin": EVIL, "Content-Type": content_type}
        if site:
            headers |= {"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "no-cors"}
        for path in ("/chat", "/chat/stream", "/generate"):
            r = http.post(
                live.url + path,
                content=template.format(marker=marker).encode(),
                headers=headers,
                timeout=10,
            )
            assert_forbidden(r, path, EVIL)
            assert "--cors-origin" in r.text
        assert_nothing_reached(live, fake, marker)


@pytest.mark.reliability("Security", "a page on another site cannot read or write any route")
def test_a_foreign_origin_is_refused_on_every_route(live, fake, http):
    for origin in (EVIL, "null", f"http://127.0.0.1:{port_of(live) + 1}"):
        for method, path, body in ROUTES:
            marker = f"origin-{path}-{origin}"
            r = http.request(
                method,
                live.url + path,
                json=with_marker(body, marker),
                headers={"Origin": origin},
                timeout=10,
            )
            assert_forbidden(r, path, origin)
            assert_nothing_reached(live, fake, marker)
        # the CORS preflight of a fetch with a JSON body or a key: refused as well
        r = http.options(
            f"{live.url}/chat",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
            timeout=10,
        )
        assert_forbidden(r, "/chat", origin)


@pytest.mark.reliability("Security", "no Origin but Sec-Fetch-Site: cross-site is 403; links work")
def test_cross_site_without_origin_is_refused_but_a_link_is_followed(live, http):
    for mode in ("no-cors", "cors"):
        r = http.get(
            f"{live.url}/sessions",
            headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": mode},
            timeout=10,
        )
        assert_forbidden(r, "/sessions", "cross-site")
    link = {
        "Sec-Fetch-Site": "cross-site",
        "Sec-Fetch-Mode": "navigate",
        "Sec-Fetch-Dest": "document",
    }
    assert http.get(live.url, headers=link, timeout=10).status_code == 200
    assert http.get(f"{live.url}/docs", headers=link, timeout=10).status_code == 200


@pytest.mark.reliability(
    "Security", "same origin, a --cors-origin, and clients without Origin work"
)
def test_own_origin_listed_origin_and_plain_clients_are_served(live, fake, http):
    own = live.url  # http://127.0.0.1:PORT
    cases = {
        "own": {"Origin": own, "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"},
        "listed": {"Origin": APP, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"},
        # curl -d: no Origin, a form Content-Type, a JSON body
        "curl": {"Content-Type": "application/x-www-form-urlencoded"},
        "typed": {"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate"},
    }
    for name, headers in cases.items():
        marker = f"served-{name}"
        r = http.post(
            f"{live.url}/chat",
            content=f'{{"message": "{marker}"}}'.encode(),
            headers=headers,
            timeout=10,
        )
        assert r.status_code == 200, (name, r.text)
        assert r.json()["response"] == f"echo: {marker}"
        assert marker in stored_texts(live.store)
        assert marker in model_texts(fake)
    listed = http.get(f"{live.url}/v1/models", headers={"Origin": APP}, timeout=10)
    assert listed.status_code == 200 and listed.headers["access-control-allow-origin"] == APP
    # the page on localhost:PORT: its Origin is its own (same host and port as Host)
    local = f"localhost:{port_of(live)}"
    r = http.get(
        f"{live.url}/sessions", headers={"Host": local, "Origin": f"http://{local}"}, timeout=10
    )
    assert r.status_code == 200, r.text


@pytest.mark.reliability("Security", "keys do not lift the Origin check")
def test_a_foreign_origin_is_refused_even_with_a_key(keyed, http):
    auth = {"Authorization": f"Bearer {KEY}"}
    r = http.get(f"{keyed.url}/sessions", headers={**auth, "Origin": EVIL}, timeout=10)
    assert_forbidden(r, "/sessions", EVIL)
    r = http.get(f"{keyed.url}/sessions", headers={**auth, "Host": "evil.example"}, timeout=10)
    assert_forbidden(r, "/sessions", "evil.example")
    assert http.get(f"{keyed.url}/sessions", headers=auth, timeout=10).status_code == 200


# -- one reading of the key ------------------------------------------------------------------
@pytest.mark.reliability("Security", "one reading of `Authorization` on every route")
def test_every_route_reads_the_key_alike(keyed, fake, http):
    good = [f"Bearer {KEY}", f"Bearer  {KEY}", f"bearer {KEY}", f"BEARER   {KEY}"]
    bad = [f"Bearer{KEY}", f"Basic {KEY}", f"Bearer {KEY}x", "Bearer", KEY]
    routes = [
        ("GET", "/sessions", None),
        ("GET", "/models", None),
        ("POST", "/chat", {"message": "key"}),
        ("POST", "/chat/stream", {"message": "key"}),
        ("GET", "/v1/models", None),
        ("POST", "/v1/chat/completions", {"model": "llama3", "messages": []}),
        ("GET", "/api/tags", None),
        ("POST", "/api/chat", {"model": "llama3", "messages": [], "stream": False}),
    ]
    for method, path, body in routes:
        if body is not None and "messages" in body:
            body = {**body, "messages": [{"role": "user", "content": "key"}]}
        for header in good:
            r = http.request(
                method, keyed.url + path, json=body, headers={"Authorization": header}, timeout=10
            )
            assert r.status_code == 200, (path, header.replace(KEY, "KEY"), r.text)
        for header in bad:
            r = http.request(
                method, keyed.url + path, json=body, headers={"Authorization": header}, timeout=10
            )
            assert r.status_code == 401, (path, header.replace(KEY, "KEY"), r.text)


# -- a real browser ---------------------------------------------------------------------------
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # evil.example and rebind.example are this machine: the attacker's page is served
    # from here, and rebind.example is a name re-resolved to 127.0.0.1 (DNS rebinding).
    "--host-resolver-rules=MAP evil.example 127.0.0.1, MAP rebind.example 127.0.0.1",
]

EVIL_PAGE = """<!doctype html>
<html><body>
<form id="plain" method="POST" action="{target}/chat" enctype="text/plain">
  <input name='{{"message": "pwned-plain-form", "x": "' value='"}}'>
</form>
<form id="urlenc" method="POST" action="{target}/chat">
  <input name="message" value="pwned-urlencoded-form">
</form>
<script>
window.attack = async () => {{
  const out = [];
  for (const [path, body] of [
      ["/chat", '{{"message": "pwned-fetch"}}'],
      ["/chat/stream", '{{"message": "pwned-fetch-stream"}}'],
      ["/v1/chat/completions",
       '{{"model": "llama3", "messages": [{{"role": "user", "content": "pwned-fetch-v1"}}]}}'],
      ["/api/chat",
       '{{"model": "llama3", "messages": [{{"role": "user", "content": "pwned-fetch-api"}}]}}'],
  ]) {{
    try {{
      const r = await fetch("{target}" + path, {{method: "POST", mode: "no-cors", body}});
      out.push(r.type);
    }} catch (e) {{ out.push("failed: " + e); }}
  }}
  try {{  // a CORS read: the preflight-free GET, its answer withheld by the browser anyway
    const r = await fetch("{target}/sessions");
    out.push("read: " + (await r.text()));
  }} catch (e) {{ out.push("read failed"); }}
  return out;
}};
</script>
</body></html>
"""


class EvilSite:
    """A tiny web server on another port (another origin) serving the attacker's page."""

    def __init__(self, target: str) -> None:
        page = EVIL_PAGE.format(target=target).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> EvilSite:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.reliability("Security", "Chromium: another site's fetch, forms and rebinding fail")
def test_chromium_a_page_on_another_site_cannot_drive_the_server(live, fake):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent: `apt-get install -y chromium` (CI installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    port = port_of(live)
    requests_before = len(fake.chat_requests())
    with sync_api.sync_playwright() as p, EvilSite(live.url) as evil:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context()
            page = context.new_page()
            page.set_default_timeout(10_000)
            # 1. fetch(..., {mode: "no-cors"}): no preflight, the body is sent; refused.
            page.goto(f"http://evil.example:{evil.port}/")
            results = page.evaluate("window.attack()")
            assert results[:4] == ["opaque"] * 4, results  # sent, and nothing to read
            assert results[4] == "read failed", results
            # 2. form posts (a top-level navigation to the server: its 403 is what shows)
            for form in ("plain", "urlenc"):
                page.goto(f"http://evil.example:{evil.port}/")
                with page.expect_navigation() as nav:
                    page.eval_on_selector(f"#{form}", "f => f.submit()")
                response = nav.value
                assert response is not None and response.status == 403, form
                assert "requests from web pages of other origins" in page.content()
            # 3. DNS rebinding: a name of the attacker's now resolving to 127.0.0.1, the
            # page same-origin with the server as the browser sees it; it reads nothing.
            response = page.goto(f"http://rebind.example:{port}/sessions")
            assert response is not None and response.status == 403
            assert "session_id" not in page.content()
            assert "does not answer to the host name" in page.content()
            context.close()
            for marker in ("pwned",):
                assert_nothing_reached(live, fake, marker)
            assert len(fake.chat_requests()) == requests_before

            # 4. the server's own page, on its own origin, still chats
            context = browser.new_context()
            page = context.new_page()
            page.set_default_timeout(10_000)
            page.goto(live.url)
            page.wait_for_selector("#model option", state="attached")
            page.fill("#message", "hello from the page")
            page.press("#message", "Enter")
            page.wait_for_selector(".msg.ai .meta")
            assert "echo: hello from the page" in page.inner_text(".msg.ai")
            assert "hello from the page" in stored_texts(live.store)
            context.close()
        finally:
            browser.close()
