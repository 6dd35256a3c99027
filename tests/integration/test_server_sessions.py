"""Issue 12 over HTTP, the real server on a port over the fake Ollama: sessions that keep
their settings, images in requests, renaming sessions, the default model for the page."""

from __future__ import annotations

import base64

import httpx
import pytest

from ollang.server import ServerSettings
from ollang.server.testing import LiveServer
from tests.fake_ollama import FakeOllama, ModelInfo

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
B64 = base64.b64encode(PNG).decode()


@pytest.fixture
def fake():
    with FakeOllama(models=[ModelInfo("llama3:latest"), ModelInfo("mistral:latest")]) as f:
        yield f


@pytest.fixture
def live(fake, tmp_path):
    settings = ServerSettings(
        store_url=f"sqlite:///{tmp_path / 's.db'}",
        ollama_url=fake.url,
        backend="ollama",
        api_keys=["k1", "k2"],
    )
    with LiveServer(settings) as server:
        yield server


def client(live, key: str = "k1") -> httpx.Client:
    return httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_the_readmes_example_continues_with_the_sessions_model_and_system_prompt(live, fake):
    with client(live) as c:
        first = c.post(
            "/chat", json={"message": "Hello", "model": "mistral", "system": "Be terse."}
        )
        sid = first.json()["session_id"]
        second = c.post("/chat", json={"message": "And in French?", "session_id": sid}).json()
        body = fake.chat_requests()[-1]
        assert body["model"] == "mistral:latest" and second["model"] == "mistral:latest"
        assert body["messages"][0] == {"role": "system", "content": "Be terse."}
        # An override is used, shown in the answer's model field, and kept for later turns.
        third = c.post("/chat", json={"message": "x", "session_id": sid, "model": "llama3"})
        assert third.json()["model"] == "llama3:latest"
        c.post("/chat", json={"message": "y", "session_id": sid})
        assert fake.chat_requests()[-1]["model"] == "llama3:latest"
        session = c.get(f"/sessions/{sid}").json()["session"]
        assert session["system"] == "Be terse." and session["model"] == "llama3:latest"
        streamed = c.post(
            "/chat/stream", json={"message": "z", "session_id": sid, "options": {"seed": 3}}
        )
        assert streamed.status_code == 200
        assert fake.chat_requests()[-1]["options"]["seed"] == 3
        c.post("/chat", json={"message": "w", "session_id": sid})
        assert fake.chat_requests()[-1]["options"]["seed"] == 3, "options are kept too"


def test_images_reach_the_model_and_are_kept_with_the_session(live, fake):
    with client(live) as c:
        r = c.post("/chat", json={"message": "what is it?", "images": [B64], "session_id": "img"})
        assert r.status_code == 200, r.text
        assert fake.chat_requests()[-1]["messages"][-1]["images"] == [B64]
        c.post("/chat", json={"message": "and now?", "session_id": "img"})
        assert fake.chat_requests()[-1]["messages"][0]["images"] == [B64], "resent with history"
        stored = c.get("/sessions/img").json()["messages"][0]
        assert stored["images"] == [f"data:image/png;base64,{B64}"]
        as_data_url = c.post(
            "/generate", json={"prompt": "describe", "images": [f"data:image/png;base64,{B64}"]}
        )
        assert as_data_url.status_code == 200
        assert [r.body for r in fake.requests if r.path == "/api/chat"][-1]["messages"][-1][
            "images"
        ] == [B64]


def test_bad_images_are_clear_errors(live, fake):
    before = len(fake.chat_requests())
    with client(live) as c:
        text = base64.b64encode(b"just some words").decode()
        wrong = c.post("/chat", json={"message": "x", "images": [text]})
        assert wrong.status_code == 422 and "not an image" in wrong.json()["error"]
        garbage = c.post("/chat", json={"message": "x", "images": ["%%%"]})
        assert garbage.status_code == 422 and "base64" in garbage.json()["error"]
        big = base64.b64encode(PNG + b"\0" * (11 * 1024 * 1024)).decode()
        large = c.post("/chat", json={"message": "x", "images": [big]})
        assert large.status_code == 413 and "10 MiB" in large.json()["error"]
        many = c.post("/chat", json={"message": "x", "images": [B64] * 9})
        assert many.status_code == 422
    assert len(fake.chat_requests()) == before


def test_rename_and_retitle_a_session(live):
    with client(live) as c, client(live, "k2") as other:
        c.post("/chat", json={"message": "hi", "session_id": "old"})
        c.post("/chat", json={"message": "hi", "session_id": "taken"})
        renamed = c.patch("/sessions/old", json={"id": "new", "title": "My chat"})
        assert renamed.status_code == 200 and renamed.json()["title"] == "My chat"
        assert c.get("/sessions/old").status_code == 404
        assert c.get("/sessions/new").json()["session"]["title"] == "My chat"
        assert c.patch("/sessions/new", json={"id": "taken"}).status_code == 409
        assert other.patch("/sessions/new", json={"title": "mine now"}).status_code == 404
        assert c.patch("/sessions/new", json={"id": "../x"}).status_code == 422


def test_models_name_the_default_model(live):
    with client(live) as c:
        listing = c.get("/models").json()
        assert listing["default_model"] == "llama3:latest"
        assert {m["name"] for m in listing["models"]} == {"llama3:latest", "mistral:latest"}
