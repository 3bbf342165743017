"""The ``ParallelStrategySpec`` callables: validate a parallel_config, apply it to a model.

``torch/auto`` lays a model out exactly as the config's ``parallel_config``
says (any mix of dp/mp/pp); the single-purpose strategies (``ddp``, ``fsdp``,
``tensor``, ``sequence``, ``pipeline``) put every rank of the job on one
dimension, for users who just want "data parallel over all GPUs".
"""

from __future__ import annotations

from typing import Any

import attrs

from codellama_zoo.specs import LlamaConfig
from zoo_parallel.plan import ParallelPlan, plan_from_config, validate_plan

SINGLE: dict[str, dict[str, Any]] = {
    "ddp": {"dim": "dp", "dp_mode": "ddp"},
    "fsdp": {"dim": "dp", "dp_mode": "fsdp"},
    "tensor": {"dim": "mp", "seq_parallel": False},
    "sequence": {"dim": "mp", "seq_parallel": True},
    "pipeline": {"dim": "pp"},
}


def plan_for(strategy: str, parallel_config: Any, world_size: int) -> ParallelPlan:
    """The plan strategy ``strategy`` makes of ``parallel_config`` for ``world_size`` ranks."""
    plan = plan_from_config(parallel_config)
    if strategy == "auto":
        return plan
    fields = dict(SINGLE[strategy])
    dim = fields.pop("dim")
    layout = {"dp": 1, "mp": 1, "pp": 1, dim: world_size}
    if dim == "pp" and plan.micro_batch_num < world_size:
        layout["micro_batch_num"] = world_size
    changes: dict[str, Any] = {**layout, **fields}
    return attrs.evolve(plan, **changes)


def make_validate(strategy: str) -> Any:
    def validate(parallel_config: Any, config: LlamaConfig, world_size: int, **batch: Any) -> ParallelPlan:
        """Check the layout against the model and job size; returns the plan."""
        return validate_plan(plan_for(strategy, parallel_config, world_size), config, world_size, **batch)

    return validate


def make_apply(strategy: str) -> Any:
    def apply(model: Any, parallel_config: Any, **options: Any) -> Any:
        """Lay out ``model`` on the running process group; returns a ``ParallelModel``."""
        import torch.distributed as dist

        from zoo_parallel.engine import parallelize

        plan = parallel_config if isinstance(parallel_config, ParallelPlan) else plan_for(
            strategy, parallel_config, dist.get_world_size()
        )
        return parallelize(model, plan, **options)

    return apply
