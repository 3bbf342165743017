"""The MindSpore ``flash`` attention: ``ops.flash_attention_score`` (FlashAttentionScore), Ascend only.

Written against MindSpore 2.10's documented signature::

    flash_attention_score(query, key, value, head_num, real_shift=None, drop_mask=None,
                          padding_mask=None, attn_mask=None, prefix=None, actual_seq_qlen=None,
                          actual_seq_kvlen=None, keep_prob=1.0, scalar_value=1.0,
                          pre_tokens=2147483647, next_tokens=2147483647, inner_precise=0,
                          input_layout='BSH', sparse_mode=0) -> attention_out

with ``input_layout="BNSD"`` (query (B,N1,S1,D), key/value (B,N2,S2,D), N2 a
factor of N1: grouped-query attention without K/V copies), ``attn_mask``
bool (B,1,S1,S2) where **True discards** a position, ``scalar_value`` the
1/sqrt(D) scale, ``sparse_mode=0`` (the mask is given in full). The kernel
takes fp16/bf16 only and D a multiple of 16; fp32 models run it in fp16.
Everywhere else (CPU, GPU) the entry reports itself unavailable and
``attention: auto`` falls back to ``math``.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Any

from codellama_zoo.specs import AttentionSpec

FLASH_PRIORITY = 30  # above the math kernel (0): `auto` takes it wherever it runs


def _has_mindspore() -> bool:
    return importlib.util.find_spec("mindspore") is not None


def _kind(device: str) -> str:
    return str(device).split(":", 1)[0].lower()


def flash_available(device: str) -> bool:
    if not _has_mindspore() or _kind(device) != "ascend":
        return False
    import mindspore as ms

    return bool(ms.hal.is_available("Ascend"))


def flash_unavailable_reason(device: str) -> str:
    if not _has_mindspore():
        return "MindSpore is not installed"
    if _kind(device) != "ascend":
        return f"FlashAttentionScore runs only on Ascend (Atlas A2), not on {_kind(device)}"
    if not flash_available(device):
        return "no Ascend device is available to MindSpore here"
    return ""


def flash_attention(q: Any, k: Any, v: Any, mask: Any) -> Any:
    """q (B,H,T,D), k/v (B,K,L,D), mask (B,T,L) additive fp32 (0 keep, very negative drop) -> (B,H,T,D)."""
    import mindspore as ms
    from mindspore import ops

    head_dim = q.shape[-1]
    dtype = q.dtype
    compute = dtype if dtype in (ms.float16, ms.bfloat16) else ms.float16
    discard = (mask < -1.0).expand_dims(1)  # (B,1,T,L) bool, True = masked out
    out = ops.flash_attention_score(
        q.astype(compute),
        k.astype(compute),
        v.astype(compute),
        q.shape[1],
        attn_mask=discard,
        scalar_value=1.0 / math.sqrt(head_dim),
        input_layout="BNSD",
        sparse_mode=0,
    )
    return out.astype(dtype)


def _factory() -> Any:
    return flash_attention


def register_mindspore(register: Any) -> None:
    """Called from ``zoo_flash_attention.plugin.register_attention``."""
    register(
        AttentionSpec(
            name="flash",
            backend="mindspore",
            description="MindSpore FlashAttentionScore (Ascend Atlas A2), fp16/bf16, grouped-query native",
            priority=FLASH_PRIORITY,
            is_available=flash_available,
            factory=_factory,
            unavailable_reason=flash_unavailable_reason,
        )
    )
