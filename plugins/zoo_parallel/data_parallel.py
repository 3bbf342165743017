"""Data parallel over the mesh's ``dp`` dimension: DDP, FSDP2, or a plain gradient all-reduce.

DDP is used when data parallel is the only dimension. When tensor parallel
has turned parameters into DTensors (which DDP does not accept), or a
pipeline runs several micro-batch forwards per backward (which DDP's reducer
rejects), gradients are averaged with bucketed all-reduces over the ``dp``
group after the step — the same arithmetic DDP does. FSDP2 (``fully_shard``) works on either and
composes with tensor parallel into 2-D sharding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn
    from torch.distributed.device_mesh import DeviceMesh


def bucket_cap_mb(module: nn.Module, groups: int) -> float:
    """DDP bucket size that cuts the gradients into about ``groups`` all-reduces
    (MindFormers' ``gradient_aggregation_group``)."""
    total = sum(p.numel() * p.element_size() for p in module.parameters() if p.requires_grad)
    return max(total / 2**20 / max(groups, 1), 1e-3)


def apply_ddp(module: nn.Module, dp_mesh: DeviceMesh, groups: int, device: Any) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device] if getattr(device, "type", "cpu") == "cuda" else None
    return DistributedDataParallel(
        module,
        process_group=dp_mesh.get_group(),
        bucket_cap_mb=bucket_cap_mb(module, groups),
        device_ids=device_ids,
    )


def apply_fsdp(module: Any, dp_mesh: DeviceMesh) -> nn.Module:
    """Shard every transformer block, then the rest (embedding, norm, head), over ``dp``."""
    from torch.distributed.fsdp import fully_shard

    layers = module.layers
    blocks = list(layers.values()) if hasattr(layers, "values") else list(layers)
    for index, block in enumerate(blocks):
        # The last block's parameters are needed again at once by backward: keep them gathered.
        fully_shard(block, mesh=dp_mesh, reshard_after_forward=index < len(blocks) - 1)
    fully_shard(module, mesh=dp_mesh)
    return module


def allreduce_gradients(parameters: list[Any], dp_mesh: DeviceMesh, groups: int) -> None:
    """Average gradients over ``dp`` in about ``groups`` flat buckets (DTensor grads: their local shards)."""
    import torch
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    grads = []
    for p in parameters:
        if p.grad is None:
            continue
        grads.append(p.grad.to_local() if isinstance(p.grad, DTensor) else p.grad)
    if not grads:
        return
    group = dp_mesh.get_group()
    size = dp_mesh.size()
    per_bucket = max(1, -(-len(grads) // max(groups, 1)))
    for start in range(0, len(grads), per_bucket):
        bucket = grads[start:start + per_bucket]
        by_dtype: dict[Any, list[Any]] = {}
        for g in bucket:
            by_dtype.setdefault(g.dtype, []).append(g)
        for same in by_dtype.values():
            flat = torch.cat([g.reshape(-1) for g in same])
            dist.all_reduce(flat, group=group)
            flat.div_(size)
            offset = 0
            for g in same:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()
