"""torch attention kernels with the :data:`zoo_torch.model.AttentionFn` signature.

``attention(q (B,H,T,D), k (B,K,L,D), v (B,K,L,D), mask (B,1,T,L) bool | None, scale) -> (B,H,T,D)``;
``mask`` None means causal over T == L. K may be smaller than H (grouped-query attention).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    """``torch.nn.functional.scaled_dot_product_attention``: FlashAttention / memory-efficient
    kernels on CUDA, the fused flash kernel on CPU; GQA without repeating K/V."""
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=q.shape[2] > 1, scale=scale,
                                              enable_gqa=k.shape[1] != q.shape[1])
    b, h, t, d = q.shape
    kv = k.shape[1]
    if t == 1 and kv != h:
        # Decode: fold the query heads of each group into the query length, one kv head per group.
        out = F.scaled_dot_product_attention(q.reshape(b, kv, h // kv, d), k, v, attn_mask=mask, scale=scale)
        return out.reshape(b, h, 1, d)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=kv != h)


def flash_available(device: str) -> bool:
    return not flash_unavailable_reason(device)


def flash_unavailable_reason(device: str) -> str:
    if not str(device).startswith("cuda"):
        return f"flash-attn runs on CUDA GPUs only (device is {device!r})"
    if importlib.util.find_spec("flash_attn") is None:
        return "the flash-attn package is not installed (pip install flash-attn)"
    if not torch.cuda.is_available():
        return "torch sees no CUDA GPU"
    major, _ = torch.cuda.get_device_capability(torch.device(device))
    if major < 8:
        return f"flash-attn 2 needs an Ampere or newer GPU (compute capability {major}.x)"
    return ""


def _flash_func() -> Any:
    from flash_attn import flash_attn_func  # type: ignore[import-not-found,unused-ignore]

    return flash_attn_func


def flash_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    """The flash-attn package (fp16/bf16 on CUDA, causal without padding); SDPA for everything else.

    flash_attn_func takes no arbitrary mask, so padded batches and the masked static
    KV cache go to SDPA (whose CUDA kernels are FlashAttention-2 based too).
    """
    if mask is not None or q.dtype not in (torch.float16, torch.bfloat16) or not q.is_cuda:
        return sdpa_attention(q, k, v, mask, scale)
    out = _flash_func()(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), softmax_scale=scale,
                        causal=q.shape[2] > 1)  # (B,T,H,D): GQA native
    return out.transpose(1, 2)
