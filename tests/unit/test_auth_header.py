"""The headers that decide whether a request is served at all (issue 26), as pure functions:

* :func:`ollang.server.auth.bearer_token`, the one reader of ``Authorization`` that every
  route uses (before, the session and model routes took ``Bearer  KEY`` and ``/chat``,
  ``/v1`` and ``/api`` refused it);
* :func:`ollang.server.security.decide`, the Host and Origin checks of every request;
* the settings that feed them: a key no client could send, a host list entry that is a URL.

The same cases over a real socket are in tests/integration/test_security_http.py.
"""

from __future__ import annotations

import os

import pytest

from ollang.errors import SettingsError
from ollang.server.auth import bearer_token
from ollang.server.security import (
    Policy,
    Refusal,
    allowed_host_entry,
    decide,
    host_name,
    refusal_error,
)
from ollang.server.settings import ServerSettings


@pytest.fixture(autouse=True)
def _bare_env(monkeypatch, tmp_path) -> None:
    for name in list(os.environ):
        if name.startswith(("OLLANG_", "OLLAMA_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OLLANG_HOME", str(tmp_path / "home"))


# -- Authorization: one rule --------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("Bearer alice", "alice"),
        ("Bearer  alice", "alice"),  # two spaces: the case of the issue
        ("Bearer     alice", "alice"),
        ("bearer alice", "alice"),  # the scheme in any case (RFC 7235)
        ("BEARER alice", "alice"),
        ("bEaReR alice", "alice"),
        ("Bearer alice ", "alice"),  # blanks after the key
        ("Bearer \talice\t", "alice"),
        ("Bearer sk-ollang/0123+abc==", "sk-ollang/0123+abc=="),
        ("Bearer a b", "a b"),  # a key with an inner space (the settings allow one)
    ],
)
def test_bearer_token_reads_the_key(header, key):
    assert bearer_token(header) == key


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer    ",
        "Bearer\talice",  # the scheme must be followed by a space
        "Beareralice",
        "Basic alice",
        "Basic YWxpY2U6cHc=",
        "Token alice",
        " Bearer alice",  # (a header value never starts with a blank: servers strip it)
        "alice",
    ],
)
def test_bearer_token_finds_no_key(header):
    assert bearer_token(header) is None


# -- API keys a client could never send ------------------------------------------------------
@pytest.mark.parametrize("key", ["ключ", "clé", "key\u00a0x", "tab\tkey", "nul\x00", "emoji🔑"])
def test_a_key_outside_printable_ascii_is_refused_at_start(key):
    with pytest.raises(SettingsError) as err:
        ServerSettings(api_keys=[key])
    assert "printable ASCII" in err.value.message and err.value.hint
    assert key not in err.value.message and key not in err.value.hint  # never shown
    assert err.value.exit_code == 2


def test_a_key_in_the_environment_is_checked_alike(monkeypatch):
    monkeypatch.setenv("OLLANG_SERVER_API_KEYS", "good-key,ключ")
    with pytest.raises(SettingsError, match="OLLANG_SERVER_API_KEYS"):
        ServerSettings()


@pytest.mark.parametrize("key", ["sk-0123456789abcdef", "a b", "~!@#$%^&*()_+{}|:<>?"])
def test_printable_ascii_keys_are_accepted(key):
    assert ServerSettings(api_keys=[key]).key_values() == [key]


# -- OLLANG_SERVER_ALLOWED_HOSTS -------------------------------------------------------------
def test_allowed_hosts_are_read_as_a_list_and_normalized(monkeypatch):
    monkeypatch.setenv("OLLANG_SERVER_ALLOWED_HOSTS", "Chat.Example.COM., mybox.lan, ::1")
    assert ServerSettings().allowed_hosts == ["chat.example.com", "mybox.lan", "[::1]"]
    assert ServerSettings(allowed_hosts=["*"]).allowed_hosts == ["*"]
    assert ServerSettings().model_copy(update={"allowed_hosts": []}).allowed_hosts == []


@pytest.mark.parametrize(
    "entry", ["http://chat.example.com", "chat.example.com:8000", "chat.example.com/x", "a b", ""]
)
def test_an_allowed_host_that_is_not_a_name_is_refused(entry):
    with pytest.raises(SettingsError, match="OLLANG_SERVER_ALLOWED_HOSTS") as err:
        ServerSettings(allowed_hosts=[entry])
    assert "scheme, port or path" in err.value.hint
    with pytest.raises(ValueError):
        allowed_host_entry(entry)


