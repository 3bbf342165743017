"""Every Code Llama preset: builds, matches its published size, names resolve."""

from __future__ import annotations

import attrs
import pytest

import codellama_zoo
from codellama_zoo.specs import LlamaConfig, meta_ffn_hidden
from zoo_codellama.presets import ARCHITECTURES, PUBLISHED_PARAMS

NAMES = [f"codellama-{size}{suffix}" for size in ("7b", "13b", "34b", "70b") for suffix in ("", "-python", "-instruct")]


def test_twelve_variants_registered() -> None:
    names = [s.name for s in codellama_zoo.models(family="codellama")]
    assert sorted(names) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_param_count_matches_published_size(name: str) -> None:
    spec = codellama_zoo.get_model_spec(name)
    published = PUBLISHED_PARAMS[spec.size] * 1e9
    assert abs(spec.config.param_count() - published) / published < 0.005


@pytest.mark.parametrize(
    ("size", "ffn", "kv_heads", "vocab"),
    [("7b", 11008, 32, 32016), ("13b", 13824, 40, 32016), ("34b", 22016, 8, 32000), ("70b", 28672, 8, 32016)],
)
def test_published_hyperparameters(size: str, ffn: int, kv_heads: int, vocab: int) -> None:
    cfg = ARCHITECTURES[size]
    assert cfg.ffn_hidden == ffn
    assert cfg.kv_heads == kv_heads
    assert cfg.vocab_size == vocab
    assert cfg.rope_theta == 1e6
    assert cfg.norm_eps == 1e-5
    assert cfg.max_seq_len == 16384
    assert cfg.head_dim == 128


def test_meta_ffn_formula_against_llama2_numbers() -> None:
    # Llama 2 70B: dim 8192, multiple_of 4096, ffn_dim_multiplier 1.3 -> 28672
    assert meta_ffn_hidden(8192, 4096, 1.3) == 28672
    assert meta_ffn_hidden(4096, 256, None) == 11008


def test_python_variants_keep_llama2_vocab_and_cannot_infill() -> None:
    for size in ("7b", "13b", "34b"):
        spec = codellama_zoo.get_model_spec(f"codellama-{size}-python")
        assert spec.config.vocab_size == 32000
        assert not spec.supports("infill")


def test_capabilities_are_data() -> None:
    infill = {s.name for s in codellama_zoo.models(family="codellama", capability="infill")}
    assert infill == {"codellama-7b", "codellama-7b-instruct", "codellama-13b", "codellama-13b-instruct"}
    chat = {s.name for s in codellama_zoo.models(family="codellama", capability="chat")}
    assert chat == {f"codellama-{s}-instruct" for s in ("7b", "13b", "34b", "70b")}
    assert codellama_zoo.get_model_spec("codellama-70b-instruct").prompt_format == "codellama-70b-instruct"
    assert codellama_zoo.get_model_spec("codellama-34b-instruct").prompt_format == "codellama-instruct"


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("codellama/CodeLlama-34b-Instruct-hf", "codellama-34b-instruct"),
        ("codellama:34b-instruct", "codellama-34b-instruct"),
        ("codellama:7b", "codellama-7b"),
        ("codellama/CodeLlama-13b-Python-hf", "codellama-13b-python"),
        ("CODELLAMA-70B", "codellama-70b"),
    ],
)
def test_aliases_resolve(alias: str, name: str) -> None:
    assert codellama_zoo.get_model_spec(alias).name == name


def test_aliases_unique_across_all_models() -> None:
    seen: dict[str, str] = {}
    for spec in codellama_zoo.models():
        for name in (spec.name, *spec.aliases):
            assert name.lower() not in seen, f"{name} used by {seen.get(name.lower())} and {spec.name}"
            seen[name.lower()] = spec.name


def test_variants_derive_with_evolve_not_copies() -> None:
    base = codellama_zoo.get_model_spec("codellama-7b").config
    python = codellama_zoo.get_model_spec("codellama-7b-python").config
    assert attrs.evolve(base, vocab_size=32000) == python


def test_unknown_model_suggests_close_matches() -> None:
    with pytest.raises(codellama_zoo.UnknownModelError, match="did you mean 'codellama-34b'"):
        codellama_zoo.get_model_spec("codelama-34b")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(dim=100, n_layers=1, n_heads=3, vocab_size=10), "not divisible by n_heads=3"),
        (dict(dim=64, n_layers=1, n_heads=8, n_kv_heads=3, vocab_size=10), "n_kv_heads=3"),
        (dict(dim=64, n_layers=0, n_heads=8, vocab_size=10), "n_layers must be a positive integer"),
    ],
)
def test_invalid_architecture_is_a_clear_error(kwargs: dict, message: str) -> None:
    with pytest.raises(codellama_zoo.ConfigError, match=message):
        LlamaConfig(**kwargs)
