"""Shared helpers for the MindSpore tests: tiny preset configs and a Hugging Face reference."""

from __future__ import annotations

import os
from typing import Any

import attrs
import numpy as np

os.environ.setdefault("GLOG_v", "3")  # MindSpore's C++ logging, read when mindspore is imported

from codellama_zoo.specs import LlamaConfig  # noqa: E402
from zoo_codellama.presets import ARCHITECTURES  # noqa: E402

HEAD_DIM = 16


def tiny(size: str, n_layers: int = 2, vocab_size: int | None = None) -> LlamaConfig:
    """The preset's shape at a tiny width: same head/kv-head ratio, ffn rule, theta and eps."""
    base = ARCHITECTURES[size]
    n_heads = max(base.n_heads // 8, 2)
    kv = max(base.kv_heads // 8, 1)
    return attrs.evolve(
        base,
        dim=n_heads * HEAD_DIM,
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=kv,
        multiple_of=min(base.multiple_of, 64),
        vocab_size=vocab_size or 512,
        max_seq_len=512,
    )


HF_NAMES = {
    "attention.wq": "self_attn.q_proj",
    "attention.wk": "self_attn.k_proj",
    "attention.wv": "self_attn.v_proj",
    "attention.wo": "self_attn.o_proj",
    "feed_forward.w1": "mlp.gate_proj",
    "feed_forward.w2": "mlp.down_proj",
    "feed_forward.w3": "mlp.up_proj",
    "attention_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}


def hf_model(config: LlamaConfig, seed: int = 0, std: float = 0.1) -> Any:
    """A transformers LlamaForCausalLM with seeded random weights, fp32, eval mode."""
    import torch
    from transformers import LlamaConfig as HFConfig
    from transformers import LlamaForCausalLM

    hf_config = HFConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.dim,
        intermediate_size=config.ffn_hidden,
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        num_key_value_heads=config.kv_heads,
        rms_norm_eps=config.norm_eps,
        rope_theta=config.rope_theta,
        max_position_embeddings=config.max_seq_len,
        tie_word_embeddings=False,
        attn_implementation="eager",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(hf_config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.uniform_(0.5, 1.5)
            else:
                param.normal_(0.0, std)
    return model


def hf_to_canonical(hf_state: dict[str, Any], n_layers: int) -> dict[str, np.ndarray]:
    state = {
        "tok_embeddings.weight": hf_state["model.embed_tokens.weight"],
        "norm.weight": hf_state["model.norm.weight"],
        "output.weight": hf_state["lm_head.weight"],
    }
    for i in range(n_layers):
        for ours, theirs in HF_NAMES.items():
            state[f"layers.{i}.{ours}.weight"] = hf_state[f"model.layers.{i}.{theirs}.weight"]
    return {name: value.detach().float().numpy() for name, value in state.items()}


def left_padded_batch(rng: np.random.Generator, vocab: int, lengths: list[int]) -> tuple[np.ndarray, np.ndarray]:
    width = max(lengths)
    ids = np.zeros((len(lengths), width), np.int64)
    mask = np.zeros((len(lengths), width), np.int64)
    for row, n in enumerate(lengths):
        ids[row, width - n :] = rng.integers(3, vocab, n)
        mask[row, width - n :] = 1
    return ids, mask


def greedy(lm: Any, ids: np.ndarray, mask: np.ndarray, steps: int) -> np.ndarray:
    """Greedy decoding through the LanguageModel contract only."""
    lm.start(ids.shape[0], ids.shape[1] + steps)
    logits = lm.prefill(ids, mask)
    out = []
    for _ in range(steps):
        nxt = logits.argmax(-1)
        out.append(nxt)
        logits = lm.decode(nxt)
    return np.stack(out, 1)


def shared_asset(relative: str) -> Any:
    """A file from ../shared/assets, skipping the test when absent."""
    from shared_assets import asset

    return asset(relative)
