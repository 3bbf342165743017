"""What a ``parallel_config`` asks for, checked against the model and the job.

Everything here is plain Python (no torch) so that a bad combination is
rejected before any process starts, with the numbers in the message.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from codellama_zoo.errors import ConfigError
from codellama_zoo.specs import LlamaConfig

DataParallelMode = Literal["ddp", "fsdp"]
DATA_PARALLEL_MODES: tuple[str, ...] = ("ddp", "fsdp")

# Mesh dimension names, outermost first: pipeline stages span the slowest
# links, tensor parallel groups the fastest (neighbouring ranks).
MESH_DIMS: tuple[str, str, str] = ("pp", "dp", "mp")


@attrs.frozen(kw_only=True)
class ParallelPlan:
    """A validated layout: ``dp * mp * pp`` ranks and how each dimension runs."""

    dp: int = 1
    mp: int = 1
    pp: int = 1
    micro_batch_num: int = 1
    seq_parallel: bool = False  # sequence parallel inside tensor-parallel regions
    vocab_parallel: bool = False  # shard embedding and head over the vocabulary (not vocab_emb_dp)
    dp_mode: DataParallelMode = "ddp"
    gradient_aggregation_group: int = 4  # number of gradient all-reduce buckets (DDP)

    @property
    def world_size(self) -> int:
        return self.dp * self.mp * self.pp

    @property
    def mesh_shape(self) -> tuple[int, int, int]:
        return (self.pp, self.dp, self.mp)

    def describe(self) -> str:
        parts = [f"dp={self.dp}" + (f" ({self.dp_mode})" if self.dp > 1 else ""), f"mp={self.mp}", f"pp={self.pp}"]
        if self.mp > 1:
            parts.append("sequence parallel" if self.seq_parallel else "no sequence parallel")
            parts.append("vocab-parallel embedding/head" if self.vocab_parallel else "replicated embedding/head")
        if self.pp > 1:
            parts.append(f"{self.micro_batch_num} micro-batches")
        return ", ".join(parts)


def _get(source: Any, name: str, default: Any) -> Any:
    if source is None:
        return default
    if isinstance(source, Mapping):
        value = source.get(name, default)
    else:
        value = getattr(source, name, default)
    return default if value is None else value


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"parallel_config.{name} must be a positive integer, got {value!r}")
    return value


def plan_from_config(parallel_config: Any, dp_mode: str | None = None) -> ParallelPlan:
    """Read a ``parallel_config`` (attrs object or mapping, seed field names) into a plan.

    ``dp_mode`` overrides the config's ``data_parallel_mode`` ("ddp" or "fsdp";
    ``optimizer_shard: true`` also selects fsdp, as MindFormers' parallel
    optimizer shards the same state).
    """
    mode = dp_mode or _get(parallel_config, "data_parallel_mode", None)
    if mode is None:
        mode = "fsdp" if _get(parallel_config, "optimizer_shard", False) else "ddp"
    if mode not in DATA_PARALLEL_MODES:
        raise ConfigError(
            f"parallel_config.data_parallel_mode {mode!r} is not known; allowed: {', '.join(DATA_PARALLEL_MODES)}"
        )
    groups = _positive_int("gradient_aggregation_group", _get(parallel_config, "gradient_aggregation_group", 4))
    return ParallelPlan(
        dp=_positive_int("data_parallel", _get(parallel_config, "data_parallel", 1)),
        mp=_positive_int("model_parallel", _get(parallel_config, "model_parallel", 1)),
        pp=_positive_int("pipeline_stage", _get(parallel_config, "pipeline_stage", 1)),
        micro_batch_num=_positive_int("micro_batch_num", _get(parallel_config, "micro_batch_num", 1)),
        seq_parallel=bool(_get(parallel_config, "use_seq_parallel", False)),
        vocab_parallel=not bool(_get(parallel_config, "vocab_emb_dp", True)),
        dp_mode=typing.cast(DataParallelMode, mode),
        gradient_aggregation_group=groups,
    )


def validate_plan(
    plan: ParallelPlan,
    config: LlamaConfig,
    world_size: int,
    *,
    batch_size: int | None = None,
    seq_length: int | None = None,
) -> ParallelPlan:
    """Reject combinations that cannot run; every message carries the numbers.

    ``batch_size`` is the global batch of one optimizer step and
    ``seq_length`` the training sequence length, when known.
    """
    problems: list[str] = []
    if plan.world_size != world_size:
        problems.append(
            f"data_parallel={plan.dp} x model_parallel={plan.mp} x pipeline_stage={plan.pp} = "
            f"{plan.world_size}, but the job has {world_size} process(es); the product must equal the "
            "world size (--nproc x --nnodes)"
        )
    mp = plan.mp
    if config.n_heads % mp:
        problems.append(
            f"n_heads={config.n_heads} is not divisible by model_parallel={mp}; tensor parallel splits "
            "attention heads evenly across ranks"
        )
    if config.kv_heads % mp:
        problems.append(
            f"n_kv_heads={config.kv_heads} is not divisible by model_parallel={mp}; each rank needs whole "
            f"key/value heads (use model_parallel in {_divisors(config.kv_heads)})"
        )
    if config.ffn_hidden % mp:
        problems.append(f"the MLP hidden size {config.ffn_hidden} is not divisible by model_parallel={mp}")
    if plan.vocab_parallel and config.vocab_size % mp:
        problems.append(
            f"vocab_size={config.vocab_size} is not divisible by model_parallel={mp}; set vocab_emb_dp: true "
            "to keep the embedding and head replicated"
        )
    if config.n_layers % plan.pp:
        problems.append(
            f"n_layers={config.n_layers} is not divisible by pipeline_stage={plan.pp}; every stage holds "
            f"the same number of layers (use pipeline_stage in {_divisors(config.n_layers)})"
        )
    if plan.pp > 1 and plan.micro_batch_num < plan.pp:
        problems.append(
            f"micro_batch_num={plan.micro_batch_num} is smaller than pipeline_stage={plan.pp}; the "
            "pipeline needs at least one micro-batch per stage"
        )
    if batch_size is not None:
        if batch_size % plan.dp:
            problems.append(f"the global batch size {batch_size} is not divisible by data_parallel={plan.dp}")
        elif plan.pp > 1 and (batch_size // plan.dp) % plan.micro_batch_num:
            problems.append(
                f"the per-replica batch {batch_size // plan.dp} (global {batch_size} / data_parallel={plan.dp}) "
                f"is not divisible by micro_batch_num={plan.micro_batch_num}"
            )
    if seq_length is not None and plan.seq_parallel and plan.mp > 1 and seq_length % plan.mp:
        problems.append(
            f"seq_length={seq_length} is not divisible by model_parallel={plan.mp}; sequence parallel splits "
            "the sequence evenly"
        )
    if problems:
        raise ConfigError("invalid parallel_config: " + "; ".join(problems))
    return plan


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)
