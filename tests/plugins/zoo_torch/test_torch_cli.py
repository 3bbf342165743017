"""`zoo convert`, `zoo attention` and `zoo bench` through click's test runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch_testing import random_model, shrink

from codellama_zoo.cli import cli
from zoo_codellama.presets import ARCHITECTURES
from zoo_torch import checkpoints


@pytest.fixture
def hf_dir(tmp_path: Path) -> Path:
    model = random_model(shrink(ARCHITECTURES["34b"], n_layers=1), seed=2)
    out = checkpoints.save_checkpoint(model.state_dict(), model.config, tmp_path / "hf", "hf")
    (out / "tokenizer.model").write_bytes(b"not really a tokenizer")
    return out


def _zoo(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_convert_chain_is_bit_exact(tmp_path: Path, hf_dir: Path) -> None:
    assert _zoo("convert", str(hf_dir), str(tmp_path / "meta"), "--to", "meta", "--shards", "2", "-q")[0] == 0
    assert sorted(p.name for p in (tmp_path / "meta").iterdir()) == [
        "consolidated.00.pth", "consolidated.01.pth", "params.json", "tokenizer.model"]
    assert _zoo("convert", str(tmp_path / "meta"), str(tmp_path / "zoo"), "--to", "zoo")[0] == 0
    assert _zoo("convert", str(tmp_path / "zoo"), str(tmp_path / "back"), "--to", "hf", "-q")[0] == 0
    for name in ("config.json", "model.safetensors", "tokenizer.model"):
        assert (hf_dir / name).read_bytes() == (tmp_path / "back" / name).read_bytes(), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directories left


def test_convert_dtype(tmp_path: Path, hf_dir: Path) -> None:
    code, _ = _zoo("convert", str(hf_dir), str(tmp_path / "half"), "--to", "zoo", "--dtype", "fp16", "-q")
    assert code == 0
    sd, _ = checkpoints.load_state_dict(tmp_path / "half")
    assert {t.dtype for t in sd.values()} == {torch.float16}


def test_convert_errors_are_one_line(tmp_path: Path, hf_dir: Path) -> None:
    code, out = _zoo("convert", str(hf_dir), str(tmp_path / "x"), "--to", "gguf")
    assert code == 2 and "'gguf' is not a writable checkpoint format; choose from: zoo, hf, hf-bin, meta" in out
    code, out = _zoo("convert", str(tmp_path / "missing"), str(tmp_path / "x"), "--to", "hf")
    assert code == 1 and out.startswith("zoo: error: weights directory") and "does not exist" in out
    code, out = _zoo("convert", str(hf_dir), str(hf_dir), "--to", "hf")
    assert code == 2 and "already exists and is not empty; pass --overwrite" in out
    code, out = _zoo("convert", str(hf_dir), str(tmp_path / "x"), "--to", "hf", "--model", "codellama-7b")
    assert code == 2 and "--model codellama-7b does not match the checkpoint" in out
    code, out = _zoo("convert", str(hf_dir), str(tmp_path / "x"), "--to", "meta", "--shards", "3")
    assert code == 2 and "into 3 model-parallel shards" in out
    assert "Traceback" not in out and not (tmp_path / "x").exists()


def test_to_choices_come_from_the_registry(tmp_path: Path, hf_dir: Path) -> None:
    from codellama_zoo import hookimpl, registry
    from codellama_zoo.plugins import get_plugin_manager
    from codellama_zoo.specs import CheckpointFormatSpec

    written = {}

    class Extra:
        @hookimpl
        def register_checkpoint_formats(self, register: object) -> None:
            def save(state_dict: dict, config: object, path: Path, **options: object) -> None:
                written.update(state_dict)
                (Path(path) / "weights.npz").write_bytes(b"x")

            register(CheckpointFormatSpec(name="npz-test", detect=lambda p: False, save=save))  # type: ignore[operator]

    get_plugin_manager().register(Extra(), name="extra-format")
    registry.reset()  # collect the formats again, with the new plugin
    code, out = _zoo("convert", str(hf_dir), str(tmp_path / "npz"), "--to", "npz-test", "-q")
    assert code == 0, out
    assert (tmp_path / "npz" / "weights.npz").exists() and "tok_embeddings.weight" in written


def test_attention_command() -> None:
    code, out = _zoo("attention", "--device", "cpu", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)["implementations"]}
    assert rows["sdpa"]["auto"] and rows["sdpa"]["available"] and rows["eager"]["available"]
    assert not rows["flash"]["available"] and "CUDA" in rows["flash"]["reason"]
    code, out = _zoo("attention")
    assert code == 0 and "* sdpa" in out


def test_bench_runs_on_a_micro_config(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    out_json = tmp_path / "bench.json"
    code, out = _zoo("bench", "--config", "micro", "--repeats", "1", "--rounds", "1", "--threads", "1", "--no-compile",
                     "--json", str(out_json))
    assert code == 0, out
    assert "zoo_torch (sdpa)" in out and "transformers" in out and "decode" in out
    results = json.loads(out_json.read_text())
    ours = results[0]["rows"][0]
    assert ours["decode_tok_s"] > 0 and ours["same_tokens"] is True
    assert set(ours["ratio_vs_transformers"]) == {"prefill_tok_s", "decode_tok_s", "peak_rss_bytes"}
