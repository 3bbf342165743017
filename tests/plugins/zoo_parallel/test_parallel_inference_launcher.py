"""Tensor-parallel inference, the torchrun launcher's failure handling, and the CLI wiring."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from parallel_scenarios import build_model, tensor_parallel_generation, tiny_config

from zoo_parallel.local import run_local

pytestmark = pytest.mark.distributed
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def test_tensor_parallel_logits_and_greedy_tokens_match_one_process(tmp_path: Path) -> None:
    from zoo_torch.checkpoints import save_checkpoint

    config = tiny_config()
    weights = save_checkpoint(build_model(config, seed=5).state_dict(), config, tmp_path / "w", "zoo")
    results = run_local(tensor_parallel_generation, 2, str(weights), timeout=180)
    for result in results:
        assert result["local_heads"] == config.n_heads // 2  # really sharded
        assert result["max_logit_gap"] < 1e-4  # fp32; measured ~1e-6
        assert result["tp_tokens"] == result["ref_tokens"]


def test_a_worker_that_raises_stops_the_job_fast_with_its_rank_and_error(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from zoo_parallel.launcher import LaunchError, LaunchOptions, launch\n"
        "try:\n"
        f"    launch(['call', 'parallel_scenarios:fail_on_rank', {json.dumps(json.dumps({'rank_to_fail': 1, 'message': 'boom 42'}))}],\n"
        f"           LaunchOptions(nproc=2, log_dir={str(tmp_path)!r}, timeout_s=60))\n"
        "except LaunchError as exc:\n"
        "    print(exc, file=sys.stderr)\n"
        "    sys.exit(3)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    elapsed = time.monotonic() - start
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "worker rank 1 of 2 failed: ValueError: boom 42" in proc.stderr
    assert elapsed < 60  # start-up of two torch processes included; the failure itself is noticed in ~0.1 s
    assert list(tmp_path.glob("*/attempt_0/1/stderr.log"))  # per-rank logs were written


def test_every_worker_joins_the_group_and_loads_the_plugins(tmp_path: Path) -> None:
    from zoo_parallel.launcher import LaunchOptions, launch

    env = {"PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    saved = os.environ.get("PYTHONPATH")
    try:
        logs = launch(["call", "parallel_scenarios:report_plugins", json.dumps({"out_dir": str(tmp_path)})],
                      LaunchOptions(nproc=2, log_dir=str(tmp_path / "logs"), timeout_s=120), env=env)
    finally:
        assert os.environ.get("PYTHONPATH") == saved  # the launcher restores its environment
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for rank, report in enumerate(reports):
        assert report["rank"] == rank and report["world"] == 2 and report["backend"] == "gloo"
        assert "zoo_parallel.plugin" in report["plugins"] and "zoo_torch.plugin" in report["plugins"]
        assert "torch/auto" in report["strategies"] and "torch/pipeline" in report["strategies"]
    assert logs is not None and (logs / "attempt_0" / "1" / "stderr.log").is_file()


def test_zoo_train_refuses_a_bad_layout_before_starting_workers(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text(
        "model_config:\n  preset: codellama-34b\n  seq_length: 64\n"
        "parallel_config:\n  data_parallel: 1\n  model_parallel: 3\n  pipeline_stage: 1\n"
    )
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "codellama_zoo.cli", "train", str(config), "--nproc", "2"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode != 0
    assert "model_parallel=3" in proc.stderr and "2 process" in proc.stderr and "n_heads=64" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - start < 60


def test_worker_command_lines_rebuild_every_option() -> None:
    from codellama_zoo.cli import cli
    from zoo_parallel.commands import rebuild_args

    cli.list_commands(None)  # load plugin commands (and the --nproc options)
    train = cli.commands["train"]
    args = rebuild_args(train, {"config": Path("c.yaml"), "overrides": ("a=1", "b.c=x"), "run_mode": "finetune",
                                "stop_after": None, "quiet": True, "nproc": 4})
    assert args == ["--set", "a=1", "--set", "b.c=x", "--run-mode", "finetune", "--quiet", "--", "c.yaml"]
    assert any(p.name == "nproc" for p in train.params)
    if "run" in cli.commands:
        assert any(p.name == "nproc" for p in cli.commands["run"].params)


@pytest.mark.slow
def test_zoo_run_nproc_prints_the_single_process_text_once(tmp_path: Path, llama2_tokenizer_model: Path) -> None:
    import shutil

    import attrs

    from codellama_zoo.registry import get_registry
    from zoo_torch.checkpoints import save_checkpoint

    config = attrs.evolve(get_registry().model("codellama-7b").config, dim=64, n_layers=2, n_heads=4, n_kv_heads=2,
                          multiple_of=32)
    weights = save_checkpoint(build_model(config, seed=11).state_dict(), config, tmp_path / "w", "zoo")
    shutil.copyfile(llama2_tokenizer_model, weights / "tokenizer.model")
    base = [sys.executable, "-m", "codellama_zoo.cli", "run", "--weights", str(weights), "def fibonacci(n):",
            "--max-new-tokens", "12", "--device", "cpu", "-q"]
    single = subprocess.run(base, capture_output=True, text=True, timeout=200, cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-2000:]
    tp = subprocess.run([*base, "--nproc", "2", "--log-dir", str(tmp_path / "logs")], capture_output=True, text=True,
                        timeout=300, cwd=tmp_path)
    assert tp.returncode == 0, tp.stderr[-2000:]
    assert single.stdout.strip() and tp.stdout == single.stdout  # same greedy text, printed by rank 0 only
    rank1 = next((tmp_path / "logs").glob("*/attempt_0/1/stdout.log"))
    assert rank1.read_text() == single.stdout  # rank 1 generated the same text into its own log