# -- the Host check ---------------------------------------------------------------------------
LOOPBACK = Policy.of("127.0.0.1", machine_names=["mybox"])


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("localhost:8000", "localhost"),
        ("LocalHost.:8000", "localhost"),
        ("[::1]:8000", "[::1]"),
        ("[::1]", "[::1]"),
        ("::1", "[::1]"),
        ("127.0.0.1", "127.0.0.1"),
        ("evil.example:80", "evil.example"),
    ],
)
def test_host_name(host, name):
    assert host_name(host) == name


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:8000",
        "127.0.0.1",
        "127.5.6.7:8000",  # all of 127/8
        "localhost:8000",
        "localhost",
        "LOCALHOST:8000",
        "localhost.:8000",
        "[::1]:8000",
        "[::1]",
        "192.168.1.20:8000",  # any address: only a name can be rebound
        "[fe80::1]:8000",
        "mybox:8000",  # this machine's name
        "MyBox",
    ],
)
def test_loopback_server_answers_its_own_names_and_any_address(host):
    assert decide(LOOPBACK, host) is None


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8000",
        "localhost.evil.example:8000",
        "127.0.0.1.evil.example",
        "mybox.evil.example",
        "attacker-controlled-name",
        "[::1].evil",
    ],
)
def test_loopback_server_refuses_other_names(host):
    assert decide(LOOPBACK, host) == Refusal("host", host)


def test_no_host_header_is_served():
    assert decide(LOOPBACK, None) is None  # HTTP/1.0 clients; browsers always send one


def test_the_host_given_and_the_listed_names_are_answered():
    policy = Policy.of("chat.lan", ["api.example.com", "::1"], machine_names=[])
    assert decide(policy, "chat.lan:8000") is None
    assert decide(policy, "API.example.com") is None
    assert decide(policy, "[::1]:8000") is None
    assert decide(policy, "localhost:8000") is None
    assert decide(policy, "www.example.com") == Refusal("host", "www.example.com")


def test_all_interfaces_still_refuse_unknown_names():
    # Decided: --host 0.0.0.0 does not lift the check (without keys, a rebinding page
    # anywhere could read the server); addresses and the machine's name pass.
    for bound in ("0.0.0.0", "::", "[::]"):
        policy = Policy.of(bound, machine_names=["mybox.example.org", "mybox"])
        for host in ("192.168.1.20:8000", "10.0.0.5", "[2001:db8::5]:8000", "0.0.0.0:8000"):
            assert decide(policy, host) is None, (bound, host)
        assert decide(policy, "mybox.example.org:8000") is None
        assert decide(policy, "mybox:8000") is None
        assert decide(policy, "evil.example:8000") == Refusal("host", "evil.example:8000")


def test_a_star_answers_any_host():
    policy = Policy.of("0.0.0.0", ["*"], machine_names=[])
    assert decide(policy, "anything.example:8000") is None
    assert not Policy.of("0.0.0.0", machine_names=[]).any_host


# -- the Origin check -------------------------------------------------------------------------
APP = "https://app.example"
CORS = Policy.of("127.0.0.1", cors_origins=[APP, "http://localhost:3000/"], machine_names=[])


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("127.0.0.1:8000", "http://127.0.0.1:8000"),  # the page on its own origin
        ("localhost:8000", "http://localhost:8000"),
        ("[::1]:8000", "http://[::1]:8000"),
        ("localhost", "http://localhost"),
        ("127.0.0.1:8000", "HTTP://127.0.0.1:8000"),
        ("127.0.0.1:8000", "https://127.0.0.1:8000"),  # behind a TLS proxy keeping Host
        ("127.0.0.1:8000", APP),  # a --cors-origin
        ("127.0.0.1:8000", "http://localhost:3000"),  # listed with a trailing slash
    ],
)
def test_own_and_listed_origins_are_served(host, origin):
    assert decide(CORS, host, origin, "cross-site", "cors", "POST") is None


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("127.0.0.1:8000", "https://evil.example"),
        ("127.0.0.1:8000", "http://127.0.0.1:9999"),  # another port is another origin
        ("127.0.0.1:8000", "http://localhost:8000"),  # another name is another origin
        ("127.0.0.1:8000", "null"),  # sandboxed frames, file:// pages, data: URLs
        ("127.0.0.1:8000", "http://127.0.0.1:8000.evil.example"),
        ("127.0.0.1:8000", "ftp://127.0.0.1:8000"),
        ("127.0.0.1:8000", "https://app.example.evil"),
        ("127.0.0.1:8000", ""),
        (None, "http://127.0.0.1:8000"),  # no Host to be the same as
    ],
)
@pytest.mark.parametrize("method", ["POST", "GET", "OPTIONS", "DELETE"])
def test_other_origins_are_refused(host, origin, method):
    assert decide(CORS, host, origin, "cross-site", "no-cors", method) == Refusal("origin", origin)


def test_the_origin_decides_over_sec_fetch_site():
    own = ("127.0.0.1:8000", "http://127.0.0.1:8000")
    assert decide(LOOPBACK, *own, "same-origin", "cors", "POST") is None
    assert decide(LOOPBACK, "127.0.0.1:8000", "https://evil.example", "same-origin") == Refusal(
        "origin", "https://evil.example"
    )


