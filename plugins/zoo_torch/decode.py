"""A lean one-token decode step over :class:`~zoo_torch.model.Transformer`'s static KV cache.

At batch 1 and small widths a decode step is dominated by per-op overhead, not
arithmetic. This step does the same math as ``model(tokens, input_pos=[t])``
with fewer ops: q/k/v and w1/w3 run as one matmul each, every weight is stored
transposed (fused once; the model's ``nn.Linear`` weights become views of the fused tensors,
so no weight is stored twice and names/state dicts stay canonical), RoPE rows
come from a table computed once and rotate q and k heads together, and the attention mask is the cache's
slot-validity row itself (for a single new token every earlier slot is causal).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo_torch.model import Transformer, apply_rope, rope_cos_sin


def _fuse(*linears: nn.Linear) -> Tensor:
    """The linears' weights transposed and concatenated, (in, sum of outs) contiguous; each
    weight becomes a (transposed) view of it, so nothing is stored twice.

    ``x @ Wt`` with Wt (in, out) row-major is ~15% faster than ``F.linear(x, W)`` for one row
    on CPU (MKL's gemv reads the weight in its storage order).
    """
    fused = torch.cat([lin.weight.detach().t() for lin in linears], dim=1).contiguous()
    start = 0
    for lin in linears:
        n = lin.weight.shape[0]
        lin.weight = nn.Parameter(fused[:, start:start + n].t(), requires_grad=lin.weight.requires_grad)
        start += n
    return fused


class DecodePlan:
    """Fused weights and RoPE tables for :meth:`step`; build once per model (after its weights are final)."""

    def __init__(self, model: Transformer) -> None:
        self.model = model
        cfg = model.config
        self.n_heads, self.n_kv, self.head_dim = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        self.q_size, self.kv_size, self.ffn = cfg.n_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim, cfg.ffn_hidden
        self.eps = cfg.norm_eps
        self.scale = 1.0 / (cfg.head_dim ** 0.5)
        with torch.no_grad():
            self.layers: list[tuple[torch.Tensor, ...]] = []
            for block in model.layers:
                layer: Any = block  # ModuleList items are typed as Module
                a, f = layer.attention, layer.feed_forward
                self.layers.append((
                    layer.attention_norm.weight, _fuse(a.wq, a.wk, a.wv), _fuse(a.wo),
                    layer.ffn_norm.weight, _fuse(f.w1, f.w3), _fuse(f.w2),
                ))
            self.output_t = _fuse(model.output)
        self.rope_len = 0
        self.cos = self.sin = torch.zeros(0)

    def ensure_rope(self, max_seq: int) -> None:
        """cos/signed-sin rows (S, D) for positions 0..S-1 (the same values :func:`rope_cos_sin` gives)."""
        if max_seq > self.rope_len:
            with torch.inference_mode(False):
                pos = torch.arange(max_seq, device=self.model.inv_freq.device)[None]
                cos, sin = rope_cos_sin(self.model.inv_freq, pos)  # (1,1,S,D)
                self.cos, self.sin = cos[0, 0].contiguous(), sin[0, 0].contiguous()
            self.rope_len = max_seq

    def _norm(self, x: Tensor, weight: Tensor) -> Tensor:
        return weight * F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).type_as(x)

    def step(self, tokens: Tensor, input_pos: Tensor, kv_len: int | None) -> Tensor:
        """Logits (B, V) fp32 for tokens (B, 1) written at cache slot ``input_pos`` (1,).

        ``kv_len`` limits attention to the first slots (eager); None attends over the
        whole static cache (fixed shapes for torch.compile).
        """
        m = self.model
        b = tokens.shape[0]
        h, kvh, d = self.n_heads, self.n_kv, self.head_dim
        cache_valid, next_pos = m.cache_valid[:b], m.next_pos[:b]
        cache_valid.index_fill_(1, input_pos, True)
        pos = next_pos.clone()
        next_pos += 1
        cos, sin = self.cos[pos][:, None, None], self.sin[pos][:, None, None]  # (B,1,1,D)
        keys_valid = cache_valid if kv_len is None else cache_valid[:, :kv_len]
        mask = keys_valid[:, None, None, :]  # (B,1,1,L): earlier slots are all causal for one new token
        x = F.embedding(tokens, m.tok_embeddings.weight)  # (B,1,C)
        for block, (an, wqkv, wo, fn, w13, w2) in zip(m.layers, self.layers, strict=True):
            attn: Any = block.attention
            qkv = self._norm(x, an) @ wqkv
            qk, v = qkv.split((self.q_size + self.kv_size, self.kv_size), dim=-1)
            qk = apply_rope(qk.view(b, 1, h + kvh, d).transpose(1, 2), cos, sin)  # q and k heads in one go
            q, k = qk.split((h, kvh), dim=1)
            k_all, v_all = attn.kv_cache.update(input_pos, k, v.view(b, 1, kvh, d).transpose(1, 2), kv_len)
            out = attn.attention_fn(q, k_all, v_all, mask, self.scale)  # (B,H,1,D)
            x = x + out.transpose(1, 2).reshape(b, 1, h * d) @ wo
            gate, up = (self._norm(x, fn) @ w13).split((self.ffn, self.ffn), dim=-1)
            x = x + (F.silu(gate) * up) @ w2
        return (self._norm(x, m.norm.weight) @ self.output_t).float()[:, -1]
