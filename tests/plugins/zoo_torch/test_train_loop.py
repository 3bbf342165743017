"""Training end to end on real source code: learning, exact resume, schedules, finetune, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from train_fixtures import EVAL_TREE, SEQ, TINY_PRETRAIN, prepare_stdlib, tiny_config, train_bpe

from codellama_zoo.errors import ConfigError, UsageError
from codellama_zoo.training import run_training
from zoo_datasets.prepare import prepare
from zoo_datasets.tokenizer import SentencePieceTokenizer
from zoo_torch.train_data import SampleArrays
from zoo_torch.trainer import build_model, train


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stdlib-data")
    model = train_bpe(EVAL_TREE.parent / "email", root)
    train_dir, eval_dir = prepare_stdlib(model, root)
    small = root / "small"  # one file: a few optimizer steps per epoch, to cross epochs quickly
    prepare("code", input=EVAL_TREE / "__init__.py", tokenizer=SentencePieceTokenizer(model), seq_length=SEQ,
            output=small, progress=False)
    return {"tokenizer": model, "train": train_dir, "eval": eval_dir, "small": small}


def _unigram_loss(train_dir: Path, eval_dir: Path, vocab: int) -> float:
    """Cross-entropy of the eval targets under the training set's token frequencies (add-one)."""
    cfg_like = type("D", (), {})
    counts = np.ones(vocab)
    for path in (train_dir, eval_dir):
        cfg_like.data_loader = type("L", (), {"dataset_dir": str(path), "type": "auto", "shuffle": False})
        cfg_like.input_columns = ("input_ids",)
        arrays = SampleArrays(cfg_like, SEQ, "x")
        if path == train_dir:
            counts += np.bincount(arrays.target_tokens(), minlength=vocab)
        else:
            targets = arrays.target_tokens()
    logp = np.log(counts / counts.sum())
    return float(-logp[targets].mean())


@pytest.mark.slow
def test_tiny_model_learns_real_code(data: dict[str, Path], tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "run", data["train"], data["eval"], "runner_config.max_steps=300")
    result = train(cfg, quiet=True)
    unigram = _unigram_loss(data["train"], data["eval"], 512)
    assert result.steps == result.total_steps == 300
    assert result.initial_eval_loss is not None and result.eval_loss is not None
    # held-out code (json/*.py; trained on email/*.py): far below the untrained model and the unigram baseline
    assert result.initial_eval_loss > 6.0  # ~ln(512) for random weights
    assert result.eval_loss < result.initial_eval_loss - 2.0
    assert result.eval_loss < unigram - 0.5, (result.eval_loss, unigram)
    assert result.final_loss is not None and result.first_loss is not None
    assert result.final_loss < result.first_loss - 2.0

    lines = [json.loads(line) for line in result.metrics_file.read_text().splitlines()]
    train_lines = [m for m in lines if "loss" in m]
    assert [m["step"] for m in train_lines] == list(range(10, 301, 10))
    assert all(m["tokens_per_s"] > 0 and m["grad_norm"] > 0 for m in train_lines)
    assert train_lines[-1]["tokens"] == 300 * 8 * SEQ
    assert train_lines[-1]["lr"] < train_lines[5]["lr"]  # cosine decay
    assert [m["step"] for m in lines if "eval_loss" in m] == [0, 300]

    # the exported weights are a zoo checkpoint that loads back into the same model
    from zoo_torch.checkpoints import load_state_dict

    assert (result.weights / "tokenizer.model").read_bytes() == data["tokenizer"].read_bytes()
    state, config = load_state_dict(result.weights)
    assert config.vocab_size == 512 and config.dim == 64
    saved = torch.load(result.checkpoint / "state.pt", weights_only=False)["model"]
    for name, tensor in state.items():
        assert torch.equal(tensor, saved[name]), name


