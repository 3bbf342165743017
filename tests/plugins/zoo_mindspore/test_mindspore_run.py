"""`zoo run --backend mindspore` end to end: same text as the PyTorch backend, from HF and MindSpore weights."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from mindspore_testing import hf_model, shared_asset, tiny  # sets GLOG_v before MindSpore is imported

pytest.importorskip("mindspore")
pytest.importorskip("torch")
pytest.importorskip("transformers")

from codellama_zoo.cli import cli  # noqa: E402

pytestmark = pytest.mark.mindspore
PROMPTS = ["def fibonacci(n):", "import os\n\nclass Config:\n"]


def zoo(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from codellama_zoo import plugins

    plugins.set_plugin_manager(None)
    tokenizer = shared_asset("llama2-tokenizer/tokenizer.model")
    root = tmp_path_factory.mktemp("run")
    config = tiny("34b", n_layers=2, vocab_size=32000)
    hf = hf_model(config, seed=11, std=0.3)  # spread logits: greedy picks are never near-ties
    hf.save_pretrained(root / "hf")
    shutil.copy(tokenizer, root / "hf" / "tokenizer.model")
    converted = zoo("convert", str(root / "hf"), str(root / "ms"), "--to", "mindspore")
    assert converted.exit_code == 0, converted.output
    return {"hf": root / "hf", "ms": root / "ms"}


@pytest.mark.parametrize("prompt", PROMPTS)
def test_zoo_run_mindspore_matches_torch(checkpoints: dict[str, Path], prompt: str) -> None:
    common = (prompt, "--max-new-tokens", "16", "--quiet", "--device", "cpu", "--dtype", "fp32")
    torch_out = zoo("run", "--weights", str(checkpoints["hf"]), "--backend", "torch", *common)
    assert torch_out.exit_code == 0, torch_out.output
    from_ms = zoo("run", "--weights", str(checkpoints["ms"]), "--backend", "mindspore", *common)
    assert from_ms.exit_code == 0, from_ms.output
    from_hf = zoo("run", "--weights", str(checkpoints["hf"]), "--backend", "mindspore", *common)
    assert from_hf.exit_code == 0, from_hf.output
    assert from_ms.output == torch_out.output == from_hf.output
    assert len(torch_out.output.strip()) > 0


def test_zoo_run_refuses_bf16_on_cpu(checkpoints: dict[str, Path]) -> None:
    result = zoo("run", "--weights", str(checkpoints["ms"]), "--backend", "mindspore", "--dtype", "bf16", "x", "--quiet")
    assert result.exit_code != 0
    assert "bf16 only on Ascend" in result.output
