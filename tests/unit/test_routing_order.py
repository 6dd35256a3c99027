"""The routing decisions as pure functions of host states (ollang.routing.order), and the
router's use of them: which hosts a request tries and in what order, which one takes it,
and whether a model missing everywhere is a 404 or a 503."""

from __future__ import annotations

import asyncio
from itertools import count

import pytest

from ollang.errors import ModelNotFoundError
from ollang.routing import order
from ollang.routing.hosts import EmbeddedHost, OllamaHost, make_hosts
from ollang.routing.order import (
    AVAILABLE,
    COLD_PENALTY,
    NOT_FOUND,
    UNAVAILABLE,
    HostView,
    availability,
    first_free,
    rank,
)
from ollang.routing.router import NoHostError, Router
from ollang.settings import HostSpec, Settings
from ollang.transport.manage import ModelDetails


def _in_order(*values: float):
    """A tie-break handing out ``values`` in turn (the hosts' order of appearance)."""
    it = iter(values)
    return lambda: next(it)


def _zero() -> float:
    return 0.0


def _names(hosts: list[HostView], **kwargs) -> list[str]:
    kwargs.setdefault("tie", _zero)
    return [hosts[i].name for i in rank(hosts, **kwargs)]


H = HostView  # short, for the tables below


# -- rank ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("hosts", "kwargs", "expected"),
    [
        pytest.param(
            [H("b", priority=1), H("a", priority=0), H("c", priority=2)],
            {},
            ["a", "b", "c"],
            id="tiers: lower priority first",
        ),
        pytest.param(
            [H("busy", in_flight=9), H("cpu", priority=1)],
            {},
            ["busy", "cpu"],
            id="tiers: a loaded earlier tier still before an idle later one",
        ),
        pytest.param(
            [H("a", loaded=True), H("b", loaded=True)],
            {"affinity": "b"},
            ["b", "a"],
            id="affinity: the session's host first in its tier",
        ),
        pytest.param(
            [H("a", loaded=True), H("b", loaded=True, in_flight=5)],
            {"affinity": "b"},
            ["b", "a"],
            id="affinity: beats load",
        ),
        pytest.param(
            [H("a"), H("b", priority=1)],
            {"affinity": "b"},
            ["a", "b"],
            id="affinity: never beats the tier",
        ),
        pytest.param(
            [H("a", loaded=True), H("b", loaded=True)],
            {"affinity": "gone"},
            ["a", "b"],
            id="affinity: a host not configured changes nothing",
        ),
        pytest.param(
            [H("a", loaded=True, in_flight=2), H("b", loaded=True, in_flight=1)],
            {},
            ["b", "a"],
            id="load: fewest in flight first",
        ),
        pytest.param(
            [H("a", loaded=True, in_flight=2), H("big", loaded=True, in_flight=3, weight=4)],
            {},
            ["big", "a"],
            id="weights: in flight per unit of weight",
        ),
        pytest.param(
            [H("small", loaded=True, in_flight=1, weight=0.5), H("b", loaded=True, in_flight=1)],
            {},
            ["b", "small"],
            id="weights: a weight below one counts its requests more",
        ),
        pytest.param(
            [H("cold"), H("warm", loaded=True)],
            {},
            ["warm", "cold"],
            id="cold penalty: an idle loaded host before an idle cold one",
        ),
        pytest.param(
            [H("cold"), H("warm", loaded=True, in_flight=int(COLD_PENALTY) - 1)],
            {},
            ["warm", "cold"],
            id="cold penalty: a little busy, still warm first",
        ),
        pytest.param(
            [H("cold"), H("warm", loaded=True, in_flight=int(COLD_PENALTY) + 1)],
            {},
            ["cold", "warm"],
            id="cold penalty: busier than a cold load, the cold host first",
        ),
        pytest.param(
            [H("a"), H("b"), H("c")],
            {"exclude": {0, 2}},
            ["b"],
            id="exclusions: hosts that failed this request are left out",
        ),
        pytest.param(
            [H("a"), H("b")],
            {"exclude": {0, 1}},
            [],
            id="exclusions: all of them, none left",
        ),
        pytest.param(
            [H("down", up=False), H("b", priority=1)],
            {},
            ["b"],
            id="down hosts are left out",
        ),
        pytest.param(
            [H("a", has_model=False), H("b", priority=1)],
            {},
            ["b"],
            id="hosts lacking the model are left out",
        ),
        pytest.param(
            [H("a", up=False, has_model=True), H("b", has_model=False)],
            {},
            [],
            id="no host both up and with the model",
        ),
        pytest.param([], {}, [], id="no hosts"),
        pytest.param(
            [H("full", max_concurrent=1, in_flight=1), H("b", in_flight=2)],
            {},
            ["full", "b"],
            id="full hosts stay ranked (first_free skips them)",
        ),
    ],
)
def test_rank(hosts, kwargs, expected):
    assert _names(hosts, **kwargs) == expected


