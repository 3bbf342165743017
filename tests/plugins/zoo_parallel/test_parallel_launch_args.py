"""The torchrun command line the launcher builds, and `zoo parallel plan` (no processes started)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from codellama_zoo.cli import cli
from codellama_zoo.errors import UsageError
from zoo_parallel.launcher import LaunchOptions, torchrun_args

CONFIGS = Path(__file__).resolve().parents[3] / "zoo" / "zoo_codellama" / "configs"


def _flags(args: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)


def test_several_machines_use_a_static_rendezvous_on_the_master() -> None:
    options = LaunchOptions(nproc=8, nnodes=2, node_rank=1, master_addr="10.0.0.1", master_port=29600, timeout_s=90)
    args = torchrun_args(options, ["cli", "train", "x.yaml"], "run-1")
    flags = _flags(args)
    assert flags["nnodes"] == "2" and flags["nproc-per-node"] == "8" and flags["node-rank"] == "1"
    assert flags["master-addr"] == "10.0.0.1" and flags["master-port"] == "29600"
    assert flags["rdzv-backend"] == "static" and "timeout=90" in flags["rdzv-conf"]
    assert flags["max-restarts"] == "0"  # a failure ends the job instead of restarting it
    assert flags["tee"] == "0"  # machine 1 prints nothing: only global rank 0 reaches a terminal
    assert args[-5:] == ["--module", "zoo_parallel.worker", "cli", "train", "x.yaml"]


def test_one_machine_tees_rank_zero_and_logs_every_rank() -> None:
    flags = _flags(torchrun_args(LaunchOptions(nproc=4), ["cli"], "r"))
    assert flags["redirects"] == "3" and flags["tee"] == "0:3" and flags["local-ranks-filter"] == "0"
    direct = _flags(torchrun_args(LaunchOptions(nproc=3, console="rank0-direct"), ["cli"], "r"))
    assert direct["redirects"] == "1:3,2:3" and direct["tee"] == "0"  # rank 0 keeps the terminal (streaming)


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        (LaunchOptions(nproc=0), "--nproc"),
        (LaunchOptions(nnodes=2, node_rank=2, master_port=1), "--node-rank"),
        (LaunchOptions(nnodes=2), "--master-port is required"),
    ],
)
def test_bad_launch_options_are_refused(options: LaunchOptions, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        options.check()


def test_zoo_parallel_plan_explains_a_layout_and_refuses_a_bad_one() -> None:
    config = str(CONFIGS / "finetune_codellama_34b_16p.yaml")
    runner = CliRunner()
    ok = runner.invoke(cli, ["parallel", "plan", config, "--nproc", "8", "--nnodes", "2",
                             "--set", "parallel_config.data_parallel=2", "--set", "parallel_config.model_parallel=8",
                             "--set", "parallel_config.pipeline_stage=1"])
    assert ok.exit_code == 0, ok.output
    assert "16 ranks" in ok.output and "8 of 64 heads" in ok.output and "1 of 8 kv heads" in ok.output
    bad = runner.invoke(cli, ["parallel", "plan", config, "--nproc", "8",
                              "--set", "parallel_config.data_parallel=1", "--set", "parallel_config.model_parallel=16",
                              "--set", "parallel_config.pipeline_stage=1"])
    assert bad.exit_code != 0
    assert "n_kv_heads=8 is not divisible by model_parallel=16" in bad.output
