"""Tensor-parallel inference: the torch backend's LanguageModel sharded over every rank.

``zoo run MODEL --nproc N`` starts N workers with ``ZOO_TENSOR_PARALLEL=1``;
in each, :func:`install` wraps the torch backend's ``load_model`` so the
model is loaded (memory-mapped, on CPU), then sharded with tensor parallel
(each rank keeps 1/N of every projection, its own heads, a 1/N slice of the
KV cache), and only then moved to the rank's device. Every rank runs the same
deterministic generation on replicated logits, so they stay in lock-step;
only rank 0's output reaches the terminal.
"""

from __future__ import annotations

import os
from typing import Any

TENSOR_PARALLEL_ENV = "ZOO_TENSOR_PARALLEL"


def shard_language_model(lm: Any, device: Any = None) -> Any:
    """Shard a loaded ``TorchLanguageModel`` in place over the whole process group."""
    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    from zoo_parallel.plan import ParallelPlan, validate_plan
    from zoo_parallel.tensor_parallel import apply_tensor_parallel

    model = lm.model
    world = dist.get_world_size()
    config = model.config
    plan = ParallelPlan(mp=world, vocab_parallel=config.vocab_size % world == 0)
    validate_plan(plan, config, world)
    device = torch.device(device) if device is not None else torch.device(lm.device)
    mesh = init_device_mesh(device.type, (world,), mesh_dim_names=("mp",))
    apply_tensor_parallel(model, mesh, plan, src_data_rank=None)  # every rank read the same checkpoint
    lm.fused_decode = False  # the torch backend's fused decode step cannot re-pack DTensor shards
    model.init_rope(device)
    lm.device = str(device)
    _shard_kv_cache(model)
    return lm


def _shard_kv_cache(model: Any) -> None:
    """Make ``setup_caches`` allocate per-rank caches: K/V heads of this rank only."""
    original = model.setup_caches

    def setup_caches(max_batch: int, max_seq: int) -> None:
        original(max_batch, max_seq)
        from zoo_torch.model import KVCache

        for layer in model.layers:
            attention = layer.attention
            cache = attention.kv_cache
            if cache is not None and cache.k_cache.shape[1] != attention.n_kv_heads:
                shape = cache.k_cache.shape
                attention.kv_cache = KVCache(shape[0], shape[2], attention.n_kv_heads, shape[3],
                                             cache.k_cache.device, cache.k_cache.dtype)

    model.setup_caches = setup_caches


def load_tensor_parallel(original: Any, config: Any, weights_dir: Any, device: str = "auto", dtype: str = "auto",
                         attention: str = "auto", **kwargs: Any) -> Any:
    """The torch backend's ``load_model``, then sharded over the ranks (loaded on CPU first)."""
    from zoo_parallel.distributed import device_for_rank

    target = device_for_rank()
    lm = original(config, weights_dir, "cpu", dtype if dtype != "auto" else ("bf16" if target.type == "cuda" else "fp32"),
                  attention, **kwargs)
    return shard_language_model(lm, target)


def install() -> None:
    """In a worker: route the torch backend's model loading through tensor parallel."""
    import functools

    import attrs

    from codellama_zoo.registry import Entry, get_registry

    if os.environ.get(TENSOR_PARALLEL_ENV) != "1":
        return
    backends = get_registry().backends
    if "torch" not in backends:
        return
    entry = backends.entries["torch"]
    if entry.spec.load_model is None:
        return
    wrapped = functools.partial(load_tensor_parallel, entry.spec.load_model)
    backends.entries["torch"] = Entry(attrs.evolve(entry.spec, load_model=wrapped), entry.plugin)
