"""Plan validation: bad layouts are refused before any process starts, with the numbers."""

from __future__ import annotations

import attrs
import pytest

from codellama_zoo.errors import ConfigError
from codellama_zoo.registry import get_registry
from zoo_parallel.plan import ParallelPlan, plan_from_config, validate_plan


def _config(name: str = "codellama-34b"):
    return get_registry().model(name).config


def test_seed_fields_map_onto_a_plan() -> None:
    plan = plan_from_config({
        "data_parallel": 2, "model_parallel": 4, "pipeline_stage": 2, "micro_batch_num": 8,
        "use_seq_parallel": True, "vocab_emb_dp": False, "gradient_aggregation_group": 2,
    })
    assert (plan.dp, plan.mp, plan.pp, plan.micro_batch_num) == (2, 4, 2, 8)
    assert plan.seq_parallel and plan.vocab_parallel and plan.dp_mode == "ddp"
    assert plan.mesh_shape == (2, 2, 4) and plan.world_size == 16
    assert plan_from_config({"optimizer_shard": True}).dp_mode == "fsdp"
    assert plan_from_config({}, dp_mode="fsdp").dp_mode == "fsdp"


def test_34b_layouts_that_fit_are_accepted() -> None:
    # 34B: 64 heads, 8 kv heads, 48 layers (finetune_codellama_34b_16p-like: dp 2, mp 8)
    validate_plan(plan_from_config({"data_parallel": 2, "model_parallel": 8}), _config(), 16)
    validate_plan(plan_from_config({"model_parallel": 4, "pipeline_stage": 4, "micro_batch_num": 4}), _config(), 16)


@pytest.mark.parametrize(
    ("fields", "world", "needles"),
    [
        ({"data_parallel": 2, "model_parallel": 2}, 2, ["data_parallel=2", "model_parallel=2", "= 4", "2 process"]),
        ({"model_parallel": 16}, 16, ["n_kv_heads=8", "model_parallel=16"]),
        ({"model_parallel": 3}, 3, ["n_heads=64", "model_parallel=3"]),
        ({"pipeline_stage": 5, "micro_batch_num": 5}, 5, ["n_layers=48", "pipeline_stage=5"]),
        ({"pipeline_stage": 4, "micro_batch_num": 2}, 4, ["micro_batch_num=2", "pipeline_stage=4"]),
        ({"data_parallel": 0}, 1, ["data_parallel", "0"]),
        ({"data_parallel_mode": "zero3"}, 1, ["zero3", "ddp", "fsdp"]),
    ],
)
def test_bad_layouts_are_rejected_with_numbers(fields: dict, world: int, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        validate_plan(plan_from_config(fields), _config(), world)
    for needle in needles:
        assert needle in str(info.value)


def test_vocab_parallel_needs_a_divisible_vocabulary() -> None:
    config = attrs.evolve(_config("codellama-7b"), vocab_size=32001)
    plan = plan_from_config({"model_parallel": 2, "vocab_emb_dp": False})
    with pytest.raises(ConfigError, match="vocab_size=32001"):
        validate_plan(plan, config, 2)
    validate_plan(plan_from_config({"model_parallel": 2, "vocab_emb_dp": True}), config, 2)


def test_batch_and_sequence_divisibility() -> None:
    plan = ParallelPlan(dp=2, pp=2, micro_batch_num=4)
    with pytest.raises(ConfigError, match="global batch size 7"):
        validate_plan(plan, _config(), 4, batch_size=7)
    with pytest.raises(ConfigError, match="per-replica batch 3"):
        validate_plan(ParallelPlan(dp=2, pp=2, micro_batch_num=2), _config(), 4, batch_size=6)
    with pytest.raises(ConfigError, match="seq_length=15"):
        validate_plan(ParallelPlan(mp=2, seq_parallel=True), _config(), 2, seq_length=15)


def test_several_problems_are_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        validate_plan(ParallelPlan(mp=3, pp=5, micro_batch_num=5), _config(), 2)
    message = str(info.value)
    assert "= 15" in message and "n_heads=64" in message and "n_layers=48" in message
