"""Registers the attention kernels: ``sdpa`` and ``flash`` for the torch backend.

The MindSpore entry (``FlashAttentionScore`` on Ascend) is registered here by the
MindSpore runtime's issue. Nothing here imports torch until a kernel is used.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from codellama_zoo import hookimpl
from codellama_zoo.hookspecs import Register
from codellama_zoo.specs import AttentionSpec


def _torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def _no_torch(device: str) -> str:
    return "" if _torch() else "torch is not installed"


def _sdpa() -> Any:
    from zoo_flash_attention.torch_kernels import sdpa_attention

    return sdpa_attention


def _flash() -> Any:
    from zoo_flash_attention.torch_kernels import flash_attention

    return flash_attention


def _flash_available(device: str) -> bool:
    if not _torch() or not str(device).startswith("cuda"):
        return False
    from zoo_flash_attention.torch_kernels import flash_available

    return flash_available(device)


def _flash_reason(device: str) -> str:
    if not _torch():
        return "torch is not installed"
    from zoo_flash_attention.torch_kernels import flash_unavailable_reason

    return flash_unavailable_reason(device)


@hookimpl
def register_attention(register: Register) -> None:
    register(
        AttentionSpec(
            name="sdpa",
            backend="torch",
            description="torch scaled_dot_product_attention: FlashAttention/memory-efficient on CUDA, fused on CPU",
            priority=20,
            is_available=lambda device: _torch(),
            factory=_sdpa,
            unavailable_reason=_no_torch,
        )
    )
    register(
        AttentionSpec(
            name="flash",
            backend="torch",
            description="flash-attn package (FlashAttention-2) on CUDA, fp16/bf16; SDPA where it takes no mask",
            priority=30,
            is_available=_flash_available,
            factory=_flash,
            unavailable_reason=_flash_reason,
        )
    )
    from zoo_flash_attention.mindspore_flash import register_mindspore

    register_mindspore(register)
