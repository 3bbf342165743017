"""Parallel strategies for the PyTorch runtime, built on torch.distributed.

Data parallel (DDP), fully sharded data parallel (FSDP2 ``fully_shard``),
tensor parallel with optional sequence parallel (DTensor), pipeline parallel
(``torch.distributed.pipelining``) and their combination on one DeviceMesh,
plus the ``torch.distributed.run`` launcher behind ``zoo train --nproc`` and
``zoo run --nproc``, and sharded checkpoints (``torch.distributed.checkpoint``).

Importing this package never imports torch; every module that needs it
imports it inside its functions or is only imported from such functions.
"""

from __future__ import annotations

from zoo_parallel.plan import ParallelPlan, plan_from_config, validate_plan

__all__ = ["ParallelPlan", "plan_from_config", "validate_plan"]
