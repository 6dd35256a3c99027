"""Cache-aware routing for clients that name no session (issue 23): the real server on a port
over two fake Ollama hosts, driven by the OpenAI SDK as a stateless client (the whole history
resent each turn, no session id); and two ``ollang serve`` replicas on one PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from ollang.server import ServerSettings
from ollang.server.testing import LiveServer
from tests import pg
from tests.fake_ollama import FakeOllama, ModelInfo

MODEL = "llama3:latest"


def _settings(tmp_path, hosts: list[str], **extra) -> ServerSettings:
    return ServerSettings(
        store_url=f"sqlite:///{tmp_path / 'sessions.db'}",
        ollama_hosts=hosts,
        default_model="llama3",
        backend="ollama",
        **extra,
    )


@pytest.fixture
def two() -> Iterator[tuple[FakeOllama, FakeOllama]]:
    with (
        FakeOllama(models=[ModelInfo(MODEL)]) as a,
        FakeOllama(models=[ModelInfo(MODEL)]) as b,
    ):
        for fake in (a, b):  # loaded on both: the least-loaded host is a coin toss
            fake.loaded[MODEL] = time.time()
        yield a, b


def _host_of(fakes: tuple[FakeOllama, ...], first_question: str, turn: int) -> str:
    """Which fake answered turn ``turn`` of the conversation opened by ``first_question``."""
    found = [
        fake.url
        for fake in fakes
        for body in fake.chat_requests()
        if [m["content"] for m in body["messages"] if m["role"] == "user"][:1] == [first_question]
        and sum(m["role"] == "user" for m in body["messages"]) == turn
    ]
    assert len(found) == 1, (first_question, turn, found)
    return found[0]


def _conversation(clients: list[openai.OpenAI], name: str, turns: int = 3) -> None:
    """A stateless client: the whole history each turn, no session id; turn ``n`` goes
    through ``clients[n % len(clients)]`` (round robin over replicas)."""
    messages: list[dict[str, str]] = [{"role": "system", "content": "You are terse."}]
    for n in range(turns):
        messages.append({"role": "user", "content": f"{name}: question {n}"})
        client = clients[n % len(clients)]
        reply = client.chat.completions.create(model="llama3", messages=messages)  # type: ignore[arg-type]
        messages.append({"role": "assistant", "content": reply.choices[0].message.content or ""})


def _hosts_per_conversation(fakes, names: list[str], turns: int = 3) -> list[set[str]]:
    return [{_host_of(fakes, f"{name}: question 0", t + 1) for t in range(turns)} for name in names]


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def test_every_turn_of_a_stateless_conversation_goes_to_the_same_host(tmp_path, two):
    names = [f"c{i}" for i in range(6)]
    with LiveServer(_settings(tmp_path, [a.url for a in two])) as live, _client(live.url) as c:
        for name in names:
            _conversation([c], name)
        metrics = httpx.get(f"{live.url}/metrics").text
    per_conversation = _hosts_per_conversation(two, names)
    assert all(len(hosts) == 1 for hosts in per_conversation), per_conversation
    assert len(set().union(*per_conversation)) == 2, "new conversations still spread"
    # First turns found nothing; the later ones found the previous turn in this process.
    assert 'ollang_prefix_lookups_total{found="none"} 6.0' in metrics
    assert 'ollang_prefix_lookups_total{found="cache"} 12.0' in metrics


def test_with_prefix_routing_off_the_turns_spread(tmp_path, two):
    names = [f"c{i}" for i in range(6)]
    settings = _settings(tmp_path, [a.url for a in two], prefix_routing=False)
    with LiveServer(settings) as live, _client(live.url) as c:
        for name in names:
            _conversation([c], name)
    per_conversation = _hosts_per_conversation(two, names)
    # Each turn a coin toss: all six conversations on one host each has p = 1/4**6.
    assert any(len(hosts) == 2 for hosts in per_conversation), per_conversation


def test_the_setting_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("OLLANG_SERVER_PREFIX_ROUTING", "false")
    assert ServerSettings().prefix_routing is False
    monkeypatch.delenv("OLLANG_SERVER_PREFIX_ROUTING")
    assert ServerSettings().prefix_routing is True


def test_a_conversation_whose_host_went_down_moves_and_stays(tmp_path, two):
    with LiveServer(_settings(tmp_path, [a.url for a in two])) as live, _client(live.url) as c:
        messages: list[dict[str, str]] = []
        served: list[str] = []
        for n in range(4):
            messages.append({"role": "user", "content": f"moving: question {n}"})
            reply = c.chat.completions.create(model="llama3", messages=messages)  # type: ignore[arg-type]
            messages.append({"role": "assistant", "content": reply.choices[0].message.content})
            served.append(_host_of(two, "moving: question 0", n + 1))
            if n == 1:
                next(f for f in two if f.url == served[0]).kill()
    assert served[0] == served[1] != served[2] == served[3]


def test_the_ollama_dialect_is_routed_by_prefix(tmp_path, two):
    with LiveServer(_settings(tmp_path, [a.url for a in two])) as live:
        messages: list[dict[str, str]] = []
        for n in range(3):
            messages.append({"role": "user", "content": f"ollama: question {n}"})
            body = {"model": "llama3", "messages": messages, "stream": False}
            answer = httpx.post(f"{live.url}/api/chat", json=body, timeout=30).json()
            messages.append({"role": "assistant", "content": answer["message"]["content"]})
        assert len({_host_of(two, "ollama: question 0", n + 1) for n in range(3)}) == 1


def test_a_named_session_keeps_its_own_affinity_and_records_no_prefix(tmp_path, two):
    with LiveServer(_settings(tmp_path, [a.url for a in two])) as live:
        first = httpx.post(f"{live.url}/chat", json={"message": "named: question 0"}).json()
        for n in range(1, 3):
            turn = {"message": f"named: question {n}", "session_id": first["session_id"]}
            assert httpx.post(f"{live.url}/chat", json=turn).status_code == 200
        metrics = httpx.get(f"{live.url}/metrics").text
    assert sorted(len(fake.chat_requests()) for fake in two) == [0, 3]
    assert "ollang_prefix_lookups_total{" not in metrics


def test_a_model_on_one_host_only_is_neither_looked_up_nor_recorded(tmp_path, two):
    # No choice to make, so no store read and no writes for its turns (on a server of one
    # host: for every turn; this was most of issue 22's added CPU on /api/chat at load B).
    with FakeOllama(models=[ModelInfo("mistral:latest")]) as third:
        hosts = [two[0].url, two[1].url, third.url]
        with LiveServer(_settings(tmp_path, hosts)) as live, _client(live.url) as c:
            _conversation([c], "llama3, on two hosts")
            messages = [{"role": "user", "content": "mistral, on one host"}]
            for _ in range(2):
                reply = c.chat.completions.create(model="mistral", messages=messages)  # type: ignore[arg-type]
                messages += [
                    {"role": "assistant", "content": reply.choices[0].message.content or ""},
                    {"role": "user", "content": "and then?"},
                ]
            metrics = httpx.get(f"{live.url}/metrics").text
        assert len(third.chat_requests()) == 2
    # llama3's three turns only: the first found nothing, the next two the previous turn.
    assert 'ollang_prefix_lookups_total{found="none"} 1.0' in metrics
    assert 'ollang_prefix_lookups_total{found="cache"} 2.0' in metrics


# -- two replicas on one PostgreSQL ------------------------------------------------------------
@pytest.fixture
def store_url() -> Iterator[str]:
    try:
        pg.server()
    except RuntimeError as err:
        pytest.skip(str(err))
    with pg.fresh_schema_url() as url:
        yield url


@pytest.mark.parametrize("prefix_routing", [True, False], ids=["prefix-routing", "off"])
def test_two_replicas_on_postgresql_agree(store_url, tmp_path, two, prefix_routing, monkeypatch):
    if not prefix_routing:
        env = pg.serve_env
        monkeypatch.setattr(
            pg, "serve_env", lambda *a: {**env(*a), "OLLANG_SERVER_PREFIX_ROUTING": "false"}
        )
    hosts = [arg for fake in two for arg in ("--ollama-host", fake.url)]
    procs, ports = [], []
    try:
        for name in ("r1", "r2"):
            proc, port = pg.start_serve(store_url, two[0].host_port, tmp_path / name, *hosts)
            procs.append(proc)
            ports.append(port)
        clients = [_client(f"http://127.0.0.1:{port}") for port in ports]
        names = [f"r{i}" for i in range(6)]
        for name in names:
            _conversation(clients, name, turns=4)  # turn by turn, replica by replica
        per_conversation = _hosts_per_conversation(two, names, turns=4)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
    if prefix_routing:
        assert all(len(hosts) == 1 for hosts in per_conversation), per_conversation
    else:
        assert any(len(hosts) == 2 for hosts in per_conversation), per_conversation
