"""Apply a :class:`ParallelPlan` to a built model and run training steps on it.

:func:`parallelize` is what a trainer calls once, after building the model
and before building the optimizer: it creates the ``(pp, dp, mp)`` device
mesh, cuts the pipeline stage, applies tensor/sequence parallel, then data
parallel (DDP or FSDP2). The returned :class:`ParallelModel` gives the
parameters to optimize, which rows of the global batch this rank reads, and
:meth:`ParallelModel.train_step` — forward and backward with the loss
normalised by the number of target tokens of the *global* batch, so the
gradients equal those of one process on the whole batch whatever the layout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from codellama_zoo.errors import ConfigError, UsageError
from zoo_parallel.plan import MESH_DIMS, ParallelPlan, validate_plan

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

IGNORE_INDEX = -100


def build_mesh(plan: ParallelPlan, device: Any = None) -> Any:
    """The ``(pp, dp, mp)`` DeviceMesh over every rank of the job."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    if not dist.is_initialized():
        raise UsageError(
            "a parallel plan needs torch.distributed to be initialised; start the job with "
            "`zoo train CONFIG --nproc N` (or torchrun)"
        )
    device_type = getattr(device, "type", None) or ("cuda" if dist.get_backend() == "nccl" else "cpu")
    return init_device_mesh(device_type, plan.mesh_shape, mesh_dim_names=MESH_DIMS)


