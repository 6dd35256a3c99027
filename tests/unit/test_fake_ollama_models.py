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

#: Tokenizer sizes of the GGUFs that carry no ``<arch>.vocab_size`` key (see each entry's
#: comment in tests/fake_ollama.py): gemma's 256000 and qwen3's 151936 tokens as their
#: loader dumps list them, llava's 32000 from Mistral-7B-Instruct-v0.2's config.json.
TOKENIZER_SIZE = {"gemma:7b": 256_000, "qwen3:8b": 151_936, "llava:7b": 32_000}


def _key(model: ModelInfo, name: str) -> object:
    return model.model_info.get(f"{model.architecture}.{name}")


def _int(model: ModelInfo, name: str) -> int:
    value = _key(model, name)
    assert isinstance(value, int), name
    return value


def test_the_catalogue_has_the_models_it_promises() -> None:
    assert {
        "llama3:8b",
        "mistral:7b",
        "gemma:7b",
        "llava:7b",
        "nomic-embed-text:latest",
        "llama3.1:8b",
        "qwen3:8b",
    } <= set(REAL_MODELS)


@pytest.mark.parametrize("name", NAMES)
def test_an_entry_is_filed_under_its_own_name(name: str) -> None:
    assert REAL_MODELS[name].name == name


@pytest.mark.parametrize("name", NAMES)
def test_the_keys_every_show_answer_has_are_there(name: str) -> None:
    model = REAL_MODELS[name]
    info = model.model_info
    arch = info["general.architecture"]
    assert isinstance(arch, str) and arch
    assert isinstance(info["general.parameter_count"], int)
    assert info[f"{arch}.context_length"] == model.context_length
    for key in ("block_count", "embedding_length", "feed_forward_length", "attention.head_count"):
        _int(model, key)
    assert all(key.startswith(("general.", f"{arch}.", "tokenizer.")) for key in info)


@pytest.mark.parametrize("name", NAMES)
def test_parameter_size_is_the_parameter_count_rounded(name: str) -> None:
    """Ollama prints "8.0B" for 8,030,261,248 and "9B" for 8,537,680,896 (gemma:7b): the
    stated size is the count to the digits it shows, give or take half a unit of the last."""
    model = REAL_MODELS[name]
    stated = parameter_count(model.parameter_size)
    actual = model.model_info["general.parameter_count"]
    assert stated is not None
    number = model.parameter_size.rstrip("KMBT")
    places = len(number.split(".")[1]) if "." in number else 0
    unit = stated / float(number)
    assert abs(actual - stated) <= 0.5 * unit / 10**places


@pytest.mark.parametrize("name", NAMES)
def test_heads_times_head_size_is_the_embedding_where_the_model_is_built_so(name: str) -> None:
    model = REAL_MODELS[name]
    heads = _int(model, "attention.head_count")
    embedding = _int(model, "embedding_length")
    kv_heads = _key(model, "attention.head_count_kv")
    if kv_heads is not None:
        assert isinstance(kv_heads, int) and heads % kv_heads == 0
    key_length = _key(model, "attention.key_length")
    if key_length is None:  # the head size is implicit: embedding / heads
        assert embedding % heads == 0
        rope = _key(model, "rope.dimension_count")
        assert rope is None or rope == embedding // heads
    elif model.architecture == "gemma":  # gemma 7B: 16 heads of 256 over a 3072 embedding
        assert isinstance(key_length, int) and key_length * heads == 4096 != embedding
        assert _key(model, "attention.value_length") == key_length
    else:
        assert isinstance(key_length, int) and key_length * heads == embedding
        assert _key(model, "attention.value_length") == key_length


