"""What ``GET /models`` says of each model, and ``GET /models/{name}/fit`` (issue 21): the
real server on a real port, in front of the Ollama-protocol test server with models as a
real Ollama reports them (``real_model``: their /api/show headers and capabilities).

The machine is this one, whatever it has: the tests check the numbers that do not depend
on it (the KV cache, the sums) and that the placement is consistent with itself.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import httpx
import pytest

from ollang.server import ServerSettings
from ollang.server.testing import LiveServer
from tests.fake_ollama import FakeOllama, real_model

#: A model published on Hugging Face, as Ollama names it once pulled from there.
HF_NAME = "hf.co/someone/Llama-3-8B-GGUF:Q4_K_M"
NAMES = ["llama3:8b", "llava:7b", "nomic-embed-text", "qwen3:8b"]
#: llama3 8B's KV cache at 8192 tokens in f16: 32 layers x 8192 positions x 8 KV heads x
#: (128 + 128) K and V values x 2 bytes.
LLAMA3_KV_8192 = 1_073_741_824
PROCESSOR = re.compile(r"100% GPU|100% CPU|\d{1,2}%/\d{1,2}% CPU/GPU|does not fit")
KEY = "fit-key"


def models() -> list[Any]:
    hf = dataclasses.replace(real_model("llama3:8b"), name=HF_NAME, digest="")
    return [*(real_model(n) for n in NAMES), hf]


def settings(tmp_path, fake: FakeOllama, **extra: Any) -> ServerSettings:
    return ServerSettings(
        store_url=f"sqlite:///{tmp_path / 'sessions.db'}",
        ollama_url=fake.url,
        backend="ollama",
        default_model="llama3:8b",
        **extra,
    )


@pytest.fixture(scope="module")
def fake():
    with FakeOllama(models=models()) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(fake, tmp_path_factory):
    with (
        LiveServer(settings(tmp_path_factory.mktemp("fit"), fake)) as live,
        httpx.Client(base_url=live.url, timeout=20) as c,
    ):
        yield c


def shows(fake: FakeOllama) -> int:
    return sum(1 for r in fake.requests if r.path == "/api/show")


def json_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "Traceback" not in response.text
    body = response.json()
    assert isinstance(body["error"], str) and body["error"] and "hint" in body
    return body


def check_fit(fit: dict[str, Any]) -> None:
    """What holds of any fit on any machine."""
    assert fit["total_bytes"] == fit["weights_bytes"] + fit["kv_cache_bytes"] + fit["compute_bytes"]
    assert PROCESSOR.fullmatch(fit["processor"]), fit["processor"]
    runs_on = fit["runs_on"]
    if runs_on == "gpu":
        assert fit["processor"] == "100% GPU" and fit["cpu_bytes"] == 0 < fit["gpu_bytes"]
    elif runs_on == "cpu":
        assert fit["processor"] == "100% CPU" and fit["gpu_bytes"] == 0
        assert fit["cpu_bytes"] == fit["total_bytes"]
    elif runs_on == "split":
        assert fit["processor"] == f"{100 - fit['gpu_percent']}%/{fit['gpu_percent']}% CPU/GPU"
    else:
        assert runs_on == "none" and fit["processor"] == "does not fit"
        assert fit["gpu_bytes"] == fit["cpu_bytes"] == 0
    assert (fit["max_ctx"] >= fit["ctx"]) == (runs_on != "none")


# -- GET /models -------------------------------------------------------------------------
def test_models_list_capabilities_parameters_context_quantization_and_fit(client):
    listed = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert sorted(listed) == sorted(
        [HF_NAME, "llama3:8b", "llava:7b", "nomic-embed-text:latest", "qwen3:8b"]
    )
    assert "vision" in listed["llava:7b"]["capabilities"]
    assert listed["nomic-embed-text:latest"]["capabilities"] == ["embedding"]
    assert {"tools", "thinking"} <= set(listed["qwen3:8b"]["capabilities"])

    llama3 = listed["llama3:8b"]
    assert llama3["capabilities"] == ["completion"]
    assert llama3["parameter_count"] == 8_030_261_248
    assert llama3["context_length"] == 8192 == llama3["details"]["context_length"]
    assert llama3["quantization"] == "Q4_0"
    fit = llama3["fit"]
    # Ollama's default context (4096, below the trained 8192), the file as the weights.
    assert fit["model"] == "llama3:8b" and fit["ctx"] == 4096 and fit["kv_cache_type"] == "f16"
    assert fit["weights_bytes"] == llama3["size"] == 4_661_224_676
    assert fit["kv_cache_bytes"] == LLAMA3_KV_8192 // 2
    assert fit["warning"] is None
    check_fit(fit)
    for model in listed.values():
        check_fit(model["fit"])
    # The listing as before: the same fields, hosts included.
    assert llama3["hosts"] and llama3["details"]["family"] == "llama"


def test_a_second_listing_asks_ollama_nothing_new(fake, tmp_path):
    """/api/show once per model digest; the next listing (and a fit) from memory."""
    with (
        LiveServer(settings(tmp_path, fake)) as live,
        httpx.Client(base_url=live.url, timeout=20) as c,
    ):
        before = shows(fake)
        first = c.get("/models").json()["models"]
        assert shows(fake) - before == len(first) == 5
        second = c.get("/models").json()["models"]
        assert second == first
        assert c.get("/models/llava:7b/fit", params={"ctx": 2048}).status_code == 200
        assert shows(fake) - before == 5


# -- GET /models/{name}/fit --------------------------------------------------------------
def test_fit_of_llama3_at_8192(client):
    r = client.get("/models/llama3:8b/fit", params={"ctx": 8192})
    assert r.status_code == 200, r.text
    fit = r.json()
    assert fit["model"] == "llama3:8b" and fit["ctx"] == 8192 and fit["kv_cache_type"] == "f16"
    assert fit["kv_cache_bytes"] == LLAMA3_KV_8192
    assert fit["weights_bytes"] == 4_661_224_676
    assert fit["warning"] is None
    check_fit(fit)
    # q8_0: 34 bytes for 32 values instead of 64.
    q8 = client.get("/models/llama3:8b/fit", params={"ctx": 8192, "kv_cache": "q8_0"}).json()
    assert q8["kv_cache_type"] == "q8_0" and q8["kv_cache_bytes"] == LLAMA3_KV_8192 * 34 // 64
    check_fit(q8)
    # Without ctx: Ollama's default, as in the listing.
    assert client.get("/models/llama3:8b/fit").json()["ctx"] == 4096


def test_a_context_above_the_trained_one_is_clamped_with_a_warning(client):
    fit = client.get("/models/llama3:8b/fit", params={"ctx": 100_000}).json()
    assert fit["ctx"] == 8192 and fit["kv_cache_bytes"] == LLAMA3_KV_8192
    assert "100000" in fit["warning"] and "8192" in fit["warning"]
    check_fit(fit)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"kv_cache": "q9_9"}, "kv_cache"),
        ({"kv_cache": ""}, "kv_cache"),
        ({"ctx": "0"}, "ctx"),
        ({"ctx": "-5"}, "ctx"),
        ({"ctx": "many"}, "ctx"),
        ({"ctx": str(2**40)}, "ctx"),
    ],
)
def test_bad_ctx_or_kv_cache_is_a_422_naming_the_field(client, params, field):
    body = json_error(client.get("/models/llama3:8b/fit", params=params), 422)
    assert [f["field"] for f in body["fields"]] == [field]
    assert field in body["error"]


def test_unknown_model_is_a_404_with_the_pull_hint(client, fake):
    body = json_error(client.get("/models/phi3:mini/fit"), 404)
    assert "phi3:mini" in body["error"]
    assert "ollama pull phi3:mini" in body["hint"] and "llama3:8b" in body["hint"]
    assert not [r for r in fake.requests if r.path == "/api/pull"]


def test_names_with_slashes_and_the_other_models_routes(client):
    fit = client.get(f"/models/{HF_NAME}/fit", params={"ctx": 8192}).json()
    assert fit["model"] == HF_NAME and fit["kv_cache_bytes"] == LLAMA3_KV_8192
    json_error(client.get("/models/someone/missing:Q4_K_M/fit"), 404)
    # Not a model name: a 422 naming it, never a path outside the route.
    assert json_error(client.get("/models/a/.hidden/fit"), 422)["fields"][0]["field"] == "name"
    # /models/pull is still the pull (forbidden here); /models/pull/fit looks for a model "pull".
    pull = json_error(client.post("/models/pull", json={"model": "x"}), 403)
    assert "--allow-pull" in pull["hint"]
    assert "'pull'" in json_error(client.get("/models/pull/fit"), 404)["error"]
    json_error(client.get("/models/llama3:8b/fits"), 404)


def test_models_the_server_does_not_allow_answer_as_unknown_ones_and_keys_apply(fake, tmp_path):
    config = settings(tmp_path, fake, allow_models=["llama3*"], api_keys=[KEY])
    with (
        LiveServer(config) as live,
        httpx.Client(base_url=live.url, timeout=20) as c,
    ):
        json_error(c.get("/models/llama3:8b/fit"), 401)
        c.headers["Authorization"] = f"Bearer {KEY}"
        assert c.get("/models/llama3:8b/fit").status_code == 200
        hidden = json_error(c.get("/models/llava:7b/fit"), 404)
        unknown = json_error(c.get("/models/phi3:mini/fit"), 404)
        assert hidden["error"] == "model 'llava:7b' not found"
        assert hidden["hint"] == unknown["hint"].replace("phi3:mini", "llava:7b")
        assert "llava" not in hidden["hint"].replace("ollama pull llava:7b", "").replace(
            "models pull llava:7b", ""
        )
        names = [m["name"] for m in c.get("/models").json()["models"]]
        assert names == ["llama3:8b"]
