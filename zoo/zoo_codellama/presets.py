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



def _codellama(
    *, dim: int, n_layers: int, n_heads: int, vocab_size: int, n_kv_heads: int | None = None,
    ffn_dim_multiplier: float | None = None, multiple_of: int = 256,
) -> LlamaConfig:
    """What every Code Llama shares: RMSNorm eps 1e-5, RoPE theta 1e6, 16k context."""
    return LlamaConfig(
        dim=dim, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads, vocab_size=vocab_size,
        multiple_of=multiple_of, ffn_dim_multiplier=ffn_dim_multiplier, norm_eps=1e-5,
        rope_theta=ROPE_THETA, max_seq_len=CONTEXT,
    )


ARCHITECTURES: dict[str, LlamaConfig] = {
    # CodeLlama-7b/params.json: dim 4096, n_layers 32, n_heads 32, vocab 32016 → ffn 11008
    "7b": _codellama(dim=4096, n_layers=32, n_heads=32, vocab_size=CODELLAMA_VOCAB),
    # CodeLlama-13b/params.json: dim 5120, n_layers 40, n_heads 40, vocab 32016 → ffn 13824
    "13b": _codellama(dim=5120, n_layers=40, n_heads=40, vocab_size=CODELLAMA_VOCAB),
    # CodeLlama-34b/params.json: dim 8192, n_layers 48, n_heads 64, n_kv_heads 8,
    # ffn_dim_multiplier 1.0, vocab 32000 (no infill pieces) → ffn 22016
    "34b": _codellama(
        dim=8192, n_layers=48, n_heads=64, n_kv_heads=8, ffn_dim_multiplier=1.0, vocab_size=LLAMA2_VOCAB
    ),
    # CodeLlama-70b/params.json: dim 8192, n_layers 80, n_heads 64, n_kv_heads 8,
    # multiple_of 4096, ffn_dim_multiplier 1.3, vocab 32016 → ffn 28672
    "70b": _codellama(
        dim=8192, n_layers=80, n_heads=64, n_kv_heads=8, ffn_dim_multiplier=1.3, multiple_of=4096,
        vocab_size=CODELLAMA_VOCAB,
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