def test_ties_are_broken_by_the_injected_tie_breaker():
    hosts = [H("a"), H("b"), H("c")]
    assert _names(hosts, tie=_in_order(0.9, 0.1, 0.5)) == ["b", "c", "a"]
    assert _names(hosts, tie=_in_order(0.1, 0.5, 0.9)) == ["a", "b", "c"]


def test_the_tie_breaker_decides_only_ties():
    hosts = [H("idle"), H("busy", in_flight=1)]
    assert _names(hosts, tie=_in_order(0.99, 0.0)) == ["idle", "busy"]


def test_the_tie_breaker_is_asked_once_per_candidate_only():
    calls = count()
    rank([H("a"), H("b", up=False), H("c")], exclude={2}, tie=lambda: float(next(calls)))
    assert next(calls) == 1  # only "a" was a candidate


def test_equal_ties_keep_the_configuration_order():
    assert _names([H("a"), H("b"), H("c")], tie=_zero) == ["a", "b", "c"]


def test_the_default_tie_breaker_spreads_new_requests():
    seen = {tuple(_names([H("a"), H("b")], tie=order.random.random)) for _ in range(200)}
    assert seen == {("a", "b"), ("b", "a")}


# -- first_free ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("hosts", "expected"),
    [
        pytest.param([H("a"), H("b")], "a", id="the best when it has room"),
        pytest.param([H("a", max_concurrent=1, in_flight=1), H("b")], "b", id="skip a full one"),
        pytest.param([H("a", max_concurrent=2, in_flight=1), H("b")], "a", id="room below max"),
        pytest.param(
            [H("a", max_concurrent=1, in_flight=1), H("b", max_concurrent=0)],
            None,
            id="all full: wait",
        ),
        pytest.param([H("a", in_flight=100)], "a", id="no max: never full"),
        pytest.param([], None, id="no candidates"),
    ],
)
def test_first_free(hosts, expected):
    ranked = list(range(len(hosts)))
    free = first_free(hosts, ranked)
    assert (None if free is None else hosts[free].name) == expected


def test_first_free_follows_the_ranking_not_the_configuration():
    hosts = [H("a"), H("b"), H("c", max_concurrent=1, in_flight=1)]
    assert first_free(hosts, [2, 1, 0]) == 1


@pytest.mark.parametrize(
    ("view", "full", "load"),
    [
        (H("a"), False, COLD_PENALTY),
        (H("a", loaded=True, in_flight=3, weight=2), False, 1.5),
        (H("a", max_concurrent=2, in_flight=2, loaded=True), True, 2.0),
    ],
)
def test_a_views_fullness_and_load(view, full, load):
    assert view.full is full
    assert view.load == load