def test_a_star_cors_origin_allows_every_origin():
    policy = Policy.of(cors_origins=["*"], machine_names=[])
    assert decide(policy, "127.0.0.1:8000", "https://anyone.example") is None
    assert decide(policy, "evil.example", "https://anyone.example") == Refusal(
        "host", "evil.example"
    )  # the Host check still holds


@pytest.mark.parametrize("site", ["cross-site", "same-site", "CROSS-SITE"])
@pytest.mark.parametrize("mode", ["no-cors", "cors", "same-origin", None])
def test_requests_from_other_sites_without_origin_are_refused(site, mode):
    # <img src>, <script src>, a no-cors GET: the browser sends no Origin header.
    assert decide(LOOPBACK, "127.0.0.1:8000", None, site, mode, "GET") == Refusal("origin", site)


def test_following_a_link_from_another_site_is_served():
    assert decide(LOOPBACK, "127.0.0.1:8000", None, "cross-site", "navigate", "GET") is None
    assert decide(LOOPBACK, "127.0.0.1:8000", None, "cross-site", "navigate", "HEAD") is None
    # A form POST is a navigation too, but carries an Origin (refused above); without one:
    assert decide(LOOPBACK, "127.0.0.1:8000", None, "cross-site", "navigate", "POST") == Refusal(
        "origin", "cross-site"
    )


@pytest.mark.parametrize("site", [None, "same-origin", "none"])
def test_clients_and_same_origin_requests_are_served(site):
    # curl, curl -d, the SDKs (no Origin, no Sec-Fetch-*); the page's own GETs; typed URLs.
    assert decide(LOOPBACK, "127.0.0.1:8000", None, site, None, "POST") is None


def test_the_refusals_say_what_to_do():
    host = refusal_error(Refusal("host", "evil.example:8000"))
    assert host.http_status == 403
    assert "'evil.example'" in host.message and "OLLANG_SERVER_ALLOWED_HOSTS" in host.hint
    origin = refusal_error(Refusal("origin", "https://evil.example"))
    assert origin.http_status == 403
    assert "https://evil.example" in origin.message and "--cors-origin" in origin.hint
    site = refusal_error(Refusal("origin", "cross-site"))
    assert "cross-site" in site.message
    long = refusal_error(Refusal("host", "a" * 10_000))
    assert len(long.message) < 200  # a made-up header is not echoed whole


# -- the middleware's fast paths agree with decide() ---------------------------------------
def run_guard(guard, headers: list[tuple[bytes, bytes]], path: str = "/chat") -> int:
    """The status the guard answers (200: passed on to the app)."""
    import asyncio

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    asyncio.run(guard(scope, receive, send))
    return sent[0]["status"] if sent else 200


def test_the_middleware_remembers_accepted_hosts_only():
    from ollang.server.security import _REMEMBERED, HostOriginGuard

    async def app(scope, receive, send) -> None:
        pass

    guard = HostOriginGuard(app, LOOPBACK)
    own = [(b"host", b"127.0.0.1:8000")]
    for _ in range(2):  # decided, then remembered
        assert run_guard(guard, own) == 200
        assert run_guard(guard, [*own, (b"origin", b"http://127.0.0.1:8000")]) == 200
        assert run_guard(guard, [*own, (b"origin", b"https://evil.example")]) == 403
        assert run_guard(guard, [*own, (b"origin", b"http://127.0.0.1:80")]) == 403
        assert run_guard(guard, [*own, (b"sec-fetch-site", b"cross-site")]) == 403
        assert run_guard(guard, [(b"host", b"evil.example")]) == 403
    assert guard._hosts == {b"127.0.0.1:8000"}
    for n in range(_REMEMBERED + 50):  # made-up addresses: accepted, memory bounded
        assert run_guard(guard, [(b"host", f"10.0.{n // 250}.{n % 250}".encode())]) == 200
    assert len(guard._hosts) == _REMEMBERED


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        (b"http://127.0.0.1:8000", b"127.0.0.1:8000"),
        (b"https://127.0.0.1:8000", b"127.0.0.1:8000"),
        (b"http://127.0.0.1:8000", b"27.0.0.1:8000"),
        (b"http://x127.0.0.1:8000", b"127.0.0.1:8000"),
        (b"httpx//127.0.0.1:8000", b"127.0.0.1:8000"),
        (b"https:/127.0.0.1:8000", b"127.0.0.1:8000"),
        (b"http://127.0.0.1:8000/", b"127.0.0.1:8000"),
    ],
)
def test_the_fast_own_origin_check_is_a_subset_of_decide(origin, host):
    from ollang.server.security import _own

    if _own(origin, host):
        assert decide(LOOPBACK, host.decode(), origin.decode()) is None
    assert _own(origin, host) == (origin in (b"http://" + host, b"https://" + host))
