"""The shipped training configs: the seed's values, validation, and the tiny ones actually run."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import pytest
from click.testing import CliRunner

from codellama_zoo.errors import ConfigError
from codellama_zoo.registry import get_registry
from codellama_zoo.training import TrainConfig, load_train_config

CONFIGS = Path(__file__).resolve().parents[3] / "zoo" / "zoo_codellama" / "configs"
SEED_34B = ["pretrain_codellama_34b", "finetune_codellama_34b_16p", "finetune_codellama_34b_32p",
            "predict_codellama_34b"]


def _load(name: str, *overrides: str) -> TrainConfig:
    return load_train_config(CONFIGS / f"{name}.yaml", overrides)


@pytest.mark.parametrize("name", [*SEED_34B, "pretrain_codellama_tiny", "finetune_codellama_tiny"])
def test_every_shipped_config_validates(name: str) -> None:
    cfg = _load(name)
    assert cfg.model_config.llama_config().n_layers > 0


@pytest.mark.parametrize("name", SEED_34B)
def test_34b_architecture_is_the_registered_preset(name: str) -> None:
    cfg = _load(name)
    assert cfg.model_config.llama_config() == get_registry().model("codellama-34b").config
    mc = cfg.model_config
    assert (mc.seq_length, mc.hidden_size, mc.num_layers, mc.num_heads, mc.n_kv_heads, mc.vocab_size) == (
        4096, 8192, 48, 64, 8, 32000)
    assert (mc.theta, mc.rms_norm_eps, mc.compute_dtype, mc.param_init_type) == (1e6, 1e-5, "float16", "float16")


@pytest.mark.parametrize(
    ("name", "layout", "columns", "sink_size", "memory", "jit"),
    [
        ("pretrain_codellama_34b", (1, 8, 2, 128, True, False), ("input_ids",), 1, "55GB", "O1"),
        ("finetune_codellama_34b_16p", (1, 8, 2, 128, True, False), ("input_ids", "labels"), 4, "55GB", "O2"),
        ("finetune_codellama_34b_32p", (2, 4, 4, 128, True, False), ("input_ids", "labels"), 4, "56GB", "O1"),
        ("predict_codellama_34b", (1, 4, 1, 1, False, True), ("input_ids",), 1, "57GB", None),
    ],
)
def test_seed_values(name: str, layout: tuple, columns: tuple, sink_size: int, memory: str, jit: str | None) -> None:
    cfg = _load(name)
    pc = cfg.parallel_config
    assert (pc.data_parallel, pc.model_parallel, pc.pipeline_stage, pc.micro_batch_num, pc.use_seq_parallel,
            pc.vocab_emb_dp) == layout
    assert pc.gradient_aggregation_group == 4
    assert cfg.train_dataset.input_columns == columns
    assert (cfg.runner_config.epochs, cfg.runner_config.batch_size, cfg.runner_config.sink_size) == (2, 1, sink_size)
    assert cfg.context.max_device_memory == memory and cfg.context.device_target == "Ascend"
    assert cfg.context.jit_config.get("jit_level") == jit
    assert cfg.seed == 0 and cfg.load_checkpoint == "" and cfg.resume_training is False
    if name != "predict_codellama_34b":
        opt, lr = cfg.optimizer, cfg.lr_schedule
        assert (opt.type, opt.beta1, opt.beta2, opt.eps) == ("FP32StateAdamWeightDecay", 0.9, 0.95, 1e-8)
        assert (lr.type, lr.learning_rate, lr.lr_end, lr.warmup_ratio, lr.total_steps) == (
            "CosineWithWarmUpLR", 1e-5, 0.0, 0.03, -1)
        assert cfg.train_dataset.data_loader.type == "MindDataset" and cfg.train_dataset.data_loader.shuffle
        checkpoint = cfg.checkpoint_callback
        assert checkpoint is not None and checkpoint.save_checkpoint_steps == 1000
        assert checkpoint.prefix == "codellama_34b"
    else:
        assert cfg.run_mode == "predict" and cfg.model_config.use_past
        assert (cfg.model_config.block_size, cfg.model_config.num_blocks) == (16, 1024)


def test_errors_name_the_file_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pretrain_codellama_34b\.yaml: key 'optimizer\.beta_1': unknown key; "
                                          r"did you mean 'beta1'\?"):
        _load("pretrain_codellama_34b", "optimizer.beta_1=0.9")
    with pytest.raises(ConfigError, match=r"key 'lr_schedule\.type': got 'Cosine'; allowed values"):
        _load("pretrain_codellama_34b", "lr_schedule.type=Cosine")
    with pytest.raises(ConfigError, match=r"key 'parallel_config': model_parallel must be > 0, got 0"):
        _load("pretrain_codellama_34b", "parallel_config.model_parallel=0")
    with pytest.raises(ConfigError, match="warmup_ratio must be in"):
        _load("pretrain_codellama_34b", "lr_schedule.warmup_ratio=3")
    with pytest.raises(ConfigError, match="input_columns"):
        _load("pretrain_codellama_34b", "train_dataset.input_columns=[tokens]")
    bare = tmp_path / "bare.yaml"
    bare.write_text("model_config:\n  hidden_size: 64\n")
    with pytest.raises(ConfigError, match="no preset and no num_layers, num_heads, vocab_size"):
        load_train_config(bare).model_config.llama_config()


def test_tiny_configs_run_here(tmp_path: Path, llama2_tokenizer_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pretrain_codellama_tiny then finetune_codellama_tiny, as their comments say, with few steps."""
    from codellama_zoo.cli import cli

    alpaca = llama2_tokenizer_model.parents[1] / "code-alpaca" / "code_alpaca_2k.json"
    if not alpaca.exists():
        pytest.skip("shared code-alpaca asset not found")
    monkeypatch.chdir(tmp_path)
    head = tmp_path / "alpaca_head.json"
    head.write_text(json.dumps(json.loads(alpaca.read_text())[:64]))
    stdlib_json = Path(sysconfig.get_paths()["stdlib"]) / "json"
    runner = CliRunner()
    for args in (
        ["data", "prepare", "code", "--input", str(stdlib_json), "--tokenizer", str(llama2_tokenizer_model),
         "--seq-length", "64", "--output", "data/stdlib-64", "--quiet"],
        ["data", "prepare", "code-alpaca", "--input", str(head), "--tokenizer", str(llama2_tokenizer_model),
         "--seq-length", "128", "--output", "data/alpaca-128", "--quiet"],
        ["train", str(CONFIGS / "pretrain_codellama_tiny.yaml"), "--set", "runner_config.max_steps=4", "--quiet"],
        ["train", str(CONFIGS / "finetune_codellama_tiny.yaml"), "--run-mode", "finetune",
         "--set", "runner_config.max_steps=4", "--set", "eval_step_interval=2", "--set", "trainer.eval_batches=2",
         "--quiet"],
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, (args, result.output)
    weights = tmp_path / "output" / "pretrain_tiny" / "weights"
    assert (weights / "config.json").is_file() and (weights / "tokenizer.model").is_file()
    generated = runner.invoke(cli, ["run", "--weights", str(weights), "--max-new-tokens", "4", "def"])
    assert generated.exit_code == 0, generated.output  # the trained folder is a runnable checkpoint
    metrics = [json.loads(line) for line in (tmp_path / "output" / "finetune_tiny" / "metrics.jsonl").open()]
    assert [m["step"] for m in metrics if "eval_loss" in m] == [0, 2, 4]
    assert "trained 4/4 steps" in result.output
