"""Attention implementations for the torch backend, chosen by name through the registry.

``eager`` (the reference, :func:`zoo_torch.model.eager_attention`) is registered by
this plugin; ``sdpa`` and ``flash`` come from ``zoo_flash_attention``. ``auto``
takes the highest-priority implementation available on the device, and says so
in the log.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from codellama_zoo.errors import BackendUnavailableError, UnknownNameError
from codellama_zoo.registry import get_registry

if TYPE_CHECKING:
    from codellama_zoo.specs import AttentionSpec

log = logging.getLogger("zoo_torch")

BACKEND = "torch"


def device_kind(device: str) -> str:
    """'cuda:1' -> 'cuda'."""
    return str(device).split(":", 1)[0]


def torch_attention_specs() -> list[AttentionSpec]:
    """Every attention implementation registered for torch, best first."""
    specs = [s for s in get_registry().attention if s.backend == BACKEND]
    return sorted(specs, key=lambda s: -s.priority)


def resolve_attention(name: str, device: str) -> AttentionSpec:
    """The spec to use for ``name`` on ``device``; ``auto`` picks the best available."""
    if name == "auto":
        specs = torch_attention_specs()
        for spec in specs:
            if spec.is_available(device):
                others = ", ".join(
                    f"{s.name} ({'available' if s.is_available(device) else 'unavailable'})" for s in specs if s is not spec
                )
                log.info("attention: auto -> %s on %s (others: %s)", spec.name, device, others or "none")
                return spec
        raise BackendUnavailableError(f"no attention implementation for torch is available on {device!r}")
    try:
        spec = get_registry().attention_for(BACKEND, name)
    except UnknownNameError:
        known = [s.name for s in torch_attention_specs()]
        raise UnknownNameError("attention implementation", name, [*known, "auto"]) from None
    if not spec.is_available(device):
        reason = spec.unavailable_reason(device) or "not available here"
        raise BackendUnavailableError(
            f"attention {name!r} is unavailable on {device!r}: {reason}; use --attention auto "
            f"(or one of: {', '.join(s.name for s in torch_attention_specs() if s.is_available(device))})"
        )
    log.info("attention: %s on %s", spec.name, device)
    return spec


def attention_fn(name: str) -> Any:
    """The callable registered under ``name`` (no availability check)."""
    spec = get_registry().attention_for(BACKEND, name)
    if spec.factory is None:
        raise BackendUnavailableError(f"attention {name!r} registers no implementation (factory is None)")
    return spec.factory()


def attention_table(device: str) -> list[dict[str, Any]]:
    """What `zoo attention` shows: name, priority, availability, reason, and auto's pick."""
    specs = torch_attention_specs()
    pick = next((s.name for s in specs if s.is_available(device)), None)
    rows = []
    for s in specs:
        available = s.is_available(device)
        rows.append({
            "name": s.name,
            "backend": s.backend,
            "priority": s.priority,
            "available": available,
            "reason": "" if available else s.unavailable_reason(device),
            "auto": s.name == pick,
            "description": s.description,
        })
    return rows
