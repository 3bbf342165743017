"""`zoo train` with backend: mindspore: MindRecord data, msrun data parallel, parallel_config checks."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mindspore_testing import tiny  # sets GLOG_v before MindSpore is imported

pytest.importorskip("mindspore")


from codellama_zoo.config import structure  # noqa: E402
from codellama_zoo.errors import CapabilityError, ConfigError  # noqa: E402
from codellama_zoo.training import ParallelConfig, TrainConfig  # noqa: E402

pytestmark = pytest.mark.mindspore
SEQ = 16
VOCAB = 64
GLOBAL_BATCH = 8
STEPS = 3


def write_dataset(folder: Path, count: int = 32, seed: int = 0) -> Path:
    """A MindRecord dataset through the datasets plugin's writer: learnable (a repeated pattern) samples."""
    from zoo_datasets.storage import DatasetWriter

    rng = np.random.default_rng(seed)
    with DatasetWriter(folder, ("mindrecord",), {"dataset": "synthetic", "seq_length": SEQ}) as writer:
        for _ in range(count):
            start = int(rng.integers(3, VOCAB - SEQ - 1))
            writer.write({"input_ids": np.arange(start, start + SEQ + 1, dtype=np.int32)})
    return folder


def train_config(data: Path, output: Path, data_parallel: int = 1, **extra: Any) -> TrainConfig:
    raw: dict[str, Any] = {
        "output_dir": str(output),
        "backend": "mindspore",
        "seed": 7,
        "runner_config": {"batch_size": GLOBAL_BATCH // data_parallel, "max_steps": STEPS},
        "lr_schedule": {"learning_rate": 1e-2, "warmup_steps": 1},
        "train_dataset": {"data_loader": {"type": "MindDataset", "dataset_dir": str(data)}},
        "parallel_config": {"data_parallel": data_parallel},
        "context": {"device_target": "CPU"},
        "trainer": {"log_interval": 1},
        "model_config": {
            "preset": "codellama-34b", "seq_length": SEQ, "hidden_size": 32, "num_layers": 2, "num_heads": 4,
            "n_kv_heads": 2, "multiple_of": 16, "vocab_size": VOCAB, "compute_dtype": "float32",
        },
    }
    for key, value in extra.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return structure(raw, TrainConfig, source="test")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("mr") / "data")


@pytest.fixture(scope="module")
def single_run(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from codellama_zoo import plugins
    from zoo_mindspore.training import train

    plugins.set_plugin_manager(None)
    evaluation = {"do_eval": True, "eval_dataset": {"data_loader": {"type": "MindDataset", "dataset_dir": str(dataset)}}}
    return train(train_config(dataset, tmp_path_factory.mktemp("single"), **evaluation), quiet=True)


def metrics(output: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]


def losses(output: Path) -> list[float]:
    return [r["loss"] for r in metrics(output) if "loss" in r]


def test_single_process_trains_from_mindrecord(single_run: Any) -> None:
    output = Path(single_run.output_dir)
    records = [r for r in metrics(output) if "loss" in r]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert single_run.steps == STEPS and single_run.tokens == STEPS * GLOBAL_BATCH * SEQ
    assert abs(records[0]["loss"] - np.log(VOCAB)) < 0.3  # starts near uniform
    assert records[-1]["loss"] < records[0]["loss"]
    assert all(np.isfinite(r["grad_norm"]) and r["grad_norm"] > 0 for r in records)
    assert (output / "weights" / "model.ckpt").is_file() and (output / "weights" / "params.json").is_file()
    evaluations = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines() if "eval_loss" in line]
    assert evaluations and np.isfinite(single_run.eval_loss) and evaluations[-1]["eval_loss"] == single_run.eval_loss


def test_trained_weights_load_in_the_backend(single_run: Any) -> None:
    from zoo_mindspore.backend import load_model
    from zoo_mindspore.checkpoints import read_config

    weights = Path(single_run.weights)
    config = read_config(weights)
    assert config is not None and config.dim == 32 and config.kv_heads == 2
    lm = load_model(config, weights, device="cpu", dtype="fp32")
    lm.start(1, 8)
    assert np.isfinite(lm.prefill(np.array([[5, 6, 7]]), np.ones((1, 3)))).all()


def test_resume_continues_from_the_checkpoint(dataset: Path, single_run: Any, tmp_path: Path) -> None:
    from zoo_mindspore.training import train

    cfg = train_config(dataset, tmp_path / "resumed")
    first = train(cfg, stop_after=2, quiet=True)
    assert first.steps == 2 and first.weights is None
    resumed = train(train_config(dataset, tmp_path / "resumed", resume_training=True), quiet=True)
    assert resumed.steps == STEPS
    assert resumed.final_loss == pytest.approx(single_run.final_loss, abs=1e-5)
    assert resumed.weights_digest == single_run.weights_digest  # weights, moments and lr step all restored


