"""Sharded checkpoints: DCP save/load across layouts, split for mp=N, merge to one file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from parallel_scenarios import build_model, tiny_config, train_tensor_parallel_and_save

from zoo_parallel.checkpoint import detect, merge_checkpoint, read_config, split_checkpoint
from zoo_parallel.local import run_local

pytestmark = pytest.mark.distributed


def _logits(weights_dir: Path) -> torch.Tensor:
    from zoo_torch.runtime import build_model as load

    model = load(None, weights_dir)
    tokens = torch.arange(24).reshape(2, 12) % model.config.vocab_size
    with torch.no_grad():
        return model(tokens)


def test_mp2_training_checkpoint_merges_into_a_single_process_model(tmp_path: Path) -> None:
    sharded = tmp_path / "sharded"
    results = run_local(train_tensor_parallel_and_save, 2, str(sharded), timeout=180)
    assert results[0]["reload_gap"] == 0.0  # written by one layout, read exactly by another
    assert detect(sharded) and read_config(sharded) == tiny_config()
    assert sorted(p.name for p in sharded.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]

    merged = merge_checkpoint(sharded, tmp_path / "merged", to="zoo")
    trained = results[0]["weights"]
    reference = build_model(tiny_config())
    reference.load_state_dict(trained)
    tokens = torch.arange(24).reshape(2, 12) % tiny_config().vocab_size
    with torch.no_grad():
        expected = reference(tokens)
    assert torch.equal(_logits(merged), expected)


def test_zoo_convert_split_then_merge_is_bit_exact(tmp_path: Path) -> None:
    from zoo_torch.checkpoints import load_state_dict, save_checkpoint

    config = tiny_config()
    model = build_model(config, seed=3)
    full = save_checkpoint({k: v.detach() for k, v in model.state_dict().items()}, config, tmp_path / "full", "zoo")
    from click.testing import CliRunner

    from codellama_zoo.cli import cli

    runner = CliRunner()
    split = runner.invoke(cli, ["convert", str(full), str(tmp_path / "mp2"), "--split", "mp=2", "--quiet"])
    assert split.exit_code == 0, split.output
    sharded = tmp_path / "mp2"
    sizes = [p.stat().st_size for p in sorted(sharded.glob("*.distcp"))]
    assert len(sizes) == 2 and min(sizes) > 0.25 * sum(sizes)  # each rank wrote its own half of the shards
    merge = runner.invoke(cli, ["convert", str(sharded), str(tmp_path / "merged"), "--merge", "--quiet"])
    assert merge.exit_code == 0, merge.output
    merged = tmp_path / "merged"
    original, _ = load_state_dict(full)
    back, _ = load_state_dict(merged)
    assert original.keys() == back.keys()
    assert all(torch.equal(original[k], back[k]) for k in original)
    assert torch.equal(_logits(merged), _logits(full))


def test_split_refuses_an_impossible_layout(tmp_path: Path) -> None:
    from codellama_zoo.errors import ConfigError
    from zoo_torch.checkpoints import save_checkpoint

    config = tiny_config()
    full = save_checkpoint(build_model(config).state_dict(), config, tmp_path / "full", "zoo")
    with pytest.raises(ConfigError, match="n_kv_heads=2 is not divisible by model_parallel=4"):
        split_checkpoint(full, tmp_path / "mp4", mp=4)
    assert not (tmp_path / "mp4").exists()
    split_checkpoint(full, tmp_path / "mp1", mp=1)  # one rank: every tensor whole in one file
    assert [p.name for p in (tmp_path / "mp1").glob("*.distcp")] == ["__0_0.distcp"]
    assert merge_checkpoint(tmp_path / "mp1", tmp_path / "back").is_dir()
