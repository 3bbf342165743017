"""``parallel_config`` on MindSpore: validation, the msrun world, semi-auto parallel settings.

* data parallel only (``model_parallel = pipeline_stage = 1``): any device,
  CPU included; ``msrun`` starts ``data_parallel`` workers (CPU collectives:
  mccl) and gradients are averaged;
* tensor (model) and pipeline parallel: MindSpore's semi-auto parallel,
  which only Ascend and GPU implement. The layout is validated everywhere
  (dp x mp x pp = device count, heads / kv heads / ffn / vocabulary divisible
  by mp, layers by pp) and mapped to ``set_auto_parallel_context`` settings and
  Megatron-style operator shards; on CPU it is refused with that reason.
"""

from __future__ import annotations

from typing import Any

import attrs

from codellama_zoo.errors import CapabilityError, ConfigError
from codellama_zoo.specs import LlamaConfig


@attrs.frozen
class ParallelPlan:
    """A validated layout: world size and the MindSpore mode it needs."""

    data_parallel: int
    model_parallel: int
    pipeline_stage: int
    micro_batch_num: int
    use_seq_parallel: bool = False

    @property
    def world_size(self) -> int:
        return self.data_parallel * self.model_parallel * self.pipeline_stage

    @property
    def semi_auto(self) -> bool:
        return self.model_parallel > 1 or self.pipeline_stage > 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def validate(parallel_config: Any, config: LlamaConfig, device_kind: str, device_count: int | None = None,
             batch_size: int = 1) -> ParallelPlan:
    """Check a ``parallel_config`` against the architecture and the devices; raise naming the culprit."""
    dp, mp, pp = parallel_config.data_parallel, parallel_config.model_parallel, parallel_config.pipeline_stage
    plan = ParallelPlan(dp, mp, pp, parallel_config.micro_batch_num, parallel_config.use_seq_parallel)
    layout = f"data_parallel {dp} x model_parallel {mp} x pipeline_stage {pp}"
    if device_count is not None and plan.world_size != device_count:
        raise ConfigError(
            f"parallel_config: {layout} = {plan.world_size} devices, but {device_count} are in use; "
            "the product must equal the device count"
        )
    checks = [
        ("n_heads", config.n_heads, mp, "model_parallel"),
        ("n_kv_heads", config.kv_heads, mp, "model_parallel"),
        ("ffn hidden size", config.ffn_hidden, mp, "model_parallel"),
        ("vocab_size", config.vocab_size, mp, "model_parallel"),
        ("n_layers", config.n_layers, pp, "pipeline_stage"),
    ]
    for what, value, parts, key in checks:
        if value % parts:
            raise ConfigError(f"parallel_config.{key}={parts} does not divide {what}={value}; choose a divisor of {value}")
    if pp > 1 and plan.micro_batch_num < pp:
        raise ConfigError(
            f"parallel_config.micro_batch_num={plan.micro_batch_num} is below pipeline_stage={pp}; "
            "pipelining needs at least one micro batch per stage"
        )
    if pp > 1 and batch_size % plan.micro_batch_num:
        raise ConfigError(
            f"runner_config.batch_size={batch_size} is not divisible by micro_batch_num={plan.micro_batch_num}"
        )
    if plan.semi_auto and device_kind not in ("ascend", "gpu"):
        raise CapabilityError(
            f"parallel_config {layout} needs MindSpore's semi-auto parallel, which runs only on Ascend or GPU, "
            f"not on {device_kind}; on CPU use data_parallel only (model_parallel: 1, pipeline_stage: 1)"
        )
    return plan


def auto_parallel_context(plan: ParallelPlan, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``mindspore.set_auto_parallel_context`` (``parallel:`` keys override)."""
    if not plan.semi_auto:
        settings: dict[str, Any] = {"parallel_mode": "data_parallel", "gradients_mean": True}
    else:
        settings = {
            "parallel_mode": "semi_auto_parallel",
            "gradients_mean": False,
            "full_batch": True,
            "pipeline_stages": plan.pipeline_stage,
            "enable_parallel_optimizer": False,
        }
    settings["device_num"] = plan.world_size
    modes = {0: "data_parallel", 1: "semi_auto_parallel", 2: "auto_parallel", 3: "hybrid_parallel"}
    for key, value in (extra or {}).items():
        if key in ("parallel_mode",) and isinstance(value, int):
            value = modes.get(value, value)
        if key in ("parallel_optimizer_config", "strategy_ckpt_save_file", "search_mode", "enable_alltoall",
                   "full_batch", "gradients_mean", "enable_parallel_optimizer", "parallel_mode"):
            settings[key] = value
    if plan.semi_auto and settings["parallel_mode"] == "data_parallel":
        raise ConfigError(
            "parallel.parallel_mode is data parallel (0) but parallel_config asks for model/pipeline parallel; "
            "set parallel.parallel_mode: 1 (semi-auto) or model_parallel/pipeline_stage to 1"
        )
    return settings


def shard_strategies(plan: ParallelPlan) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Megatron layout as MatMul(transpose_b) strategies: ((x rows, x cols), (w rows, w cols))."""
    dp, mp = plan.data_parallel, plan.model_parallel
    return {
        "column": ((dp, 1), (mp, 1)),  # wq wk wv w1 w3 output: split the weight's output rows
        "row": ((dp, mp), (1, mp)),  # wo w2: split the weight's input columns, all-reduce the result
    }


COLUMN = ("wq", "wk", "wv", "w1", "w3")
ROW = ("wo", "w2")


def apply(model: Any, plan: ParallelPlan) -> Any:
    """Attach shard strategies and pipeline stages to the Cell (semi-auto parallel on Ascend/GPU)."""
    if not plan.semi_auto:
        return model
    strategies = shard_strategies(plan)
    per_stage = model.config.n_layers // plan.pipeline_stage
    for index, layer in enumerate(model.layers):
        for name in COLUMN + ROW:
            owner = layer.attention if name in ("wq", "wk", "wv", "wo") else layer.feed_forward
            dense = getattr(owner, name)
            dense.matmul.shard(strategies["column" if name in COLUMN else "row"])
        if plan.pipeline_stage > 1:
            layer.pipeline_stage = index // per_stage
    model.output.matmul.shard(strategies["column"])
    if plan.pipeline_stage > 1:
        model.tok_embeddings.pipeline_stage = 0
        model.norm.pipeline_stage = plan.pipeline_stage - 1
        model.output.pipeline_stage = plan.pipeline_stage - 1
    return model