def test_zoo_train_command_runs_the_mindspore_backend(dataset: Path, tmp_path: Path) -> None:
    import yaml
    from click.testing import CliRunner

    from codellama_zoo.cli import cli

    cfg = train_config(dataset, tmp_path / "cli")
    import attrs

    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(attrs.asdict(cfg)))))
    result = CliRunner().invoke(cli, ["train", str(path), "--set", "runner_config.max_steps=1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "on MindSpore" in result.output and "trained 1/1 steps" in result.output


def test_model_and_pipeline_parallel_are_refused_on_cpu(dataset: Path, tmp_path: Path) -> None:
    from zoo_mindspore.training import train

    cfg = train_config(dataset, tmp_path, parallel_config={"model_parallel": 2})
    with pytest.raises(CapabilityError, match="needs MindSpore's semi-auto parallel.*Ascend or GPU.*not on cpu"):
        train(cfg, quiet=True)
    cfg = train_config(dataset, tmp_path, parallel_config={"pipeline_stage": 2, "micro_batch_num": 2})
    with pytest.raises(CapabilityError, match="Ascend or GPU"):
        train(cfg, quiet=True)


def test_parallel_layouts_are_validated_and_mapped_for_ascend() -> None:
    from zoo_mindspore import parallel

    config = tiny("34b", n_layers=4)  # 8 heads, 1 kv head
    layout = ParallelConfig(data_parallel=2, model_parallel=1, pipeline_stage=2, micro_batch_num=4)
    plan = parallel.validate(layout, config, "ascend", device_count=4, batch_size=4)
    settings = parallel.auto_parallel_context(plan, {"parallel_mode": 1, "strategy_ckpt_save_file": "s.ckpt"})
    assert settings["parallel_mode"] == "semi_auto_parallel" and settings["pipeline_stages"] == 2
    assert settings["device_num"] == 4 and settings["strategy_ckpt_save_file"] == "s.ckpt"
    with pytest.raises(ConfigError, match="= 4 devices, but 8 are in use"):
        parallel.validate(layout, config, "ascend", device_count=8, batch_size=4)
    mp2 = attrs_evolve(layout, model_parallel=2, pipeline_stage=1)
    with pytest.raises(ConfigError, match="model_parallel=2 does not divide n_kv_heads=1"):
        parallel.validate(mp2, config, "ascend")
    pp3 = attrs_evolve(layout, pipeline_stage=3, micro_batch_num=3)
    with pytest.raises(ConfigError, match="pipeline_stage=3 does not divide n_layers=4"):
        parallel.validate(pp3, config, "ascend")
    wide = tiny("7b", n_layers=4)  # 4 heads: model_parallel 2 is a valid Megatron split
    mp_plan = parallel.validate(attrs_evolve(layout, model_parallel=2, pipeline_stage=1), wide, "ascend")
    assert parallel.shard_strategies(mp_plan) == {"column": ((2, 1), (2, 1)), "row": ((2, 2), (1, 2))}


def test_semi_auto_plan_attaches_megatron_shards_and_stages() -> None:
    from zoo_mindspore import parallel
    from zoo_mindspore.model import Transformer

    model = Transformer(tiny("7b", n_layers=4))
    layout = ParallelConfig(data_parallel=1, model_parallel=2, pipeline_stage=2, micro_batch_num=2)
    parallel.apply(model, parallel.validate(layout, model.config, "ascend", device_count=4, batch_size=2))
    first, last = model.layers[0], model.layers[3]
    assert first.attention.wq.matmul.in_strategy == ((1, 1), (2, 1))  # column parallel
    assert first.feed_forward.w2.matmul.in_strategy == ((1, 2), (1, 2))  # row parallel
    assert model.output.matmul.in_strategy == ((1, 1), (2, 1))
    assert (first.pipeline_stage, last.pipeline_stage, model.output.pipeline_stage) == (0, 1, 1)


def attrs_evolve(value: Any, **changes: Any) -> Any:
    import attrs

    return attrs.evolve(value, **changes)


def test_msrun_failure_is_a_clear_error(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from zoo_mindspore import launcher

    fake = tmp_path / "msrun"
    fake.write_text("#!/bin/sh\necho 'worker 1 exited: ImportError' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(launcher, "msrun_executable", lambda: str(fake))
    cfg = train_config(dataset, tmp_path / "out", data_parallel=2)
    from zoo_mindspore.training import train

    with pytest.raises(launcher.MsrunError, match="msrun exited with status 3"):
        train(cfg, quiet=True)


def test_msrun_timeout_stops_the_job(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from zoo_mindspore import launcher

    fake = tmp_path / "msrun"
    fake.write_text("#!/bin/sh\nsleep 30\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(launcher, "msrun_executable", lambda: str(fake))
    monkeypatch.setenv(launcher.TIMEOUT_ENV, "1")
    with pytest.raises(launcher.MsrunError, match="did not finish within 1 s"):
        launcher.launch(train_config(dataset, tmp_path / "out", data_parallel=2), 2, stop_after=None, quiet=True)


@pytest.mark.slow
@pytest.mark.distributed
def test_two_worker_msrun_data_parallel_matches_one_process(
    dataset: Path, single_run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zoo_mindspore import checkpoints, launcher
    from zoo_mindspore.training import train

    os.environ.setdefault("GLOG_v", "3")
    monkeypatch.setenv(launcher.TIMEOUT_ENV, "300")  # a hung scheduler must not stall CI
    result = train(train_config(dataset, tmp_path / "dp2", data_parallel=2), quiet=True)
    assert result.world_size == 2 and result.steps == STEPS
    ranks = [json.loads((tmp_path / "dp2" / "ranks" / f"rank_{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["digest"] == ranks[1]["digest"], "the two data-parallel replicas drifted apart"
    np.testing.assert_allclose(losses(tmp_path / "dp2"), losses(Path(single_run.output_dir)), rtol=0, atol=1e-5)
    dp_weights = checkpoints.read_ckpt_numpy(Path(result.weights))
    one_weights = checkpoints.read_ckpt_numpy(Path(single_run.weights))
    for name, array in one_weights.items():
        np.testing.assert_allclose(dp_weights[name], array, rtol=0, atol=1e-5, err_msg=name)
