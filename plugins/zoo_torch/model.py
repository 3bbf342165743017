"""Llama / Code Llama in one file (gpt-fast style): config in, plain modules out.

Module and parameter names are Meta's (``tok_embeddings``, ``layers.N.attention.wq``,
``layers.N.feed_forward.w1``, ``attention_norm``, ``ffn_norm``, ``norm``, ``output``);
the query/key projections keep Hugging Face's *rotate-half* RoPE layout (Meta's
interleaved layout is permuted on load, see :mod:`zoo_torch.checkpoints`).

Numerics: RMSNorm, RoPE, the attention softmax and the final logits run in fp32
whatever the weight dtype (fp32, bf16, fp16); RMSNorm normalises in fp32, casts
back and then scales (Meta's and Hugging Face's order).

Two ways to call :meth:`Transformer.forward`:

* without a cache (training, scoring): ``model(tokens)`` gives the causal logits
  of every position, ``(B, T, V)`` fp32, autograd-friendly, no in-place ops on
  parameters. An optional ``attention_mask`` ``(B, T)`` (1 = token, 0 = padding)
  handles left-padded batches: RoPE positions are the cumulative sum of the mask.
* with the static KV cache (generation): ``model.setup_caches(max_batch, max_seq)``
  once, then ``model(tokens, mask, input_pos=slots)`` for the prefill (``slots`` =
  ``arange(0, T)``) and for each decoded token (``slots`` = ``[t]``). The cache
  remembers which slots hold real tokens and each row's next RoPE position, so
  left padding never shifts positions and padded keys are never attended to.

Attention is pluggable: each layer calls ``attention(q, k, v, mask, scale)``
(see :data:`AttentionFn`), by default :func:`eager_attention`; the backend sets
another one by name (``sdpa``, ``flash``, ...) with :meth:`Transformer.set_attention`.

Shapes: B batch, T new tokens, S cache slots (max_seq), L attended key length,
H query heads, K kv heads, D head dim, C model dim, F ffn hidden, V vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codellama_zoo.specs import LlamaConfig

# attention(q (B,H,T,D), k (B,K,L,D), v (B,K,L,D), mask (B,1,T,L) bool True=attend | None, scale) -> (B,H,T,D)
# mask None means plain causal attention over T == L (no padding, no cache). Implementations
# handle grouped-query attention themselves (H = K * n_rep; query head h uses kv head h // n_rep)
# and must compute the softmax in fp32. A fully padded query row always has its own slot open.
AttentionFn = Callable[[Tensor, Tensor, Tensor, "Tensor | None", float], Tensor]


def eager_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    """Reference attention: plain matmul + fp32 softmax, grouped-query without copying K/V."""
    b, h, t, d = q.shape
    kv, length = k.shape[1], k.shape[2]
    n_rep = h // kv
    qg = q.reshape(b, kv, n_rep * t, d)  # heads g*n_rep + r share kv head g: (B,K,R*T,D)
    scores = torch.matmul(qg.float(), k.float().transpose(-1, -2)) * scale  # (B,K,R*T,L)
    scores = scores.view(b, kv, n_rep, t, length)
    if mask is None:
        causal = torch.ones(t, length, dtype=torch.bool, device=q.device).tril(length - t)
        scores = scores.masked_fill(~causal, float("-inf"))
    else:
        scores = scores.masked_fill(~mask.view(mask.shape[0], 1, 1, t, length), float("-inf"))
    probs = torch.softmax(scores, dim=-1).to(v.dtype).view(b, kv, n_rep * t, length)
    return torch.matmul(probs, v).view(b, h, t, d)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        normed = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)  # x * rsqrt(mean(x^2) + eps), fp32
        return self.weight * normed.type_as(x)


def rope_inv_freq(config: LlamaConfig, device: torch.device | str | None = None) -> Tensor:
    """theta^(-2i/D) in fp32, exactly as Hugging Face's default RoPE computes it."""
    d = config.head_dim
    return 1.0 / (config.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64, device=device).float() / d))


