"""Llama / Code Llama as a MindSpore Cell, mirroring ``zoo_torch.model``.

Module and parameter names are the PyTorch model's (``tok_embeddings``,
``layers.N.attention.wq``, ``layers.N.feed_forward.w1``, ``norm``,
``output``), so one canonical state dict serves both runtimes. For inference
the backend builds the ``fused`` variant, whose ``wqkv`` (wq|wk|wv rows) and
``w13`` (w1|w3 rows) projections launch fewer kernels per token; weights move
in and out of it under the canonical names (:mod:`zoo_mindspore.weights`). Weights keep
Hugging Face's rotate-half RoPE layout. RMSNorm, RoPE, softmax and the final
logits run in fp32 whatever the weight dtype.

Shapes: B batch, T new tokens, L cache length, H query heads, K kv heads,
D head dim, V vocabulary.

Only ops with CPU kernels are used (``ops.gather``/``ops.matmul`` rather
than ``mint.nn.Embedding``/``mint.nn.Linear``, hand-written RMSNorm, RoPE and
SwiGLU rather than the fused ``ops.rms_norm``/``rotary_position_embedding``/
``swiglu`` that only Ascend implements).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import initializer

from codellama_zoo.specs import LlamaConfig

MS_DTYPES: dict[str, Any] = {"fp32": ms.float32, "fp16": ms.float16, "bf16": ms.bfloat16}
MASK_MIN = -1e30  # finite, so a fully padded query row gives a uniform softmax rather than NaN

# attention(q (B,H,T,D), k (B,K,L,D), v (B,K,L,D), mask (B,T,L) additive fp32) -> (B,H,T,D)
AttentionFn = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


def cast(x: Tensor, dtype: Any) -> Tensor:
    """``x`` in ``dtype``, emitting no Cast kernel when it already is (decided while compiling)."""
    if x.dtype == dtype:
        return x
    return x.astype(dtype)


def math_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """Reference attention: grouped-query, fp32 scores and softmax, no KV copies."""
    b, h, t, d = q.shape
    kv = k.shape[1]
    n_rep = h // kv
    qg = q.reshape(b, kv, n_rep * t, d)  # query heads h = g*n_rep + r use kv head g
    scores = ops.matmul(cast(qg, ms.float32), cast(k, ms.float32).swapaxes(-1, -2)) / math.sqrt(d)
    scores = scores.reshape(b, kv, n_rep, t, -1) + mask.reshape(b, 1, 1, t, -1)
    probs = cast(ops.softmax(scores, axis=-1), q.dtype).reshape(b, kv, n_rep * t, -1)
    return ops.matmul(probs, v).reshape(b, h, t, d)


class Embedding(nn.Cell):
    """Token embedding with a ``weight`` parameter (vocab, dim), as in torch."""

    def __init__(self, vocab_size: int, dim: int, dtype: Any) -> None:
        super().__init__()
        self.weight = Parameter(initializer("zeros", (vocab_size, dim), dtype), name="weight")  # filled on load

    def construct(self, ids: Tensor) -> Tensor:
        return ops.gather(self.weight, ids, 0)


class RMSNorm(nn.Cell):
    """Normalised in fp32, cast back, then scaled (Meta's and HF's order)."""

    def __init__(self, dim: int, eps: float, dtype: Any) -> None:
        super().__init__()
        self.eps = eps
        self.weight = Parameter(initializer("ones", (dim,), dtype), name="weight")

    def construct(self, x: Tensor) -> Tensor:
        x32 = cast(x, ms.float32)
        normed = x32 * ops.rsqrt(ops.mean(x32 * x32, -1, True) + self.eps)
        return self.weight * cast(normed, x.dtype)


def linear(in_dim: int, out_dim: int, dtype: Any) -> nn.Dense:
    """A bias-free projection whose ``weight`` is (out, in) like ``torch.nn.Linear``."""
    return nn.Dense(in_dim, out_dim, weight_init="zeros", has_bias=False, dtype=dtype)


def rotate_half_matrix(head_dim: int) -> np.ndarray:
    """R with x @ R == cat(-x[D/2:], x[:D/2]): one matmul instead of four ops, exact (one +-1 term per column)."""
    half = head_dim // 2
    rot = np.zeros((head_dim, head_dim), np.float32)
    rot[np.arange(half) + half, np.arange(half)] = -1.0
    rot[np.arange(half), np.arange(half) + half] = 1.0
    return rot


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor, rot: Tensor) -> Tensor:
    """HF rotate-half RoPE in fp32; x (B,*,T,D), cos/sin (B,1,T,D), rot (D,D)."""
    x32 = cast(x, ms.float32)
    rotated = ops.matmul(x32.reshape(-1, x32.shape[-1]), rot).reshape(x32.shape)  # 2-D: no broadcast of rot
    return cast(x32 * cos + rotated * sin, x.dtype)


class KVCache(nn.Cell):
    """Static keys and values of one layer, (B, K, L, D), written in place."""

    def __init__(self, batch: int, kv_heads: int, length: int, head_dim: int, dtype: Any) -> None:
        super().__init__()
        shape = (batch, kv_heads, length, head_dim)
        self.k = Parameter(ops.zeros(shape, dtype), name="k", requires_grad=False)
        self.v = Parameter(ops.zeros(shape, dtype), name="v", requires_grad=False)

    def update(self, index: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """index (B,K,T,3) int32 = (b, kv head, slot); k/v (B,K,T,D)."""
        k_all = ops.scatter_nd_update(self.k, index, k)
        v_all = ops.scatter_nd_update(self.v, index, v)
        return k_all, v_all


class Attention(nn.Cell):
    """Grouped-query attention; ``fused`` keeps wq|wk|wv as one ``wqkv`` projection (inference: fewer kernels)."""

    def __init__(self, config: LlamaConfig, dtype: Any, fused: bool = False) -> None:
        super().__init__()
        self.n_heads, self.kv_heads, self.head_dim = config.n_heads, config.kv_heads, config.head_dim
        self.fused = fused
        q_dim, kv_dim = config.n_heads * config.head_dim, config.kv_heads * config.head_dim
        if fused:
            self.wqkv = linear(config.dim, q_dim + 2 * kv_dim, dtype)
        else:
            self.wq = linear(config.dim, q_dim, dtype)
            self.wk = linear(config.dim, kv_dim, dtype)
            self.wv = linear(config.dim, kv_dim, dtype)
        self.wo = linear(q_dim, config.dim, dtype)
        self.rot = Tensor(rotate_half_matrix(config.head_dim))
        self.kernel: AttentionFn = math_attention

    def construct(
        self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor, cache: KVCache | None = None, index: Tensor | None = None
    ) -> Tensor:
        b, t, _ = x.shape
        h, kv = self.n_heads, self.kv_heads
        if self.fused:
            qkv = self.wqkv(x).reshape(b, t, h + 2 * kv, self.head_dim).swapaxes(1, 2)  # (B,H+2K,T,D)
            qk = apply_rope(qkv[:, : h + kv], cos, sin, self.rot)  # queries and keys rotated together
            q, k, v = qk[:, :h], qk[:, h:], qkv[:, h + kv :]
        else:
            q = self.wq(x).reshape(b, t, h, self.head_dim).swapaxes(1, 2)  # (B,H,T,D)
            k = self.wk(x).reshape(b, t, kv, self.head_dim).swapaxes(1, 2)  # (B,K,T,D)
            v = self.wv(x).reshape(b, t, kv, self.head_dim).swapaxes(1, 2)
            q = apply_rope(q, cos, sin, self.rot)
            k = apply_rope(k, cos, sin, self.rot)
        if cache is not None:
            k, v = cache.update(index, k, v)  # (B,K,L,D)
        out = self.kernel(q, k, v, mask)  # (B,H,T,D)
        return self.wo(out.swapaxes(1, 2).reshape(b, t, h * self.head_dim))


class FeedForward(nn.Cell):
    """SwiGLU: w2(silu(w1 x) * w3 x); ``fused`` keeps w1|w3 as one ``w13`` projection."""

    def __init__(self, config: LlamaConfig, dtype: Any, fused: bool = False) -> None:
        super().__init__()
        self.fused = fused
        self.hidden = config.ffn_hidden
        if fused:
            self.w13 = linear(config.dim, 2 * config.ffn_hidden, dtype)
            self.w2 = linear(config.ffn_hidden, config.dim, dtype)
        else:
            self.w1 = linear(config.dim, config.ffn_hidden, dtype)
            self.w2 = linear(config.ffn_hidden, config.dim, dtype)
            self.w3 = linear(config.dim, config.ffn_hidden, dtype)

    def construct(self, x: Tensor) -> Tensor:
        if self.fused:
            gate, up = ops.split(self.w13(x), self.hidden, -1)  # one Split kernel, not two slices
            return self.w2(ops.silu(gate) * up)
        return self.w2(ops.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Cell):
    def __init__(self, config: LlamaConfig, dtype: Any, fused: bool = False) -> None:
        super().__init__()
        self.attention = Attention(config, dtype, fused)
        self.feed_forward = FeedForward(config, dtype, fused)
        self.attention_norm = RMSNorm(config.dim, config.norm_eps, dtype)
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps, dtype)

    def construct(
        self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor, cache: KVCache | None = None, index: Tensor | None = None
    ) -> Tensor:
        h = x + self.attention(self.attention_norm(x), cos, sin, mask, cache, index)
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Cell):
    """The decoder stack; ``construct(tokens)`` gives full causal fp32 logits (training)."""

    def __init__(self, config: LlamaConfig, dtype: str = "fp32", fused: bool = False) -> None:
        super().__init__()
        self.config = config
        self.fused = fused
        ms_dtype = MS_DTYPES[dtype]
        self.tok_embeddings = Embedding(config.vocab_size, config.dim, ms_dtype)
        self.layers = nn.CellList([TransformerBlock(config, ms_dtype, fused) for _ in range(config.n_layers)])
        self.norm = RMSNorm(config.dim, config.norm_eps, ms_dtype)
        self.output = linear(config.dim, config.vocab_size, ms_dtype)
        half = config.head_dim // 2
        inv_freq = 1.0 / (config.rope_theta ** (np.arange(0, 2 * half, 2, dtype=np.int64).astype(np.float32) / (2 * half)))
        self.inv_freq = Tensor(inv_freq.astype(np.float32))  # (D/2,) fp32, a constant of the graph

    def set_attention(self, kernel: AttentionFn) -> None:
        for layer in self.layers:
            layer.attention.kernel = kernel

    def rope(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """positions (B,T) int32 -> cos, sin (B,1,T,D) fp32."""
        freqs = positions.astype(ms.float32).expand_dims(-1) * self.inv_freq  # (B,T,D/2)
        emb = ops.cat((freqs, freqs), -1).expand_dims(1)
        return ops.cos(emb), ops.sin(emb)

    def hidden(
        self, tokens: Tensor, positions: Tensor, mask: Tensor, caches: nn.CellList | None = None, index: Tensor | None = None
    ) -> Tensor:
        cos, sin = self.rope(positions)
        h = self.tok_embeddings(tokens)
        if caches is None:
            for layer in self.layers:
                h = layer(h, cos, sin, mask)
        else:
            for i in range(len(self.layers)):
                h = self.layers[i](h, cos, sin, mask, caches[i], index)
        return self.norm(h)

    def construct(self, tokens: Tensor) -> Tensor:
        b, t = tokens.shape
        positions = ops.broadcast_to(ops.arange(0, t, dtype=ms.int32).expand_dims(0), (b, t))
        causal = ops.triu(ops.full((t, t), MASK_MIN, dtype=ms.float32), 1)
        mask = ops.broadcast_to(causal.expand_dims(0), (b, t, t))
        return cast(self.output(self.hidden(tokens, positions, mask)), ms.float32)


class CachedStep(nn.Cell):
    """Prefill or decode against one static cache: writes the new K/V, returns last-position logits.

    One instance per (batch, cache length); its graph compiles once per new-token
    count T, so callers pad T to a few fixed sizes. With ``kernels`` (the fused
    CPU ops of :mod:`zoo_mindspore.cpu_kernels`, fp32 only) one-token decodes
    go through :meth:`decode_with_kernels` instead; prefill always uses
    MindSpore's operators.
    """

    def __init__(self, model: Transformer, batch: int, length: int, dtype: str, kernels: Any = None) -> None:
        super().__init__()
        cfg = model.config
        self.model = model
        self.caches = nn.CellList(
            [KVCache(batch, cfg.kv_heads, length, cfg.head_dim, MS_DTYPES[dtype]) for _ in range(cfg.n_layers)]
        )
        if kernels is not None:
            if not model.fused or dtype != "fp32":
                raise ValueError("the CPU decode kernels need the fused fp32 model")
            self.norm_project = kernels.norm_project
            self.norm_swiglu = kernels.norm_swiglu
            self.project_add = kernels.project_add
            self.decode_attention = kernels.attention
            self.eps = Tensor(np.array([cfg.norm_eps], np.float32))

    def construct(self, tokens: Tensor, positions: Tensor, mask: Tensor, index: Tensor) -> Tensor:
        """tokens/positions (B,T) int32, mask (B,T,L) fp32 additive, index (B,K,T,3) -> (B,V) fp32."""
        h = self.model.hidden(tokens, positions, mask, self.caches, index)
        last = h.reshape(h.shape[0], h.shape[2]) if h.shape[1] == 1 else h[:, -1, :]  # decode: no slice kernel
        return cast(self.model.output(last), ms.float32)

    def decode_with_kernels(self, step: Tensor, mask: Tensor) -> Tensor:
        """One token per row through the fused kernels: the same arithmetic as ``construct`` with T = 1.

        ``step`` (B,3) int32 holds (token, RoPE position, cache slot) per row and ``mask`` is (B,L): two
        inputs rather than four, since each graph input costs host time every token. The attention kernel
        writes the new keys and values into the cache Parameters itself.
        """
        model = self.model
        b = step.shape[0]
        h = model.tok_embeddings(step[:, 0])  # (B,dim)
        for i in range(len(model.layers)):
            layer, cache = model.layers[i], self.caches[i]
            attention, ffn = layer.attention, layer.feed_forward
            qkv = self.norm_project(h, layer.attention_norm.weight, attention.wqkv.weight, self.eps)
            out = self.decode_attention(qkv, step, model.inv_freq, cache.k, cache.v, mask.reshape(b, -1))
            h = self.project_add(out, attention.wo.weight, h)
            h = self.project_add(self.norm_swiglu(h, layer.ffn_norm.weight, ffn.w13.weight, self.eps), ffn.w2.weight, h)
        return self.norm_project(h, model.norm.weight, model.output.weight, self.eps)
