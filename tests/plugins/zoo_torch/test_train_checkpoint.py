"""Training checkpoints: atomic writes, pruning, resolution, and Ctrl-C stopping cleanly."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from codellama_zoo.errors import UsageError
from zoo_torch import train_checkpoint, trainer


def test_save_is_atomic_and_prunes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpts = tmp_path / "checkpoints"
    for step in (1, 2, 3):
        train_checkpoint.save(ckpts, step, {"step": step}, {"step": step}, keep=2)
    assert sorted(p.name for p in ckpts.iterdir()) == ["latest", "step_00000002", "step_00000003"]
    assert train_checkpoint.latest(ckpts) == ckpts / "step_00000003"

    def broken_save(obj: object, path: Path) -> None:
        Path(path).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        train_checkpoint.save(ckpts, 4, {"step": 4}, {"step": 4}, keep=2)
    # the failed write left no folder behind, and `latest` still names a complete checkpoint
    assert sorted(p.name for p in ckpts.iterdir()) == ["latest", "step_00000002", "step_00000003"]
    assert train_checkpoint.latest(ckpts) == ckpts / "step_00000003"


def test_resolve(tmp_path: Path) -> None:
    assert train_checkpoint.resolve(False, tmp_path) is None
    with pytest.raises(UsageError, match="holds no checkpoint"):
        train_checkpoint.resolve(True, tmp_path)
    saved = train_checkpoint.save(tmp_path / "checkpoints", 5, {"step": 5}, {}, keep=3)
    assert train_checkpoint.resolve(True, tmp_path) == saved
    assert train_checkpoint.resolve(str(saved), tmp_path) == saved
    assert train_checkpoint.resolve(str(tmp_path / "checkpoints"), tmp_path) == saved
    with pytest.raises(UsageError, match="no state.pt there"):
        train_checkpoint.resolve(str(tmp_path / "nowhere"), tmp_path)


def test_ctrl_c_finishes_the_step_and_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, llama2_tokenizer_model: Path
) -> None:
    from train_fixtures import EVAL_TREE, SEQ, tiny_config

    from zoo_datasets.prepare import prepare
    from zoo_datasets.tokenizer import SentencePieceTokenizer

    tok = SentencePieceTokenizer(llama2_tokenizer_model)
    prepare("code", input=EVAL_TREE / "scanner.py", tokenizer=tok, seq_length=SEQ,
            output=tmp_path / "d", progress=False)
    real_step = trainer.train_step
    calls = []

    def step_then_interrupt(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGINT)  # as if the user pressed Ctrl-C during step 2
        return real_step(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_step", step_then_interrupt)
    cfg = tiny_config(tmp_path / "o", tmp_path / "d", None, "model_config.vocab_size=32000",
                      "runner_config.max_steps=50", "runner_config.batch_size=2")
    handler_before = signal.getsignal(signal.SIGINT)
    result = trainer.train(cfg, quiet=True)
    assert result.steps == 2 and result.weights is None
    assert result.checkpoint == tmp_path / "o" / "checkpoints" / "step_00000002"
    assert signal.getsignal(signal.SIGINT) is handler_before  # the handler was put back
