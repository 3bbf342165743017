"""Tensor (model) parallel and sequence parallel for the Llama model, on DTensor.

Megatron's layout expressed with ``torch.distributed.tensor.parallel``:
``wq/wk/wv`` and ``w1/w3`` are column-parallel (each rank owns whole heads /
a slice of the MLP), ``wo`` and ``w2`` row-parallel (one all-reduce per
sub-layer). With ``vocab_parallel`` the embedding is split over the
vocabulary and the output head over its rows, so neither is replicated.
With ``seq_parallel`` the norms and residual stream hold a slice of the
sequence between the tensor-parallel regions (all-gather in, reduce-scatter
out) instead of a full replica. Every other parameter becomes a replicated
DTensor, so optimizers, gradient clipping and ``torch.distributed.checkpoint``
see one kind of parameter.

The model file is not touched: after sharding, each attention module's
``n_heads`` / ``n_kv_heads`` are set to the per-rank counts it reshapes with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from codellama_zoo.errors import CapabilityError

if TYPE_CHECKING:
    from torch import nn
    from torch.distributed.device_mesh import DeviceMesh

    from zoo_parallel.plan import ParallelPlan


def _replicate_style(input_layout: Any = None, output_layout: Any = None, use_local_output: bool = True) -> Any:
    """A ParallelStyle that keeps a module whole on every rank, as replicated DTensors.

    ``input_layout``: the placement the module's input arrives in (None: a plain
    tensor, identical on every rank); ``output_layout``: the placement handed on
    (None: replicated).
    """
    from torch.distributed.tensor import DTensor, Replicate, distribute_module
    from torch.distributed.tensor.parallel.style import ParallelStyle

    class ReplicateParallel(ParallelStyle):
        def _prepare_input(self, module: Any, inputs: Any, mesh: Any) -> Any:
            converted = []
            for value in inputs:
                if isinstance(value, DTensor):
                    value = value.redistribute(mesh, [Replicate()])
                elif hasattr(value, "is_floating_point"):
                    placement = [input_layout] if input_layout is not None else [Replicate()]
                    value = DTensor.from_local(value, mesh, placement, run_check=False)
                    if input_layout is not None:
                        value = value.redistribute(mesh, [Replicate()])
                converted.append(value)
            return tuple(converted)

        def _prepare_output(self, module: Any, output: Any, mesh: Any) -> Any:
            if output_layout is not None:
                output = output.redistribute(mesh, [output_layout])
            return output.to_local() if use_local_output else output

        def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
            return distribute_module(module, device_mesh, None, self._prepare_input, self._prepare_output)

    return ReplicateParallel()


def block_plan(seq_parallel: bool) -> dict[str, Any]:
    """The parallel style of every sub-module of one ``TransformerBlock``."""
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        PrepareModuleInput,
        RowwiseParallel,
        SequenceParallel,
    )

    plan: dict[str, Any] = {
        "attention.wq": ColwiseParallel(),
        "attention.wk": ColwiseParallel(),
        "attention.wv": ColwiseParallel(),
        "feed_forward.w1": ColwiseParallel(),
        "feed_forward.w3": ColwiseParallel(),
    }
    if not seq_parallel:
        plan.update({
            "attention.wo": RowwiseParallel(),
            "feed_forward.w2": RowwiseParallel(),
            "attention_norm": _replicate_style(),
            "ffn_norm": _replicate_style(),
        })
        return plan
    # Attention.forward(x, cos, sin, mask, input_pos, kv_len): only x is sequence-sharded.
    attention_inputs = (Shard(1), None, None, None, None, None)
    attention_desired = (Replicate(), None, None, None, None, None)
    plan.update({
        "attention_norm": SequenceParallel(),
        "ffn_norm": SequenceParallel(),
        "attention": PrepareModuleInput(
            input_layouts=attention_inputs, desired_input_layouts=attention_desired, use_local_output=True
        ),
        "feed_forward": PrepareModuleInput(
            input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),), use_local_output=True
        ),
        "attention.wo": RowwiseParallel(output_layouts=Shard(1), use_local_output=False),
        "feed_forward.w2": RowwiseParallel(output_layouts=Shard(1), use_local_output=False),
    })
    return plan


def top_plan(seq_parallel: bool, vocab_parallel: bool) -> dict[str, Any]:
    """Styles for the embedding, the final norm and the output head."""
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, SequenceParallel

    stream = Shard(1) if seq_parallel else Replicate()
    plan: dict[str, Any] = {}
    if vocab_parallel:
        plan["tok_embeddings"] = RowwiseParallel(
            input_layouts=Replicate(), output_layouts=stream, use_local_output=not seq_parallel
        )
        plan["output"] = ColwiseParallel(input_layouts=stream, output_layouts=Replicate(), use_local_output=True)
    else:
        plan["tok_embeddings"] = _replicate_style(
            output_layout=Shard(1) if seq_parallel else None, use_local_output=not seq_parallel
        )
        plan["output"] = _replicate_style(input_layout=Shard(1) if seq_parallel else None)
    plan["norm"] = SequenceParallel() if seq_parallel else _replicate_style()
    return plan


def apply_tensor_parallel(model: Any, mesh: DeviceMesh, plan: ParallelPlan, *, src_data_rank: int | None = 0) -> nn.Module:
    """Shard ``model`` (a ``zoo_torch`` Transformer or a pipeline stage of one) over ``mesh`` in place.

    ``src_data_rank=None`` takes each rank's slice from its own full copy of
    the weights (no communication; right after every rank loaded the same
    checkpoint); ``0`` scatters rank 0's weights.
    """
    from torch.distributed.tensor.parallel import parallelize_module

    mp = mesh.size()
    config = model.config
    if config.n_heads % mp or config.kv_heads % mp:
        raise CapabilityError(
            f"tensor parallel over {mp} ranks needs n_heads={config.n_heads} and n_kv_heads={config.kv_heads} "
            f"divisible by {mp}"
        )
    modules = dict(model.named_children())
    top = {name: style for name, style in top_plan(plan.seq_parallel, plan.vocab_parallel).items() if modules.get(name) is not None}
    parallelize_module(model, mesh, top, src_data_rank=src_data_rank)
    for block in _blocks(model):
        parallelize_module(block, mesh, block_plan(plan.seq_parallel), src_data_rank=src_data_rank)
        attention = block.attention
        attention.n_heads = config.n_heads // mp
        attention.n_kv_heads = config.kv_heads // mp
    model.tensor_parallel_size = mp
    return model


def _blocks(model: Any) -> list[Any]:
    layers = model.layers
    return list(layers.values()) if hasattr(layers, "values") else list(layers)