@pytest.mark.parametrize(
    "name", [n for n in NAMES if REAL_MODELS[n].architecture in ("llama", "gemma", "qwen3")]
)
def test_the_parameter_count_is_the_weights_the_header_describes(name: str) -> None:
    """Counting a decoder's weights from its shape gives general.parameter_count: per block
    q, k, v, o, a gated FFN and two norms (qwen3 adds its q/k norms), then the embeddings
    (tied in gemma, so counted once) and the final norm. llama3.1's GGUF also holds its
    64-float rope_freqs tensor."""
    model = REAL_MODELS[name]
    embedding = _int(model, "embedding_length")
    heads = _int(model, "attention.head_count")
    kv_heads = _int(model, "attention.head_count_kv")
    head_k = _key(model, "attention.key_length") or embedding // heads
    head_v = _key(model, "attention.value_length") or head_k
    assert isinstance(head_k, int) and isinstance(head_v, int)
    vocab = _key(model, "vocab_size") or TOKENIZER_SIZE[name]
    assert isinstance(vocab, int)
    attention = embedding * (heads * head_k + kv_heads * head_k + kv_heads * head_v)
    attention += heads * head_v * embedding
    norms = 2 * embedding + (2 * head_k if model.architecture == "qwen3" else 0)
    block = attention + 3 * embedding * _int(model, "feed_forward_length") + norms
    tied = model.architecture == "gemma"
    counted = _int(model, "block_count") * block + vocab * embedding * (1 if tied else 2)
    counted += embedding
    extra = _int(model, "rope.dimension_count") // 2 if name == "llama3.1:8b" else 0
    assert model.model_info["general.parameter_count"] == counted + extra


@pytest.mark.parametrize("name", NAMES)
def test_capabilities_are_ollama_s_names(name: str) -> None:
    capabilities = REAL_MODELS[name].capabilities
    assert capabilities and set(capabilities) <= OLLAMA_CAPABILITIES
    assert len(set(capabilities)) == len(capabilities)
    embeds = "embedding" in capabilities
    assert embeds != ("completion" in capabilities)


def test_capabilities_are_the_ones_ollama_reports() -> None:
    assert REAL_MODELS["llama3:8b"].capabilities == ["completion"]
    assert REAL_MODELS["llama3.1:8b"].capabilities == ["completion", "tools"]
    assert REAL_MODELS["qwen3:8b"].capabilities == ["completion", "tools", "thinking"]
    assert REAL_MODELS["nomic-embed-text:latest"].capabilities == ["embedding"]
    assert REAL_MODELS["llava:7b"].capabilities == ["completion", "vision"]
    assert REAL_MODELS["llava:7b"].details()["families"] == ["llama", "clip"]


@pytest.mark.parametrize("name", NAMES)
def test_sizes_and_digests_look_like_ollama_s(name: str) -> None:
    model = REAL_MODELS[name]
    assert 10_000_000 < model.size < 20_000_000_000
    assert len(model.digest) == 64 and int(model.digest, 16) >= 0
    assert model.family in model.families
    assert model.details()["quantization_level"] == model.quantization_level
    # A Q4 file holds about half a byte a weight, F16 two.
    bytes_per_weight = model.size / model.model_info["general.parameter_count"]
    expected = 2.0 if model.quantization_level == "F16" else 0.55
    assert expected * 0.8 < bytes_per_weight < expected * 1.25


@pytest.mark.parametrize("name", [n for n in NAMES if REAL_MODELS[n].loaded_size])
def test_a_published_loaded_size_is_more_than_the_file(name: str) -> None:
    model = REAL_MODELS[name]
    assert model.size < model.loaded_size < 2 * model.size
    assert 0 < model.loaded_context_length <= model.context_length
    assert model.size_vram == 0  # a CPU load, as the fake always said, unless a test sets it


def test_real_model_is_a_fresh_copy() -> None:
    first = real_model("llama3:8b")
    first.model_info["llama.context_length"] = 1
    first.capabilities.append("tools")
    assert REAL_MODELS["llama3:8b"].model_info["llama.context_length"] == 8192
    assert real_model("llama3:8b").capabilities == ["completion"]
    assert real_model("nomic-embed-text") == REAL_MODELS["nomic-embed-text:latest"]


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
    assert (model.size, model.loaded_size, model.size_vram) == (4_661_224_676, 0, 0)
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