class ParallelModel:
    """A model (or this rank's pipeline stage of it) laid out by a plan."""

    def __init__(self, module: nn.Module, plan: ParallelPlan, mesh: Any, device: Any, *,
                 schedule: Any = None, manual_grad_sync: bool = False) -> None:
        self.module = module
        self.plan = plan
        self.mesh = mesh
        self.device = device
        self.schedule = schedule
        self.manual_grad_sync = manual_grad_sync
        self._loss_scale = 1.0

    # -- where this rank sits ------------------------------------------------
    def _coordinate(self, dim: str) -> int:
        return int(self.mesh[dim].get_local_rank())

    @property
    def dp_rank(self) -> int:
        return self._coordinate("dp")

    @property
    def mp_rank(self) -> int:
        return self._coordinate("mp")

    @property
    def pp_rank(self) -> int:
        return self._coordinate("pp")

    @property
    def is_first_stage(self) -> bool:
        return self.pp_rank == 0

    @property
    def is_last_stage(self) -> bool:
        return self.pp_rank == self.plan.pp - 1

    def parameters(self) -> list[Any]:
        return [p for p in self.module.parameters() if p.requires_grad]

    def named_parameters(self) -> list[tuple[str, Any]]:
        return list(self.module.named_parameters())

    def local_rows(self, global_batch_size: int) -> slice:
        """Rows of the global batch this rank's data-parallel replica trains on."""
        if global_batch_size % self.plan.dp:
            raise ConfigError(
                f"the global batch size {global_batch_size} is not divisible by data_parallel={self.plan.dp}"
            )
        per_replica = global_batch_size // self.plan.dp
        return slice(self.dp_rank * per_replica, (self.dp_rank + 1) * per_replica)

    def local_batch(self, tensor: Tensor) -> Tensor:
        return tensor[self.local_rows(tensor.shape[0])]

    # -- compute ---------------------------------------------------------------
    def __call__(self, tokens: Tensor) -> Tensor:
        """Full logits of this replica's batch (not available under pipeline parallel)."""
        if self.schedule is not None:
            raise UsageError("a pipeline-parallel model has no single forward; use train_step()")
        return self.module(tokens)

    def count_targets(self, labels_per_micro_step: list[Tensor]) -> float:
        """Target tokens of one optimizer step over every replica (the loss normaliser)."""
        import torch
        import torch.distributed as dist

        count = sum((labels != IGNORE_INDEX).sum().to(torch.float64) for labels in labels_per_micro_step)
        count = torch.as_tensor(count, dtype=torch.float64, device=self.device)
        dist.all_reduce(count, group=self.mesh["dp"].get_group())
        if count.item() == 0:
            raise ConfigError("the batch has no target tokens (every label is -100)")
        return float(count.item())

    def train_step(self, tokens: Tensor, labels: Tensor, *, total_targets: float | None = None,
                   autocast_dtype: Any = None, sync: bool = True) -> float:
        """Forward and backward on this replica's rows; returns its share of the global mean loss.

        ``tokens`` and ``labels`` (B_local, T): ``labels[b, t]`` is the target of
        position t (``-100`` = ignored). Gradients are added to ``.grad`` for the
        optimizer, already averaged across data-parallel replicas. The loss is
        normalised by ``total_targets`` (default: this batch's targets over all
        replicas); pass :meth:`count_targets` of every micro step when
        accumulating gradients, and the returned values sum to the step's mean
        loss. The same value is returned on every rank. ``sync=False`` skips
        the data-parallel gradient reduction (all micro steps but the last).
        """
        import contextlib

        import torch
        import torch.distributed as dist
        import torch.nn.functional as F

        tokens, labels = tokens.to(self.device), labels.to(self.device)
        total = torch.tensor(total_targets if total_targets is not None else self.count_targets([labels]),
                             dtype=torch.float64)
        dp = self.plan.dp
        autocast = (torch.autocast(torch.device(self.device).type, dtype=autocast_dtype)
                    if autocast_dtype is not None else contextlib.nullcontext())
        if self.schedule is None:
            no_sync = getattr(self.module, "no_sync", None)  # DDP
            set_sync = getattr(self.module, "set_requires_gradient_sync", None)  # FSDP2
            if set_sync is not None:
                set_sync(sync)
            with autocast, (no_sync() if no_sync is not None and not sync else contextlib.nullcontext()):
                logits = self.module(tokens)
                ce_sum = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX,
                                         reduction="sum")
                (ce_sum * float(dp / total.item())).backward()
            local = ce_sum.detach().to(torch.float64)
        else:
            micro = self.plan.micro_batch_num
            self._loss_scale = float(dp * micro / total.item())
            losses: list[Tensor] = []
            with autocast:
                if self.is_first_stage:
                    self.schedule.step(tokens)
                elif self.is_last_stage:
                    self.schedule.step(target=labels, losses=losses)
                else:
                    self.schedule.step()
            if self.is_last_stage:
                local = torch.stack([loss.detach() for loss in losses]).sum().to(torch.float64) / self._loss_scale
            else:
                local = torch.zeros((), dtype=torch.float64, device=self.device)
            dist.all_reduce(local, group=self.mesh["pp"].get_group())  # only the last stage holds losses
        if self.manual_grad_sync and sync:
            from zoo_parallel.data_parallel import allreduce_gradients

            allreduce_gradients(self.parameters(), self.mesh["dp"], self.plan.gradient_aggregation_group)
        dist.all_reduce(local, group=self.mesh["dp"].get_group())
        return float(local.item() / total.item())


    def eval_sums(self, tokens: Tensor, labels: Tensor) -> tuple[float, float]:
        """``(summed loss, target count)`` of this batch over every replica, without gradients."""
        import torch
        import torch.distributed as dist
        import torch.nn.functional as F

        tokens, labels = tokens.to(self.device), labels.to(self.device)
        count = (labels != IGNORE_INDEX).sum().to(torch.float64)
        if self.schedule is None:
            with torch.no_grad():
                logits = self.module(tokens)
                ce_sum = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX,
                                         reduction="sum").to(torch.float64)
        else:
            self._loss_scale = 1.0
            losses: list[Tensor] = []
            if self.is_first_stage:
                self.schedule.eval(tokens)
            elif self.is_last_stage:
                self.schedule.eval(target=labels, losses=losses)
            else:
                self.schedule.eval()
            ce_sum = (torch.stack([loss.detach() for loss in losses]).sum().to(torch.float64) if self.is_last_stage
                      else torch.zeros((), dtype=torch.float64, device=self.device))
            dist.all_reduce(ce_sum, group=self.mesh["pp"].get_group())
        sums = torch.stack([ce_sum.to(self.device), count.to(self.device)])
        dist.all_reduce(sums, group=self.mesh["dp"].get_group())
        return float(sums[0].item()), float(sums[1].item())

    def pipeline_loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """The per-micro-batch loss the pipeline schedule backpropagates (scaled so grads sum right)."""
        import torch.nn.functional as F

        ce_sum = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX,
                                 reduction="sum")
        return ce_sum * self._loss_scale

    def clip_grad_norm_(self, max_norm: float) -> float:
        """Clip by the global gradient norm over every shard and stage; returns that norm."""
        import torch
        import torch.distributed as dist
        from torch.distributed.tensor import DTensor

        params = [p for p in self.parameters() if p.grad is not None]
        grads = [p.grad for p in params]
        norm = torch.nn.utils.get_total_norm(grads, norm_type=2.0) if grads else torch.zeros((), device=self.device)
        if isinstance(norm, DTensor):
            norm = norm.full_tensor()
        if self.plan.pp > 1:
            squared = norm.pow(2)
            dist.all_reduce(squared, group=self.mesh["pp"].get_group())
            norm = squared.sqrt()
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
        return float(norm.item())

    # -- weights -----------------------------------------------------------------
    def sharded_state_dict(self) -> dict[str, Any]:
        """This rank's view of the model weights (DTensors where sharded), whole-model names."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(self.module)

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """Every weight, unsharded, on CPU, on every rank (small models: tests, export)."""
        import torch.distributed as dist
        from torch.distributed.tensor import DTensor

        own = {}
        for name, value in self.sharded_state_dict().items():  # same order on every rank
            full = value.full_tensor() if isinstance(value, DTensor) else value
            own[name] = full.detach().to("cpu", copy=True)
        if self.plan.pp == 1:
            return own
        gathered: list[Any] = [None] * self.plan.pp
        dist.all_gather_object(gathered, own, group=self.mesh["pp"].get_group())
        merged: dict[str, torch.Tensor] = {}
        for part in gathered:
            merged.update(part)
        return merged


def parallelize(model: Any, plan: ParallelPlan, *, device: Any = None, mesh: Any = None,
                batch_size: int | None = None, seq_length: int | None = None,
                src_data_rank: int | None = 0) -> ParallelModel:
    """Lay ``model`` (a ``zoo_torch`` Transformer on every rank) out as ``plan`` says.

    Every rank must pass the same model architecture; with ``src_data_rank=0``
    rank 0's weights are the ones that count. The model is changed in place
    (and, under pipeline parallel, cut down to this rank's stage).
    """
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        raise UsageError("parallelize() needs torch.distributed; launch with `zoo train CONFIG --nproc N`")
    validate_plan(plan, model.config, dist.get_world_size(), batch_size=batch_size, seq_length=seq_length)
    if device is None:
        device = next(model.parameters()).device
        if device.type == "meta":
            device = torch.device("cpu")
    mesh = mesh if mesh is not None else build_mesh(plan, device)
    module: Any = model
    stage_index = int(mesh["pp"].get_local_rank())
    if plan.pp > 1:
        from zoo_parallel.pipeline import build_stage_module

        module = build_stage_module(model, plan.pp, stage_index)
    if plan.mp > 1:
        from zoo_parallel.tensor_parallel import apply_tensor_parallel

        apply_tensor_parallel(module, mesh["mp"], plan, src_data_rank=src_data_rank)
        if plan.pp > 1 and plan.seq_parallel:
            module.sequence_mesh = mesh["mp"]
    manual_sync = False
    if plan.dp > 1:
        from zoo_parallel import data_parallel

        if plan.dp_mode == "fsdp":
            data_parallel.apply_fsdp(module, mesh["dp"])
        elif plan.mp > 1 or plan.pp > 1:
            # DDP accepts neither DTensor parameters nor a pipeline's several forwards per
            # backward; average gradients after the step instead (same arithmetic).
            manual_sync = True
        else:
            module = data_parallel.apply_ddp(module, mesh["dp"], plan.gradient_aggregation_group, device)
    parallel = ParallelModel(module, plan, mesh, device, manual_grad_sync=manual_sync)
    if plan.pp > 1:
        from zoo_parallel.pipeline import build_schedule

        parallel.schedule = build_schedule(
            module, stage_index, plan.pp, mesh["pp"].get_group(), device, plan.micro_batch_num, parallel.pipeline_loss
        )
    return parallel
