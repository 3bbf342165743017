"""Helpers for the torch runtime tests: tiny configs from the real presets, and
``transformers.LlamaForCausalLM`` (the independent reference) on the same tensors."""

from __future__ import annotations

from typing import Any

import attrs
import torch

from codellama_zoo.specs import LlamaConfig
from zoo_torch.checkpoints import config_to_hf, ours_to_hf
from zoo_torch.model import Transformer


def shrink(config: LlamaConfig, *, n_layers: int = 2, head_dim: int = 16, kv_heads: int | None = None) -> LlamaConfig:
    """A tiny config with the preset's head grouping (n_rep), theta, vocab, norm eps and FFN rule."""
    kv = kv_heads if kv_heads is not None else (2 if config.n_rep > 1 else 4)
    heads = kv * config.n_rep
    return attrs.evolve(
        config,
        dim=heads * head_dim,
        n_layers=n_layers,
        n_heads=heads,
        n_kv_heads=None if config.n_kv_heads is None else kv,
    )


def random_model(config: LlamaConfig, seed: int = 0, std: float = 0.05, dtype: torch.dtype = torch.float32,
                 attention: str = "eager") -> Transformer:
    model = Transformer(config, dtype=dtype)
    model.init_weights(std=std, generator=torch.Generator().manual_seed(seed))
    for layer in model.layers:  # norms too, so that a swapped norm weight would show
        g = torch.Generator().manual_seed(seed + 1000 + layer.layer_id)  # type: ignore[union-attr]
        with torch.no_grad():
            for norm in (layer.attention_norm, layer.ffn_norm):  # type: ignore[union-attr]
                norm.weight.copy_(1 + 0.1 * torch.randn(norm.weight.shape, generator=g))
    model.set_attention(attention)
    return model.eval()


def hf_config(config: LlamaConfig, attn: str = "eager") -> Any:
    import transformers

    fields = {k: v for k, v in config_to_hf(config).items() if k not in ("architectures", "torch_dtype")}
    cfg = transformers.LlamaConfig(**fields)
    cfg._attn_implementation = attn
    return cfg


def hf_model(model: Transformer, attn: str = "eager") -> Any:
    """transformers' Llama holding the very same tensors as ``model`` (no copy)."""
    import transformers

    cfg = hf_config(model.config, attn)
    with torch.device("meta"):
        hf = transformers.LlamaForCausalLM(cfg)
    sd = {ours_to_hf(k): v for k, v in model.state_dict().items()}
    missing, unexpected = hf.load_state_dict(sd, assign=True, strict=False)
    assert not unexpected and all("rotary" in m for m in missing), (missing, unexpected)
    rotary = hf.model.rotary_emb
    inv_freq, _ = rotary.compute_default_rope_parameters(cfg)
    rotary.inv_freq = inv_freq
    rotary.original_inv_freq = inv_freq.clone()
    return hf.eval()


def left_padded(vocab: int, batch: int, length: int, pads: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids (B, T) and a mask with ``pads[b]`` padding positions on the left of row b."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    for b, p in enumerate(pads):
        mask[b, :p] = 0
        ids[b, :p] = 0
    return ids, mask


def hf_positions(mask: torch.Tensor) -> torch.Tensor:
    """RoPE positions of a left-padded batch, as transformers' generate() derives them."""
    pos = mask.long().cumsum(-1) - 1
    return pos.masked_fill(mask == 0, 1)


def max_diff_on_tokens(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    """Max |a - b| over the real (unpadded) positions of (B, T, V) logits."""
    return float((a - b).abs()[mask.bool()].max())