# -- availability -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("hosts", "status", "named"),
    [
        pytest.param([H("a")], AVAILABLE, [], id="an up host has it"),
        pytest.param(
            [H("a", up=False), H("b", has_model=False), H("c")],
            AVAILABLE,
            [],
            id="one of several has it",
        ),
        pytest.param(
            [H("a", has_model=False)], NOT_FOUND, [], id="the only host answered without it"
        ),
        pytest.param(
            [H("a", has_model=False), H("b", has_model=False)],
            NOT_FOUND,
            [],
            id="every host answered without it",
        ),
        pytest.param(
            [H("a", has_model=False), H("never", up=False, has_model=False)],
            NOT_FOUND,
            ["never"],
            id="a host down and never seen with it does not turn a 404 into a 503",
        ),
        pytest.param(
            [H("a", has_model=False), H("had", up=False, has_model=True)],
            UNAVAILABLE,
            ["had"],
            id="a host down that was seen with it: 503 naming it",
        ),
        pytest.param(
            [
                H("a", has_model=False),
                H("had", up=False, has_model=True),
                H("never", up=False, has_model=False),
            ],
            UNAVAILABLE,
            ["had"],
            id="the 503 names only the down hosts that had it",
        ),
        pytest.param(
            [H("a", up=False, has_model=False), H("b", up=False, has_model=False)],
            UNAVAILABLE,
            ["a", "b"],
            id="no host up: 503 naming all",
        ),
        pytest.param(
            [H("a", up=False, has_model=True)],
            UNAVAILABLE,
            ["a"],
            id="the only host is down (it had it)",
        ),
        pytest.param([], UNAVAILABLE, [], id="no host configured"),
        pytest.param(
            [H("ollama", up=False, has_model=False), H("embedded", has_model=False, embedded=True)],
            UNAVAILABLE,
            ["ollama"],
            id="only the embedded backend answered: 503 naming the Ollama hosts",
        ),
        pytest.param(
            [
                H("a", has_model=False),
                H("never", up=False, has_model=False),
                H("embedded", has_model=False, embedded=True),
            ],
            NOT_FOUND,
            ["never"],
            id="an Ollama host answered too: 404",
        ),
        pytest.param(
            [H("embedded", has_model=False, embedded=True)],
            NOT_FOUND,
            [],
            id="the embedded backend alone: 404",
        ),
        pytest.param(
            [H("embedded", has_model=True, embedded=True), H("a", up=False, has_model=False)],
            AVAILABLE,
            [],
            id="the embedded backend has it",
        ),
        pytest.param(
            [H("a", max_concurrent=1, in_flight=1)],
            AVAILABLE,
            [],
            id="full is still available (the request waits)",
        ),
    ],
)
def test_availability(hosts, status, named):
    verdict = availability(hosts)
    assert verdict.status == status
    assert [hosts[i].name for i in verdict.hosts] == named


# -- the router over real Host objects (states set by hand, nothing probed) --------------
def _details(*names: str) -> dict[str, ModelDetails]:
    return {n: ModelDetails(name=n, size=1, modified_at=None) for n in names}


def _host(url: str, *, up: bool | None, models=(), version: str | None = "0.12.0", **spec):
    host = OllamaHost(HostSpec(url, **spec), Settings(ollama_url=url))
    host.state.up = up
    host.state.version = version
    host.state.models = _details(*models)
    if up is False:
        host.state.error = "connection refused"
    return host


def test_the_router_orders_by_the_pure_ranking():
    a = _host("http://a:1", up=True, models=["llama3:latest"])
    b = _host("http://b:1", up=True, models=["llama3:latest"])
    c = _host("http://c:1", up=True, models=["llama3:latest"], priority=1)
    b.state.loaded = {"llama3:latest"}
    router = Router([a, b, c], tie=_zero)
    assert router.order("llama3") == [b, a, c]
    assert router.order("llama3", affinity=a.name) == [a, b, c]
    assert router.order("llama3", exclude=[b]) == [a, c]
    assert router.order("mistral") == []


def test_the_router_reports_a_model_missing_everywhere_as_not_found():
    up = _host("http://a:1", up=True, models=["llama3:latest"])
    never = _host("http://b:1", up=False, version=None)
    with pytest.raises(ModelNotFoundError) as caught:
        Router([up, never]).check_model("phi3")
    err = caught.value
    assert err.http_status == 404 and err.exit_code == 4
    assert "pull it with `ollama pull phi3`" in err.hint
    assert "llama3:latest" in err.hint and "http://b:1" in err.hint


