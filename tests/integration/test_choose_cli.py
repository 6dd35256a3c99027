"""Choosing a model from the real CLI: ``ollang models`` (facts and fit), ``ollang models fit``
and ``ollang recommend``, each ``ollang`` a subprocess over the fake Ollama serving models
as a real Ollama reports them (:func:`tests.fake_ollama.real_model`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_process import cli
from tests.fake_ollama import FakeOllama, real_model

MODELS = ["llama3:8b", "llava:7b", "nomic-embed-text", "llama3.1:8b", "qwen3:8b", "gemma:7b"]
FIT_KEYS = {
    "model",
    "ctx",
    "kv_cache_type",
    "weights_bytes",
    "kv_cache_bytes",
    "compute_bytes",
    "total_bytes",
    "gpu_bytes",
    "cpu_bytes",
    "gpu_percent",
    "runs_on",
    "max_ctx",
}


def _env(home: Path, server: FakeOllama) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLANG_", "OLLAMA_"))}
    env.pop("PYTHONPATH", None)
    env.update(OLLANG_HOME=str(home), OLLAMA_HOST=server.host_port, OLLANG_BACKEND="ollama")
    return env


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOllama]:
    with FakeOllama(models=[real_model(name) for name in MODELS]) as fake:
        yield fake


@pytest.fixture
def env(server: FakeOllama, tmp_path: Path) -> dict[str, str]:
    return _env(tmp_path / "home", server)


def ollang(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    done = cli(*args, env=env)
    out, err = done.stdout.decode(), done.stderr.decode()
    assert "Traceback" not in err, err
    return done.returncode, out, err


def shows(server: FakeOllama) -> int:
    return sum(1 for r in server.requests if r.path == "/api/show")


# -- ollang models ---------------------------------------------------------------------------
def test_models_json_has_capabilities_and_fit(server: FakeOllama, env: dict[str, str]) -> None:
    code, out, err = ollang("models", "--json", env=env)
    assert code == 0, err
    models = {m["name"]: m for m in json.loads(out)["models"]}
    assert set(models) == {real_model(n).name for n in MODELS}
    llama3 = models["llama3:8b"]
    assert llama3["capabilities"] == ["completion"]
    assert llama3["parameter_count"] == 8_030_261_248 and llama3["context_length"] == 8192
    assert llama3["details"]["context_length"] == 8192
    assert set(llama3["fit"]) == FIT_KEYS | {"processor"}
    assert llama3["fit"]["ctx"] == 4096 and llama3["fit"]["model"] == "llama3:8b"
    assert models["llava:7b"]["capabilities"] == ["completion", "vision"]
    assert models["nomic-embed-text:latest"]["capabilities"] == ["embedding"]
    assert "thinking" in models["qwen3:8b"]["capabilities"]
    assert llama3["hosts"] and llama3["backend"] == "ollama"  # the listing's fields stay


def test_models_plain_lines_add_capabilities_and_fit(env: dict[str, str]) -> None:
    code, out, _ = ollang("list", env=env)
    assert code == 0
    lines = {line.split(" ", 1)[0]: line for line in out.splitlines()}
    assert lines["llava:7b"].startswith("llava:7b (4.7 GB) completion,vision · ")
    assert re.fullmatch(
        r"llama3:8b \(4\.7 GB\) completion · (100% GPU|100% CPU|\d+%/\d+% CPU/GPU|does not fit)",
        lines["llama3:8b"],
    )


def test_a_second_listing_asks_no_show(server: FakeOllama, env: dict[str, str]) -> None:
    before = shows(server)
    cold = ollang("models", "--json", env=env)[1]
    assert shows(server) - before == len(MODELS)
    warm = ollang("models", "--json", env=env)[1]
    assert shows(server) - before == len(MODELS)  # all from the cache in the data directory
    assert (Path(env["OLLANG_HOME"]) / "model-facts.json").is_file()

    def facts(listing: str) -> list[dict]:  # the fit follows the free RAM, which moves
        return [{**m, "fit": None} for m in json.loads(listing)["models"]]

    assert facts(warm) == facts(cold)


# -- ollang models fit ------------------------------------------------------------------------
def fit_json(env: dict[str, str], *args: str) -> dict:
    code, out, err = ollang("models", "fit", "llama3:8b", *args, "--json", env=env)
    assert code == 0, err
    data = json.loads(out)
    assert set(data) == FIT_KEYS
    return data


def test_fit_on_a_gpu_large_enough(env: dict[str, str]) -> None:
    data = fit_json(env, "--gpu", "8GB", "--ram", "16GB")
    assert data["runs_on"] == "gpu" and data["gpu_percent"] == 100 and data["cpu_bytes"] == 0
    assert data["model"] == "llama3:8b" and data["ctx"] == 4096 and data["max_ctx"] == 8192


def test_fit_split_on_a_small_gpu(env: dict[str, str]) -> None:
    data = fit_json(env, "--gpu", "4GB", "--ram", "16GB")
    assert data["runs_on"] == "split" and 0 < data["gpu_percent"] < 100
    code, out, _ = ollang("models", "fit", "llama3:8b", "--gpu", "4GB", "--ram", "16GB", env=env)
    assert code == 0
    assert f"{100 - data['gpu_percent']}%/{data['gpu_percent']}% CPU/GPU" in out
    assert "described: GPU 4 GB, RAM 16 GB" in out and "largest context that fits" in out
    assert "KV cache" in out and "weights" in out and "total" in out


def test_fit_nowhere_on_a_small_machine(env: dict[str, str]) -> None:
    data = fit_json(env, "--ram", "2GB")
    assert data["runs_on"] == "none" and data["max_ctx"] == 0
    code, out, _ = ollang("models", "fit", "llama3:8b", "--ram", "2GB", env=env)
    assert code == 0 and "does not fit" in out and "no context fits" in out


def test_fit_on_this_machine_names_it(env: dict[str, str]) -> None:
    code, out, _ = ollang("models", "fit", "llama3:8b", env=env)
    assert code == 0 and "this machine: " in out and "free RAM" in out


def test_a_context_above_the_trained_one_is_clamped(env: dict[str, str]) -> None:
    code, out, err = ollang("models", "fit", "llama3:8b", "--ctx", "999999", "--json", env=env)
    assert code == 0, err
    assert json.loads(out)["ctx"] == 8192
    assert "warning:" in err and "999999" in err and "8192" in err


def test_fit_of_a_model_not_installed(env: dict[str, str]) -> None:
    code, _, err = ollang("models", "fit", "phi3", env=env)
    assert code == 4
    assert "'phi3' not found" in err and "pull it with `ollama pull phi3`" in err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--gpu", "eightGB"], "'eightGB' is not a size"),
        (["--ram", "lots"], "'lots' is not a size"),
        (["--ctx", "0"], "--ctx 0 is not above zero"),
        (["--ctx", "-5"], "not above zero"),
        (["--ctx", "many"], "--ctx"),
        (["--kv-cache", "q5_1"], "f16, q8_0, q4_0"),
    ],
)
def test_bad_fit_options_are_usage_errors(
    server: FakeOllama, env: dict[str, str], args: list[str], says: str
) -> None:
    before = len(server.requests)
    code, _, err = ollang("models", "fit", "llama3:8b", *args, env=env)
    assert code == 2 and says in err, err
    assert len(server.requests) == before  # refused before any host was asked


# -- ollang recommend --------------------------------------------------------------------------
def recommended(env: dict[str, str], task: str) -> tuple[int, dict]:
    code, out, err = ollang("recommend", "--for", task, "--json", env=env)
    assert code in (0, 1), err
    return code, json.loads(out)


def test_recommend_for_vision_picks_llava(env: dict[str, str]) -> None:
    code, data = recommended(env, "vision")
    assert code == 0 and data["use"] == "llava:7b" and data["advice"] is None
    assert [m["model"] for m in data["models"]] == ["llava:7b"]
    entry = data["models"][0]
    assert set(entry) == {
        "model",
        "why",
        "fits",
        "processor",
        "tokens_per_s",
        "capabilities",
        "size",
    }
    assert "vision ✓" in entry["why"] and entry["size"] == 4_733_363_377


def test_recommend_for_embedding_picks_nomic(env: dict[str, str]) -> None:
    code, data = recommended(env, "embedding")
    assert code == 0 and data["use"] == "nomic-embed-text:latest"
    code, out, _ = ollang("recommend", "--for", "embedding", env=env)
    assert out.startswith("for embedding, use nomic-embed-text:latest\n")
    assert "1. nomic-embed-text:latest: embedding ✓" in out


def test_recommend_for_tools_leaves_out_models_without_them(env: dict[str, str]) -> None:
    _, data = recommended(env, "tools")
    names = [m["model"] for m in data["models"]]
    assert set(names) == {"llama3.1:8b", "qwen3:8b"} and "llama3:8b" not in names
    assert data["use"] in names


def test_recommend_for_reasoning_puts_thinkers_first(env: dict[str, str]) -> None:
    _, data = recommended(env, "reasoning")
    names = [m["model"] for m in data["models"]]
    assert (
        names[0] == "qwen3:8b" and "llama3:8b" in names and "nomic-embed-text:latest" not in names
    )
    assert "answers without reasoning" in data["models"][-1]["why"]


def test_recommend_uses_measured_speeds(env: dict[str, str]) -> None:
    home = Path(env["OLLANG_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    run = {
        "started_at": "2026-12-04T10:00:00+00:00",
        "models": [
            {"model": "llama3:8b", "tokens_per_s_p50": 3.5, "ttft_p50_s": 1.0, "pass_rate": 1.0},
            {"model": "gemma:7b", "tokens_per_s_p50": 12.25, "ttft_p50_s": 0.5, "pass_rate": 1.0},
        ],
    }
    (home / "evaluations.jsonl").write_text(json.dumps(run) + "\n")
    _, data = recommended(env, "chat")
    top = data["models"][:2]
    assert [m["model"] for m in top] == ["gemma:7b", "llama3:8b"]
    assert top[0]["tokens_per_s"] == 12.25 and "12.2 tok/s measured 2026-12-04" in top[0]["why"]


def test_recommend_with_nothing_suitable_says_what_to_pull(tmp_path: Path) -> None:
    with FakeOllama(models=[real_model("llama3:8b")]) as only_llama3:
        env = _env(tmp_path / "home", only_llama3)
        code, out, err = ollang("recommend", "--for", "vision", env=env)
        assert code == 1, err
        assert "no installed model can read images; try `ollang pull llava`" in out
        code, data = recommended(env, "embedding")
        assert code == 1 and data["use"] is None and data["models"] == []
        assert "nomic-embed-text" in data["advice"]
        code, data = recommended(env, "reasoning")  # a stand-in answers, with the advice
        assert code == 0 and data["use"] == "llama3:8b" and "qwen3" in data["advice"]


def test_recommend_for_an_unknown_task(env: dict[str, str]) -> None:
    code, _, err = ollang("recommend", "--for", "poetry", env=env)
    assert code == 2 and "chat, code, vision, tools, embedding, reasoning" in err
