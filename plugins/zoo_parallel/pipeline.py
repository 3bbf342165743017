"""Pipeline parallel: cut the Llama model into stages for ``torch.distributed.pipelining``.

Stage ``s`` of ``pp`` keeps layers ``[s*n/pp, (s+1)*n/pp)``, the first stage
also the embedding, the last the final norm and output head. A stage is a
small module that reuses the model's own sub-modules and calls them the way
``Transformer.forward`` does for training (full causal attention, positions
``0..T-1``); the model file is not changed. Parameter names stay those of the
whole model (``layers.7.attention.wq.weight``), so sharded checkpoints from
different layouts line up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor, nn


def stage_layer_range(n_layers: int, pp: int, stage: int) -> range:
    per_stage = n_layers // pp
    return range(stage * per_stage, (stage + 1) * per_stage)


def build_stage_module(model: Any, pp: int, stage: int) -> nn.Module:
    """The part of ``model`` that pipeline stage ``stage`` of ``pp`` runs; other layers are dropped."""
    import torch
    from torch import nn

    from zoo_torch.model import rope_cos_sin

    class PipelineStageModule(nn.Module):
        """Layers of one stage; the first embeds tokens, the last returns fp32 logits."""

        def __init__(self) -> None:
            super().__init__()
            self.config = model.config
            self.stage, self.num_stages = stage, pp
            self.layer_ids = list(stage_layer_range(model.config.n_layers, pp, stage))
            self.tok_embeddings: Any = model.tok_embeddings if stage == 0 else None
            self.layers = nn.ModuleDict({str(i): model.layers[i] for i in self.layer_ids})
            last = stage == pp - 1
            self.norm: Any = model.norm if last else None
            self.output: Any = model.output if last else None
            self.inv_freq: Any
            self.register_buffer("inv_freq", model.inv_freq, persistent=False)
            # Set by the engine under tensor + sequence parallel: activations travel between
            # stages as each rank's local slice of the sequence, (B, T/mp, C).
            self.sequence_mesh: Any = None

        def forward(self, x: Tensor) -> Tensor:
            if self.tok_embeddings is not None:
                h = self.tok_embeddings(x)  # (B,T,C)
            elif self.sequence_mesh is not None:
                from torch.distributed.tensor import DTensor, Shard

                h = DTensor.from_local(x, self.sequence_mesh, [Shard(1)], run_check=False)
            else:
                h = x
            b, t = h.shape[0], h.shape[1]
            positions = torch.arange(t, device=self.inv_freq.device).expand(b, t)
            cos, sin = rope_cos_sin(self.inv_freq, positions)
            for layer in self.layers.values():
                h = layer(h, cos, sin, None)
            if self.output is None:
                return h.to_local() if hasattr(h, "to_local") else h
            return self.output(self.norm(h)).float()  # (B,T,V)

    return PipelineStageModule()


def build_schedule(stage_module: nn.Module, stage: int, pp: int, group: Any, device: Any,
                   micro_batch_num: int, loss_fn: Any) -> Any:
    """A GPipe schedule over ``micro_batch_num`` micro-batches for this rank's stage."""
    from torch.distributed.pipelining import PipelineStage, ScheduleGPipe

    pipeline_stage = PipelineStage(stage_module, stage, pp, device, group=group)
    return ScheduleGPipe(pipeline_stage, n_microbatches=micro_batch_num, loss_fn=loss_fn)