def test_the_router_filters_what_the_errors_name():
    up = _host("http://a:1", up=True, models=["llama3:latest", "secret:latest"])
    with pytest.raises(ModelNotFoundError) as caught:
        Router([up]).check_model("phi3", allowed=lambda name: not name.startswith("secret"))
    assert caught.value.installed == ["llama3:latest"]


def test_the_router_waits_for_a_down_host_that_had_the_model():
    up = _host("http://a:1", up=True, models=["llama3:latest"])
    had = _host("http://b:1", up=False, models=["phi3:latest"])
    with pytest.raises(NoHostError) as caught:
        Router([up, had]).check_model("phi3")
    err = caught.value
    assert err.http_status == 503 and err.exit_code == 3
    assert err.tried == ["http://b:1"]
    assert "http://b:1" in err.message


def test_the_router_with_only_the_embedded_backend_up_waits_for_ollama():
    ollama_host = _host("http://a:1", up=False, version=None)
    embedded = EmbeddedHost(HostSpec("embedded", priority=1), Settings())
    embedded.state.up, embedded.state.models = True, _details("smollm2:135m")
    with pytest.raises(NoHostError) as caught:
        Router([ollama_host, embedded]).check_model("llama3")
    err = caught.value
    assert err.tried == ["http://a:1"] and err.available == ["smollm2:135m"]
    assert "ollama serve" in err.hint


def test_the_router_with_no_host_up_is_unavailable():
    hosts = [_host("http://a:1", up=False), _host("http://b:1", up=None, version=None)]
    with pytest.raises(NoHostError) as caught:
        Router(hosts).check_model("llama3")
    assert caught.value.tried == ["http://a:1", "http://b:1"]


def test_a_lease_skips_a_full_host_and_takes_the_next():
    a = _host("http://a:1", up=True, models=["llama3:latest"], max_concurrent=1)
    b = _host("http://b:1", up=True, models=["llama3:latest"])
    router = Router([a, b], tie=_zero)

    async def run() -> list[OllamaHost]:
        first = await router.lease("llama3")
        second = await router.lease("llama3")
        first.release()
        third = await router.lease("llama3")
        return [first.host, second.host, third.host]

    assert asyncio.run(run()) == [a, b, a]


# -- which hosts there are ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("backend", "installed", "expected"),
    [
        ("auto", True, ["http://127.0.0.1:11434", "embedded"]),
        ("auto", False, ["http://127.0.0.1:11434"]),
        ("ollama", True, ["http://127.0.0.1:11434"]),
        ("embedded", True, ["embedded"]),
        ("embedded", False, ["embedded"]),  # asked for alone: it says how to install it
    ],
)
def test_the_embedded_backend_is_a_host_only_when_installed(
    monkeypatch, backend, installed, expected
):
    monkeypatch.setattr("ollang.embedded.gguf.embedded_available", lambda: installed)
    hosts = make_hosts(Settings(), backend)
    assert [h.name for h in hosts] == expected
    embedded = [h for h in hosts if isinstance(h, EmbeddedHost)]
    if embedded and backend == "auto":
        assert embedded[0].spec.priority == 1  # a tier of its own, last


@pytest.mark.parametrize("installed", [True, False])
def test_an_embedded_host_listed_in_the_configuration_keeps_its_spec(monkeypatch, installed):
    monkeypatch.setattr("ollang.embedded.gguf.embedded_available", lambda: installed)
    settings = Settings.from_env(
        {"OLLANG_OLLAMA_HOSTS": "127.0.0.1:1,embedded?priority=0&max=2", "OLLANG_BACKEND": "auto"}
    )
    hosts = make_hosts(settings)
    specs = [(h.name, h.spec.priority, h.spec.max_concurrent) for h in hosts]
    expected = [("http://127.0.0.1:1", 0, None)]
    if installed:
        expected.append(("embedded", 0, 2))
    assert specs == expected
