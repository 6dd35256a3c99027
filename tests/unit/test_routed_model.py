"""The CLI's and the library's failover over hosts: the same rules as the server's turns."""

from __future__ import annotations

import asyncio

import pytest

from ollang.chains import FakeChatModel, FakeReply, build_chat_chain
from ollang.chains.wrapped import chat_models_in, sized
from ollang.errors import ModelNotFoundError, OllamaResponseError, OllamaUnavailableError
from ollang.routing.routed import RoutedChatModel

CONFIG = {"configurable": {"session_id": "s"}}


def _host(reply: FakeReply) -> FakeChatModel:
    return FakeChatModel(replies=[reply])


def _routed(*models: FakeChatModel) -> RoutedChatModel:
    return RoutedChatModel(
        model="m", hosts=[f"http://h{i}" for i in range(len(models))], models=list(models)
    )


def test_a_host_down_before_its_first_token_fails_over_to_the_next():
    down = _host(FakeReply(fail_after=0, error=OllamaUnavailableError("http://h0")))
    up = _host(FakeReply(text="from h1"))
    chain = build_chat_chain(_routed(down, up))
    assert chain.invoke("hi", CONFIG) == "from h1"
    assert len(down.prompts) == 1 and len(up.prompts) == 1


def test_async_streams_fail_over_the_same_way():
    down = _host(FakeReply(fail_after=0, error=OllamaResponseError("oom", 500)))
    up = _host(FakeReply(text="async answer"))

    async def run() -> str:
        return "".join([chunk.text async for chunk in _routed(down, up).astream("hi")])

    assert asyncio.run(run()) == "async answer"


def test_an_error_that_is_the_answer_does_not_fail_over():
    bad = _host(FakeReply(fail_after=0, error=OllamaResponseError("bad request", 400)))
    other = _host(FakeReply(text="never"))
    with pytest.raises(OllamaResponseError, match="bad request"):
        _routed(bad, other).invoke("hi")
    assert other.prompts == []


def test_after_the_first_token_an_error_is_the_answers():
    cut = _host(FakeReply(text="abc", fail_after=1, error=OllamaUnavailableError("http://h0")))
    other = _host(FakeReply(text="never"))
    with pytest.raises(OllamaUnavailableError):
        list(_routed(cut, other).stream("hi"))
    assert other.prompts == []


def test_every_host_lacking_the_model_is_one_model_not_found():
    a = _host(FakeReply(fail_after=0, error=ModelNotFoundError("m", ["x"])))
    b = _host(FakeReply(fail_after=0, error=ModelNotFoundError("m", ["y"])))
    with pytest.raises(ModelNotFoundError) as caught:
        _routed(a, b).invoke("hi")
    assert caught.value.installed == ["y"] and caught.value.exit_code == 4


def test_the_chain_sees_and_sizes_the_models_inside():
    a, b = _host(FakeReply(text="a")), _host(FakeReply(text="b"))
    routed = _routed(a, b)
    assert chat_models_in(routed) == [a, b]
    resized = sized(routed, 2048)
    assert isinstance(resized, RoutedChatModel) and resized.hosts == routed.hosts
