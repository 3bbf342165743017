"""``zoo train CONFIG --nproc 2`` end to end: same losses and weights as ``zoo train CONFIG`` on one process.

The shipped tiny config (Code Llama 34B's shape at toy width) on a small
random-token dataset, 3 optimizer steps, fp32. One process with the trainer
of ``zoo_torch`` is the reference; two processes run the layout under test.
Tolerances as in test_parallel_training: losses relative 1e-5, weights 1e-4.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.distributed
ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "zoo" / "zoo_codellama" / "configs" / "pretrain_codellama_tiny.yaml"


def _dataset(path: Path, count: int = 48, seq: int = 32) -> Path:
    from zoo_datasets.storage import DatasetWriter

    rng = np.random.default_rng(0)
    with DatasetWriter(path, ("numpy",), {"dataset": "random", "seq_length": seq}) as writer:
        for _ in range(count):
            writer.write({"input_ids": rng.integers(3, 32000, seq + 1).astype(np.int32)})
    return path


def _train(tmp: Path, name: str, data: Path, extra: list[str], steps: int = 3,
           expect_weights: bool = True) -> tuple[list[float], dict[str, torch.Tensor]]:
    out = tmp / name
    cmd = [sys.executable, "-m", "codellama_zoo.cli", "train", str(CONFIG), "--quiet",
           "--set", f"train_dataset.data_loader.dataset_dir={data}", "--set", f"output_dir={out}",
           "--set", f"runner_config.max_steps={steps}", "--set", "model_config.seq_length=32",
           "--set", "trainer.log_interval=1", "--set", "optimizer.eps=1e-6",
           "--set", "do_eval=true", "--set", f"eval_dataset.data_loader.dataset_dir={data}",
           "--set", "eval_dataset.data_loader.shuffle=false", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r] + [r["eval_loss"] for r in records if "eval_loss" in r]
    if not expect_weights:
        return losses, {}
    from zoo_torch.checkpoints import load_state_dict

    weights, _ = load_state_dict(out / "weights")
    return losses, weights


LAYOUTS = {
    "ddp (the zoo_torch trainer)": (["--set", "runner_config.batch_size=4"],
                                    ["--set", "runner_config.batch_size=2", "--set", "parallel_config.data_parallel=2",
                                     "--nproc", "2"]),
    "tensor+sequence": (["--set", "runner_config.batch_size=4"],
                        ["--set", "runner_config.batch_size=4", "--set", "parallel_config.model_parallel=2",
                         "--set", "parallel_config.use_seq_parallel=true", "--nproc", "2"]),
    "pipeline": (["--set", "runner_config.batch_size=4"],
                 ["--set", "runner_config.batch_size=2", "--set", "parallel_config.pipeline_stage=2",
                  "--set", "parallel_config.micro_batch_num=2", "--nproc", "2"]),
    "fsdp": (["--set", "runner_config.batch_size=4"],
             ["--set", "runner_config.batch_size=2", "--set", "parallel_config.data_parallel=2",
              "--set", "parallel_config.optimizer_shard=true", "--nproc", "2"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_zoo_train_nproc_matches_one_process(tmp_path: Path, layout: str) -> None:
    data = _dataset(tmp_path / "data")
    single_args, parallel_args = LAYOUTS[layout]
    ref_losses, ref_weights = _train(tmp_path, "single", data, single_args)
    losses, weights = _train(tmp_path, layout, data, parallel_args)
    assert len(losses) == len(ref_losses) == 5  # 3 training losses, eval loss before and after
    if layout.startswith("ddp"):  # the zoo_torch trainer logs rank 0's own half-batch loss under DDP
        losses, ref_losses = losses[3:], ref_losses[3:]
    assert losses == pytest.approx(ref_losses, rel=1e-5)
    assert ref_weights.keys() == weights.keys()
    gap = max(float((weights[k] - ref_weights[k]).abs().max()) for k in ref_weights)
    assert gap < 1e-4, gap


@pytest.mark.slow
def test_sharded_resume_is_bit_identical(tmp_path: Path) -> None:
    """4 steps straight == 2 steps, stop, resume from the sharded checkpoint, 2 more (tensor + sequence parallel)."""
    data = _dataset(tmp_path / "data")
    layout = ["--set", "runner_config.batch_size=4", "--set", "parallel_config.model_parallel=2",
              "--set", "parallel_config.use_seq_parallel=true", "--set", "runner_config.max_steps=4", "--nproc", "2"]
    _, straight = _train(tmp_path, "straight", data, layout, steps=4)
    _train(tmp_path, "resumed", data, [*layout, "--stop-after", "2"], steps=4, expect_weights=False)
    assert (tmp_path / "resumed" / "checkpoints" / "step_00000002" / ".metadata").is_file()
    _, resumed = _train(tmp_path, "resumed", data, [*layout, "--set", "resume_training=true"], steps=4)
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