def rope_cos_sin(inv_freq: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
    """cos and *signed* sin (B, 1, T, D) in fp32 for integer positions (B, T), rotate-half layout.

    The sin table carries rotate-half's sign (-sin on the first half), so that
    :func:`apply_rope` needs one ``roll`` instead of split + negate + concatenate.
    """
    freqs = positions[..., None].float() * inv_freq  # (B,T,D/2)
    emb = torch.cat((freqs, freqs), dim=-1)[:, None]  # (B,1,T,D)
    sin = emb.sin()
    half = sin.shape[-1] // 2
    return emb.cos(), torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate-half RoPE on x (B, heads, T, D) in fp32, returned in x's dtype:
    x * cos + rotate_half(x) * sin, with rotate_half(x) = [-x2, x1] = roll(x, D/2) * [-1.., +1..]."""
    x32 = x.float()
    return (x32 * cos + torch.roll(x32, x.shape[-1] // 2, dims=-1) * sin).type_as(x)


class KVCache(nn.Module):
    """Keys and values of every slot, fixed shape (max_batch, K, max_seq, D), allocated once."""

    k_cache: Tensor
    v_cache: Tensor

    def __init__(self, max_batch: int, max_seq: int, n_kv_heads: int, head_dim: int,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        shape = (max_batch, n_kv_heads, max_seq, head_dim)
        self.register_buffer("k_cache", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape, device=device, dtype=dtype), persistent=False)

    def update(self, input_pos: Tensor, k: Tensor, v: Tensor, length: int | None) -> tuple[Tensor, Tensor]:
        """Write k/v (B,K,T,D) at slots ``input_pos`` (T,); return the first ``length`` slots (B,K,L,D)."""
        b = k.shape[0]
        k_cache, v_cache = self.k_cache[:b], self.v_cache[:b]
        k_cache.index_copy_(2, input_pos, k.to(k_cache.dtype))
        v_cache.index_copy_(2, input_pos, v.to(v_cache.dtype))
        if length is not None:
            return k_cache[:, :, :length], v_cache[:, :, :length]
        return k_cache, v_cache


class Attention(nn.Module):
    def __init__(self, config: LlamaConfig, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        c, h, k, d = config.dim, config.n_heads, config.kv_heads, config.head_dim
        kw = {"bias": False, "device": device, "dtype": dtype}
        self.wq = nn.Linear(c, h * d, **kw)  # type: ignore[arg-type]
        self.wk = nn.Linear(c, k * d, **kw)  # type: ignore[arg-type]
        self.wv = nn.Linear(c, k * d, **kw)  # type: ignore[arg-type]
        self.wo = nn.Linear(h * d, c, **kw)  # type: ignore[arg-type]
        self.n_heads, self.n_kv_heads, self.head_dim = h, k, d
        self.scale = 1.0 / math.sqrt(d)
        self.kv_cache: KVCache | None = None
        self.attention_fn: AttentionFn = eager_attention

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None,
                input_pos: Tensor | None = None, kv_len: int | None = None) -> Tensor:
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # (B,H,T,D)
        k = self.wk(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B,K,T,D)
        v = self.wv(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B,K,T,D)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if input_pos is not None:
            if self.kv_cache is None:
                raise RuntimeError("input_pos given but no KV cache: call model.setup_caches(max_batch, max_seq) first")
            k_all, v_all = self.kv_cache.update(input_pos, k, v, kv_len)  # (B,K,L,D)
            if mask is not None:  # else: a prefill from slot 0 without padding, causal over k/v themselves
                k, v = k_all, v_all
        out = self.attention_fn(q, k, v, mask, self.scale)  # (B,H,T,D)
        return self.wo(out.transpose(1, 2).reshape(b, t, self.n_heads * self.head_dim))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, config: LlamaConfig, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        kw = {"bias": False, "device": device, "dtype": dtype}
        self.w1 = nn.Linear(config.dim, config.ffn_hidden, **kw)  # type: ignore[arg-type]
        self.w2 = nn.Linear(config.ffn_hidden, config.dim, **kw)  # type: ignore[arg-type]
        self.w3 = nn.Linear(config.dim, config.ffn_hidden, **kw)  # type: ignore[arg-type]

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    def __init__(self, layer_id: int, config: LlamaConfig, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.layer_id = layer_id
        self.attention = Attention(config, device, dtype)
        self.feed_forward = FeedForward(config, device, dtype)
        self.attention_norm = RMSNorm(config.dim, config.norm_eps, device, dtype)
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps, device, dtype)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None,
                input_pos: Tensor | None = None, kv_len: int | None = None) -> Tensor:
        h = x + self.attention(self.attention_norm(x), cos, sin, mask, input_pos, kv_len)
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    """The Llama architecture: embedding, N blocks, final RMSNorm, untied output head."""

    inv_freq: Tensor  # (D/2,) fp32 RoPE frequencies, not saved
    cache_valid: Tensor  # (max_batch, S) bool: the slot holds a real token
    next_pos: Tensor  # (max_batch,) int64: RoPE position of each row's next token
    slots: Tensor  # (S,) arange, sliced for input_pos

    def __init__(self, config: LlamaConfig, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim, device=device, dtype=dtype)
        self.layers = nn.ModuleList(TransformerBlock(i, config, device, dtype) for i in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps, device, dtype)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False, device=device, dtype=dtype)
        self.register_buffer("inv_freq", rope_inv_freq(config, device), persistent=False)
        for name, dt in (("cache_valid", torch.bool), ("next_pos", torch.int64), ("slots", torch.int64)):
            self.register_buffer(name, torch.zeros(0, dtype=dt, device=device), persistent=False)
        self.attention_name = "eager"
        self.max_batch = self.max_seq = 0

    # -- setup ----------------------------------------------------------------
    def init_rope(self, device: torch.device | str | None = None) -> None:
        """(Re)compute the RoPE buffer, e.g. after building on the meta device and loading with assign=True."""
        if device is None:
            device = self.tok_embeddings.weight.device
        self.inv_freq = rope_inv_freq(self.config, device)

    @torch.no_grad()
    def init_weights(self, std: float = 0.02, generator: torch.Generator | None = None) -> None:
        """Random weights: normal(0, std) for projections and embeddings, ones for the norms."""
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float32).mul_(std).to(p))

    def set_attention(self, attention: str | AttentionFn, name: str | None = None) -> None:
        """Use ``attention`` (a registered name or an :data:`AttentionFn`) in every layer."""
        if isinstance(attention, str):
            label = attention
            if attention == "eager":
                fn: AttentionFn = eager_attention
            else:
                from zoo_torch.attention import attention_fn

                fn = attention_fn(attention)
        else:
            fn = attention
            label = name or str(getattr(attention, "__name__", "custom"))
        for layer in self.layers:
            layer.attention.attention_fn = fn  # type: ignore[union-attr]
        self.attention_name = label

    def setup_caches(self, max_batch: int, max_seq: int) -> None:
        """Allocate the static KV cache (once; a smaller request reuses it) and reset its state."""
        with torch.inference_mode(False):  # plain tensors, usable inside and outside inference mode
            self._allocate_caches(max_batch, max_seq)
        self.reset_caches()

    def _allocate_caches(self, max_batch: int, max_seq: int) -> None:
        if max_batch > self.max_batch or max_seq > self.max_seq:
            device, dtype = self.output.weight.device, self.output.weight.dtype
            cfg = self.config
            for layer in self.layers:
                layer.attention.kv_cache = KVCache(  # type: ignore[union-attr]
                    max_batch, max_seq, cfg.kv_heads, cfg.head_dim, device, dtype
                )
            self.cache_valid = torch.zeros(max_batch, max_seq, dtype=torch.bool, device=device)
            self.next_pos = torch.zeros(max_batch, dtype=torch.int64, device=device)
            self.slots = torch.arange(max_seq, device=device)
            self.max_batch, self.max_seq = max_batch, max_seq

    def reset_caches(self) -> None:
        """Forget every cached token (the buffers stay allocated)."""
        if self.max_batch:
            self.cache_valid.zero_()
            self.next_pos.zero_()

    def free_caches(self) -> None:
        for layer in self.layers:
            layer.attention.kv_cache = None  # type: ignore[union-attr]
        self.max_batch = self.max_seq = 0

    # -- forward --------------------------------------------------------------
    def forward(self, tokens: Tensor, attention_mask: Tensor | None = None, *, input_pos: Tensor | None = None,
                kv_len: int | None = None, last_only: bool = False) -> Tensor:
        """Logits (B, T, V) fp32, or (B, 1, V) with ``last_only``.

        tokens (B, T) int64; attention_mask (B, T), 1 = token, 0 = (left) padding.
        Without ``input_pos`` the cache is not used. With ``input_pos`` (T,) the
        tokens go to those cache slots and attend to every earlier real token;
        ``kv_len`` (a Python int > the last slot) limits attention to the first
        kv_len slots, which is faster in eager mode; None attends over all
        slots with a mask (fixed shapes, for torch.compile).
        """
        b, t = tokens.shape
        if input_pos is None:
            mask, positions = self._uncached_mask(tokens, attention_mask)
        else:
            mask, positions = self._cached_mask(tokens, attention_mask, input_pos, kv_len)
        cos, sin = rope_cos_sin(self.inv_freq, positions)  # (B,1,T,D) fp32
        h = self.tok_embeddings(tokens)  # (B,T,C)
        for layer in self.layers:
            h = layer(h, cos, sin, mask, input_pos, kv_len)
        if last_only:
            h = h[:, -1:]
        return self.output(self.norm(h)).float()  # (B,T,V)

    def _uncached_mask(self, tokens: Tensor, attention_mask: Tensor | None) -> tuple[Tensor | None, Tensor]:
        b, t = tokens.shape
        if attention_mask is None:
            return None, torch.arange(t, device=tokens.device).expand(b, t)
        valid = attention_mask.to(device=tokens.device, dtype=torch.bool)  # (B,T)
        positions = (valid.long().cumsum(-1) - 1).clamp_(min=0)  # (B,T)
        idx = torch.arange(t, device=tokens.device)
        causal = idx[None, :] <= idx[:, None]  # (T,T)
        mask = (causal[None] & valid[:, None, :]) | torch.eye(t, dtype=torch.bool, device=tokens.device)[None]
        return mask[:, None], positions  # (B,1,T,T)

    def _cached_mask(self, tokens: Tensor, attention_mask: Tensor | None, input_pos: Tensor,
                     kv_len: int | None) -> tuple[Tensor | None, Tensor]:
        if not self.max_batch:
            raise RuntimeError("no KV cache: call model.setup_caches(max_batch, max_seq) first")
        b, t = tokens.shape
        cache_valid = self.cache_valid[:b]  # (B,S)
        next_pos = self.next_pos[:b]  # (B,)
        if attention_mask is None:  # every token is real (decode): no cumsum needed
            cache_valid.index_fill_(1, input_pos, True)
            positions = next_pos[:, None] + self.slots[:t]  # (B,T)
            next_pos += t
        else:
            valid = attention_mask.to(device=tokens.device, dtype=torch.bool)
            cache_valid.index_copy_(1, input_pos, valid)
            counts = valid.long()
            positions = next_pos[:, None] + counts.cumsum(-1) - counts  # (B,T)
            next_pos += counts.sum(-1)
        if kv_len == t and (attention_mask is None or bool(valid.all())):
            # Prefill of slots [0, T) with no padding: plain causal attention (mask None) over the new keys,
            # which lets SDPA use its causal kernels.
            return None, positions
        slots = self.slots if kv_len is None else self.slots[:kv_len]  # (L,)
        keys_valid = cache_valid if kv_len is None else cache_valid[:, :kv_len]  # (B,L)
        causal = slots[None, :] <= input_pos[:, None]  # (T,L)
        own = slots[None, :] == input_pos[:, None]  # (T,L)
        mask = (causal[None] & keys_valid[:, None, :]) | own[None]  # (B,T,L)
        return mask[:, None], positions  # (B,1,T,L)