def _state(path: Path) -> dict:
    return torch.load(path / "state.pt", weights_only=False)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_resume_is_bit_identical(data: dict[str, Path], tmp_path: Path, dtype: str) -> None:
    extra = ("runner_config.max_steps=14", "runner_config.batch_size=4", "runner_config.gradient_accumulation_steps=4",
             f"model_config.compute_dtype={dtype}", "callbacks=[{type: CheckpointMonitor, save_checkpoint_steps: 4}]")
    straight = train(tiny_config(tmp_path / "a", data["small"], None, *extra), quiet=True)
    half = train(tiny_config(tmp_path / "b", data["small"], None, *extra), quiet=True, stop_after=7)
    assert half.steps == 7 and half.weights is None and half.checkpoint.name == "step_00000007"
    resumed = train(tiny_config(tmp_path / "b", data["small"], None, *extra, "resume_training=true"), quiet=True)
    assert straight.steps == resumed.steps == 14
    plan_epochs = json.loads((straight.checkpoint / "trainer_state.json").read_text())["epoch"]
    assert plan_epochs >= 1  # the run crossed an epoch boundary (reshuffle) after the resume point
    a, b = _state(straight.checkpoint), _state(resumed.checkpoint)
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    for key, value in a["optimizer"]["state"].items():
        assert torch.equal(value["exp_avg"], b["optimizer"]["state"][key]["exp_avg"])
    assert a["schedule"] == b["schedule"]
    losses_a = {m["step"]: m["loss"] for m in map(json.loads, straight.metrics_file.read_text().splitlines())}
    losses_b = {m["step"]: m["loss"] for m in map(json.loads, resumed.metrics_file.read_text().splitlines())}
    assert sorted(losses_a) == [10, 14] and sorted(losses_b) == [7, 10, 14]  # the stop logs its step too
    assert all(losses_a[step] == losses_b[step] for step in losses_a)
    # checkpoints are complete folders; no temporary names are left around
    names = sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir())
    assert names == ["latest", "step_00000008", "step_00000012", "step_00000014"]  # keep_checkpoint_max 3


