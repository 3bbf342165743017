"""Code Llama architecture presets, keyed by exact size.

Numbers come from Meta's released ``params.json`` files (facebookresearch/
codellama, download.sh → CodeLlama-{7,13,34,70}b*/params.json) and the
matching Hugging Face ``config.json`` files (codellama/CodeLlama-*-hf). Python
variants are the base preset with the unextended Llama 2 vocabulary; nothing
is copied between presets, variants derive with ``attrs.evolve``.
"""

from __future__ import annotations

import attrs

from codellama_zoo.specs import LlamaConfig

LLAMA2_VOCAB = 32000  # Llama 2 tokenizer.model
CODELLAMA_VOCAB = 32016  # + 16 pieces (▁<PRE> 32007, ▁<SUF> 32008, ▁<MID> 32009, ▁<EOT> 32010, ...)
CONTEXT = 16384  # long-context fine-tuning length (Code Llama paper, section 2.4)
ROPE_THETA = 1_000_000.0  # "we increase the base period θ from 10,000 to 1,000,000"

_COMMON = dict(norm_eps=1e-5, rope_theta=ROPE_THETA, max_seq_len=CONTEXT, multiple_of=256)

ARCHITECTURES: dict[str, LlamaConfig] = {
    # CodeLlama-7b/params.json: dim 4096, n_layers 32, n_heads 32, vocab 32016 → ffn 11008
    "7b": LlamaConfig(dim=4096, n_layers=32, n_heads=32, vocab_size=CODELLAMA_VOCAB, **_COMMON),
    # CodeLlama-13b/params.json: dim 5120, n_layers 40, n_heads 40, vocab 32016 → ffn 13824
    "13b": LlamaConfig(dim=5120, n_layers=40, n_heads=40, vocab_size=CODELLAMA_VOCAB, **_COMMON),
    # CodeLlama-34b/params.json: dim 8192, n_layers 48, n_heads 64, n_kv_heads 8,
    # ffn_dim_multiplier 1.0, vocab 32000 (no infill pieces) → ffn 22016
    "34b": LlamaConfig(
        dim=8192, n_layers=48, n_heads=64, n_kv_heads=8, ffn_dim_multiplier=1.0,
        vocab_size=LLAMA2_VOCAB, **_COMMON,
    ),
    # CodeLlama-70b/params.json: dim 8192, n_layers 80, n_heads 64, n_kv_heads 8,
    # multiple_of 4096, ffn_dim_multiplier 1.3, vocab 32016 → ffn 28672
    "70b": LlamaConfig(
        dim=8192, n_layers=80, n_heads=64, n_kv_heads=8, ffn_dim_multiplier=1.3,
        vocab_size=CODELLAMA_VOCAB, **{**_COMMON, "multiple_of": 4096},
    ),
}

# Sizes as the model cards and the paper state them (billions of parameters).
PUBLISHED_PARAMS: dict[str, float] = {"7b": 6.74, "13b": 13.02, "34b": 33.74, "70b": 68.98}


def architecture(size: str, variant: str) -> LlamaConfig:
    """The config of one variant: Python models of 7B/13B keep Llama 2's vocabulary."""
    base = ARCHITECTURES[size]
    if variant == "python" and size in ("7b", "13b"):
        # CodeLlama-{7,13}b-Python-hf/config.json: vocab_size 32000 (not trained to infill)
        return attrs.evolve(base, vocab_size=LLAMA2_VOCAB)
    return base
