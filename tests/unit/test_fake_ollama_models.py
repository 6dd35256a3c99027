"""The fake Ollama's catalogue of real models agrees with itself (no sockets here)."""

from __future__ import annotations

import pytest

from tests.fake_ollama import (
    OLLAMA_CAPABILITIES,
    REAL_MODELS,
    ModelInfo,
    parameter_count,
    real_model,
)

NAMES = sorted(REAL_MODELS)


def _key(model: ModelInfo, name: str) -> object:
    return model.model_info.get(f"{model.architecture}.{name}")


def test_the_catalogue_has_the_models_it_promises() -> None:
    assert {"llama3:8b", "mistral:7b", "gemma:7b"} <= set(REAL_MODELS)


@pytest.mark.parametrize("name", NAMES)
def test_an_entry_is_filed_under_its_own_name(name: str) -> None:
    assert REAL_MODELS[name].name == name


@pytest.mark.parametrize("name", NAMES)
def test_the_keys_every_show_answer_has_are_there(name: str) -> None:
    info = REAL_MODELS[name].model_info
    arch = info["general.architecture"]
    assert isinstance(arch, str) and arch
    assert isinstance(info["general.parameter_count"], int)
    assert info[f"{arch}.context_length"] == REAL_MODELS[name].context_length
    for key in ("block_count", "embedding_length", "attention.head_count"):
        assert isinstance(info[f"{arch}.{key}"], int), key


@pytest.mark.parametrize("name", NAMES)
def test_parameter_size_is_the_parameter_count_rounded(name: str) -> None:
    """Ollama prints "8.0B" for 8,030,261,248 and "9B" for 8,537,680,896 (gemma:7b):
    one decimal below 10 units when it has one, else a whole number."""
    model = REAL_MODELS[name]
    stated = parameter_count(model.parameter_size)
    actual = model.model_info["general.parameter_count"]
    assert stated is not None
    digits = model.parameter_size.rstrip("KMBT").split(".")
    places = len(digits[1]) if len(digits) == 2 else 0
    unit = stated / float(model.parameter_size.rstrip("KMBT"))
    assert abs(actual - stated) <= 0.5 * unit / 10**places + 1


@pytest.mark.parametrize("name", NAMES)
def test_heads_times_head_size_is_the_embedding_where_the_model_is_built_so(name: str) -> None:
    model = REAL_MODELS[name]
    heads = _key(model, "attention.head_count")
    kv_heads = _key(model, "attention.head_count_kv")
    embedding = _key(model, "embedding_length")
    assert isinstance(heads, int) and isinstance(embedding, int)
    if kv_heads is not None:
        assert isinstance(kv_heads, int) and heads % kv_heads == 0
    key_length = _key(model, "attention.key_length")
    if key_length is None:  # the head size is implicit: embedding / heads
        assert embedding % heads == 0
        rope = _key(model, "rope.dimension_count")
        if rope is not None:
            assert rope == embedding // heads
    elif model.architecture == "gemma":  # gemma 7B: 16 heads of 256 over a 3072 embedding
        assert key_length * heads != embedding
        assert _key(model, "attention.value_length") == key_length
    else:
        assert key_length * heads == embedding
        assert _key(model, "attention.value_length") == key_length


@pytest.mark.parametrize("name", NAMES)
def test_capabilities_are_ollama_s_names(name: str) -> None:
    capabilities = REAL_MODELS[name].capabilities
    assert capabilities and set(capabilities) <= OLLAMA_CAPABILITIES
    assert len(set(capabilities)) == len(capabilities)
    embeds = "embedding" in capabilities
    assert embeds != ("completion" in capabilities)


@pytest.mark.parametrize("name", NAMES)
def test_sizes_and_digests_look_like_ollama_s(name: str) -> None:
    model = REAL_MODELS[name]
    assert 10_000_000 < model.size < 20_000_000_000
    assert len(model.digest) == 64 and int(model.digest, 16) >= 0
    assert model.family in model.families
    assert model.details()["quantization_level"] == model.quantization_level


def test_real_model_is_a_fresh_copy() -> None:
    first = real_model("llama3:8b")
    first.model_info["llama.context_length"] = 1
    first.capabilities.append("tools")
    assert REAL_MODELS["llama3:8b"].model_info["llama.context_length"] == 8192
    assert real_model("llama3:8b").capabilities == ["completion"]


def test_a_plain_model_info_reports_what_it_always_did() -> None:
    model = ModelInfo("llama3")
    assert model.name == "llama3:latest"
    assert model.context_length == 8192
    assert model.capabilities == ["completion", "tools"]
    assert model.model_info == {
        "general.architecture": "llama",
        "general.parameter_count": 8_030_261_248,
        "llama.context_length": 8192,
    }
    assert ModelInfo("tiny", context_length=512).model_info["llama.context_length"] == 512
    assert ModelInfo("nomic-embed-text").capabilities == ["embedding"]


def test_a_given_context_length_wins_over_model_info() -> None:
    model = ModelInfo("x", model_info={"llama.context_length": 32768})
    assert model.context_length == 32768
    shrunk = ModelInfo("x", context_length=512, model_info={"llama.context_length": 32768})
    assert shrunk.model_info["llama.context_length"] == 512


@pytest.mark.parametrize(
    ("text", "count"),
    [("8.0B", 8_000_000_000), ("137M", 137_000_000), ("9B", 9_000_000_000), ("big", None)],
)
def test_parameter_count_reads_parameter_size(text: str, count: int | None) -> None:
    assert parameter_count(text) == count