def test_total_steps_minus_one_is_the_dataset_size(data: dict[str, Path], tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "r", data["small"], None, "runner_config.max_steps=-1", "runner_config.epochs=2",
                      "runner_config.batch_size=8", "lr_schedule.lr_end=1e-4", "trainer.log_interval=1")
    samples = json.loads((data["small"] / "meta.json").read_text())["count"]
    result = train(cfg, quiet=True)
    assert result.total_steps == result.steps == 2 * (samples // 8)
    lrs = [m["lr"] for m in map(json.loads, result.metrics_file.read_text().splitlines())]
    total, warmup, peak = result.total_steps, int(result.total_steps * 0.03), cfg.lr_schedule.learning_rate
    progress = (total - 1 - warmup) / (total - warmup)  # the last step is one short of the cosine's end
    assert lrs[-1] == pytest.approx(1e-4 + (peak - 1e-4) * 0.5 * (1 + math.cos(math.pi * progress)))
    assert lrs[-1] < 1.1e-4


def test_finetune_starts_from_load_checkpoint(data: dict[str, Path], tmp_path: Path) -> None:
    base = train(tiny_config(tmp_path / "base", data["small"], None, "runner_config.max_steps=2"), quiet=True)
    cfg = tiny_config(tmp_path / "ft", data["small"], None, "run_mode=finetune", f"load_checkpoint={base.weights}",
                      "seed=123")
    model = build_model(cfg, torch.device("cpu"))
    saved = _state(base.checkpoint)["model"]
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    with pytest.raises(ConfigError, match="run_mode finetune needs load_checkpoint"):
        run_training(tiny_config(tmp_path / "x", data["small"], None, "run_mode=finetune"))


def test_prompt_masked_data_trains_only_on_labels(tmp_path: Path, data: dict[str, Path]) -> None:
    tok = SentencePieceTokenizer(data["tokenizer"])
    records = [{"instruction": f"Write function number {i}.", "input": "", "output": f"def f{i}():\n    return {i}"}
               for i in range(16)]
    (tmp_path / "a.json").write_text(json.dumps(records))
    # the Alpaca prompt is long in a 512-piece vocabulary: 256 tokens leave room for the answers
    meta = prepare("code-alpaca", input=tmp_path / "a.json", tokenizer=tok, seq_length=256, output=tmp_path / "ds",
                   options={"template": "inst"}, progress=False)
    assert meta["counts"]["fully_masked"] == 0 and meta["counts"]["truncated"] == 0
    cfg = tiny_config(tmp_path / "r", tmp_path / "ds", None, "runner_config.max_steps=2", "model_config.seq_length=256",
                      "train_dataset.input_columns=[input_ids, labels]", "runner_config.batch_size=4")
    arrays = SampleArrays(cfg.train_dataset, 256, "train_dataset")
    tokens, targets = arrays.batch(np.arange(4))
    assert tokens.shape == targets.shape == (4, 256)
    assert (targets == -100).sum() > (targets != -100).sum() > 0
    assert train(cfg, quiet=True).steps == 2


def test_config_errors_are_clear(data: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"samples hold 65 tokens .* model_config.seq_length is 32"):
        train(tiny_config(tmp_path / "r", data["small"], None, "model_config.seq_length=32"), quiet=True)
    with pytest.raises(ConfigError, match="dataset_dir is empty"):
        train(tiny_config(tmp_path / "r", "", None), quiet=True)
    with pytest.raises(ConfigError, match=r"fewer than one global batch of 4096"):
        train(tiny_config(tmp_path / "r", data["small"], None, "runner_config.batch_size=4096"), quiet=True)
    with pytest.raises(UsageError, match="resume_training is true but .* holds no checkpoint"):
        train(tiny_config(tmp_path / "new", data["small"], None, "resume_training=true"), quiet=True)
    with pytest.raises(ConfigError, match="input_columns asks for \\['labels'\\]"):
        train(tiny_config(tmp_path / "r", data["small"], None, "train_dataset.input_columns=[input_ids, labels]"))


def test_zoo_train_cli(data: dict[str, Path], tmp_path: Path) -> None:
    from codellama_zoo.cli import cli

    args = ["train", str(TINY_PRETRAIN), "--set", f"output_dir={tmp_path / 'o'}",
            "--set", f"train_dataset.data_loader.dataset_dir={data['small']}", "--set", "model_config.vocab_size=512",
            "--set", "runner_config.max_steps=3", "--quiet"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "trained 3/3 steps" in result.output and "weights" in result.output
    bad = CliRunner().invoke(cli, [*args, "--set", "optimizer.beta3=1"])
    assert bad.exit_code == 2
    assert "key 'optimizer.beta3': unknown key" in bad.output
    predict = TINY_PRETRAIN.parent / "predict_codellama_34b.yaml"
    refused = CliRunner().invoke(cli, ["train", str(predict)])
    assert refused.exit_code == 2 and "run_mode 'predict' is not a training mode" in refused.output


def test_mindrecord_and_numpy_train_identically(data: dict[str, Path], tmp_path: Path) -> None:
    from zoo_datasets.storage import mindspore_available

    if not mindspore_available():
        pytest.skip("MindSpore is not installed")
    tok = SentencePieceTokenizer(data["tokenizer"])
    prepare("code", input=EVAL_TREE / "__init__.py", tokenizer=tok, seq_length=SEQ, output=tmp_path / "mr",
            formats=("mindrecord",), progress=False)
    extra = ("runner_config.max_steps=3", "trainer.log_interval=1")
    from_mr = train(tiny_config(tmp_path / "a", tmp_path / "mr", None, *extra,
                                "train_dataset.data_loader.type=MindDataset"), quiet=True)
    from_np = train(tiny_config(tmp_path / "b", data["small"], None, *extra), quiet=True)
    assert from_mr.first_loss == from_np.first_loss and from_mr.final_loss == from_np.final_loss


def test_gradient_accumulation_matches_one_big_batch(data: dict[str, Path], tmp_path: Path) -> None:
    big = train(tiny_config(tmp_path / "a", data["small"], None, "runner_config.max_steps=1",
                            "runner_config.batch_size=8"), quiet=True)
    accumulated = train(tiny_config(tmp_path / "b", data["small"], None, "runner_config.max_steps=1",
                                    "runner_config.batch_size=2", "runner_config.gradient_accumulation_steps=4"),
                        quiet=True)
    assert big.first_loss == pytest.approx(accumulated.first_loss, rel=1e-6)
    # Adam's first update is ~sign(gradient), which amplifies rounding on near-zero entries:
    # compare the first moments instead, (1 - beta1) x the (clipped) gradient.
    a, b = _state(big.checkpoint)["optimizer"]["state"], _state(accumulated.checkpoint)["optimizer"]["state"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key]["exp_avg"], b[key]["exp_avg"], rtol=1e-4, atol=1e-9)
