"""Two CPU ranks (gloo) train like one process with the same global batch; rank 0 alone writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.distributed


def _worker(rank: int, world: int, init_file: str, cfg_args: tuple[str, ...]) -> None:
    import torch.distributed as dist
    from train_fixtures import tiny_config

    from zoo_torch.trainer import train

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        output, data, *extra = cfg_args
        train(tiny_config(Path(output), Path(data), None, *extra), quiet=True)
    finally:
        dist.destroy_process_group()


def test_two_ranks_equal_one_process(tmp_path: Path, llama2_tokenizer_model: Path) -> None:
    import torch.multiprocessing as mp
    from train_fixtures import EVAL_TREE, SEQ, tiny_config

    from zoo_datasets.prepare import prepare
    from zoo_datasets.tokenizer import SentencePieceTokenizer
    from zoo_torch.trainer import train

    prepare("code", input=EVAL_TREE / "decoder.py", tokenizer=SentencePieceTokenizer(llama2_tokenizer_model),
            seq_length=SEQ, output=tmp_path / "d", progress=False)
    common = ("model_config.vocab_size=32000", "runner_config.max_steps=3", "trainer.log_interval=1")
    single = train(tiny_config(tmp_path / "one", tmp_path / "d", None, *common, "runner_config.batch_size=4"),
                   quiet=True)
    args = (str(tmp_path / "two"), str(tmp_path / "d"), *common, "runner_config.batch_size=2")
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), args), nprocs=2, join=True)

    one = [json.loads(line) for line in single.metrics_file.read_text().splitlines()]
    two = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in two] == [1, 2, 3]  # rank 0 alone logs
    assert [m["tokens"] for m in two] == [m["tokens"] for m in one]
    assert two[0]["loss"] == pytest.approx(one[0]["loss"], rel=1e-5)  # same samples, same start
    for a, b in zip(one[1:], two[1:], strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-3)
    a = torch.load(single.checkpoint / "state.pt", weights_only=False)["optimizer"]["state"]
    b = torch.load(tmp_path / "two" / "checkpoints" / "step_00000003" / "state.pt", weights_only=False)
    for key in a:
        torch.testing.assert_close(a[key]["exp_avg"], b["optimizer"]["state"][key]["exp_avg"], rtol=1e-3, atol=1e-7)
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir()) == ["latest", "step_00000003"]
