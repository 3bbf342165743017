"""Tiny Code Llama variants and random checkpoints for end-to-end runs.

The models are the real presets with a tiny architecture swapped in
(``attrs.evolve``), so names, capabilities and prompt formats are the real
ones. Checkpoints are written by ``transformers`` (safetensors +
``config.json``) next to a real ``tokenizer.model``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import attrs

from codellama_zoo import hookimpl, plugins
from codellama_zoo.specs import ModelSpec
from zoo_codellama.plugin import codellama_specs

TINY = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, multiple_of=256, max_seq_len=512)
BUILTINS = (
    "zoo_codellama.plugin",
    "zoo_codellama.chat",
    "zoo_sentencepiece.plugin",
    "zoo_generators.plugin",
    "zoo_infill.plugin",
    "zoo_torch.plugin",
    "zoo_flash_attention.plugin",
)
VARIANTS = ("codellama-7b", "codellama-7b-instruct", "codellama-7b-python", "codellama-70b-instruct", "codellama-34b")


def tiny_spec(spec: ModelSpec) -> ModelSpec:
    config = attrs.evolve(spec.config, **TINY)
    return attrs.evolve(spec, name=f"tiny-{spec.name}", aliases=(), config=config, hf_repo=None, context_length=512)


def tiny_specs() -> list[ModelSpec]:
    return [tiny_spec(s) for s in codellama_specs() if s.name in VARIANTS]


class TinyModels:
    """A plugin object registering the tiny variants."""

    @hookimpl
    def register_models(self, register: Any) -> None:
        for spec in tiny_specs():
            register(spec)


def install_plugin_manager() -> plugins.PluginManager:
    pm = plugins.make_plugin_manager(builtins=BUILTINS, entry_points=False)
    pm.add_plugin(TinyModels(), "tiny_models")
    plugins.set_plugin_manager(pm)
    return pm


def write_checkpoint(dst: Path, tokenizer_model: Path, vocab_size: int, seed: int = 0) -> Path:
    """A random Llama checkpoint in Hugging Face layout, with its tokenizer."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=TINY["dim"],
        intermediate_size=256,
        num_hidden_layers=TINY["n_layers"],
        num_attention_heads=TINY["n_heads"],
        num_key_value_heads=TINY["n_kv_heads"],
        max_position_embeddings=TINY["max_seq_len"],
        rms_norm_eps=1e-5,
        rope_theta=1_000_000.0,
        initializer_range=0.3,  # spread the logits so greedy choices are not near-ties
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dst, safe_serialization=True)
    shutil.copy(tokenizer_model, dst / "tokenizer.model")
    return dst
