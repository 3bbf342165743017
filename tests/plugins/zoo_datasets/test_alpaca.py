"""code-alpaca on the real 2k file: conversion, exact label masking, storage round trips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from zoo_datasets.alpaca import (
    IGNORE_INDEX,
    PROMPT_NO_INPUT,
    PROMPT_WITH_INPUT,
    preprocess,
    read,
    render_turn,
)
from zoo_datasets.prepare import prepare
from zoo_datasets.storage import MindRecordSamples, NumpySamples, mindspore_available, open_samples

SEQ = 256


@pytest.fixture(scope="module")
def raw(alpaca_file: Path) -> list[dict[str, str]]:
    return json.loads(alpaca_file.read_text(encoding="utf-8"))


def test_conversion_count_and_templates(alpaca_file: Path, raw: list[dict[str, str]]) -> None:
    conversations = list(read(alpaca_file))
    assert len(conversations) == len(raw) == 2017
    with_input = sum(1 for r in raw if r["input"] != "")
    assert 0 < with_input < len(raw)
    for number, (record, conv) in enumerate(zip(raw, conversations, strict=True), start=1):
        human, gpt = conv["conversations"]
        assert conv["id"] == str(number)
        assert human["from"] == "human" and gpt == {"from": "gpt", "value": record["output"]}
        template = PROMPT_WITH_INPUT if record["input"] else PROMPT_NO_INPUT
        assert human["value"] == template.format(instruction=record["instruction"], input=record["input"])
    first_with_input = next(c for r, c in zip(raw, conversations, strict=True) if r["input"])
    assert "paired with an input that provides further context" in first_with_input["conversations"][0]["value"]
    assert "### Input:\n" in first_with_input["conversations"][0]["value"]
    first_without = next(c for r, c in zip(raw, conversations, strict=True) if not r["input"])
    assert first_without["conversations"][0]["value"].startswith("Below is an instruction that describes a task. ")
    assert "### Input:" not in first_without["conversations"][0]["value"]


@pytest.mark.parametrize("template", ["vicuna", "inst"])
def test_label_masking_exact(alpaca_file: Path, llama2_tok, template: str) -> None:
    conversations = list(read(alpaca_file))
    stats: dict = {}
    samples = list(preprocess(iter(conversations), llama2_tok, SEQ, stats, template=template))
    assert len(samples) == stats["samples"] == 2017
    truncated = 0
    for conv, sample in zip(conversations, samples, strict=True):
        human, gpt = conv["conversations"]
        prompt = llama2_tok.encode(render_turn(template, human["value"], first=True))
        answer = llama2_tok.encode(gpt["value"].strip() if template == "inst" else gpt["value"])
        expected = [llama2_tok.bos_id, *prompt, *answer, llama2_tok.eos_id]
        ids, labels = sample["input_ids"], sample["labels"]
        assert ids.shape == labels.shape == (SEQ + 1,)
        n = min(len(expected), SEQ + 1)
        truncated += len(expected) > SEQ + 1
        assert ids[:n].tolist() == expected[:n]
        assert (ids[n:] == llama2_tok.pad_id).all()
        prompt_len = 1 + len(prompt)
        # no prompt (or padding) token has a label; every response token and its EOS does
        assert (labels[: min(prompt_len, n)] == IGNORE_INDEX).all()
        assert labels[prompt_len:n].tolist() == ids[prompt_len:n].tolist()
        assert (labels[n:] == IGNORE_INDEX).all()
        assert (labels[prompt_len:n] != IGNORE_INDEX).all()
    assert truncated == stats["truncated"] > 0


def test_templates_render_as_documented() -> None:
    vicuna = render_turn("vicuna", "Hi", first=True)
    assert vicuna.startswith("A chat between a curious user") and vicuna.endswith(" USER: Hi ASSISTANT:")
    assert render_turn("inst", "  Write code \n", first=True) == "[INST] Write code [/INST]"


def test_round_trip_numpy_and_mindrecord(alpaca_file: Path, llama2_tok, tmp_path: Path) -> None:
    formats = ("numpy", "mindrecord") if mindspore_available() else ("numpy",)
    meta = prepare("code-alpaca", input=alpaca_file, tokenizer=llama2_tok, seq_length=SEQ, output=tmp_path / "ds",
                   formats=formats, progress=False)
    expected = list(preprocess(read(alpaca_file), llama2_tok, SEQ, {}))
    assert meta["count"] == 2017 and meta["columns"] == ["input_ids", "labels"]
    assert meta["seq_length"] == SEQ and meta["sample_length"] == SEQ + 1
    assert meta["tokenizer"]["vocab_size"] == 32000 and meta["counts"]["documents"] == 2017
    on_disk = json.loads((tmp_path / "ds" / "meta.json").read_text())
    assert on_disk["counts"] == meta["counts"]

    numpy_samples = open_samples(tmp_path / "ds", "numpy")
    assert isinstance(numpy_samples, NumpySamples) and len(numpy_samples) == 2017
    assert isinstance(numpy_samples.data, np.memmap)
    assert numpy_samples.meta["seq_length"] == SEQ
    for want, got in zip(expected, numpy_samples, strict=True):
        assert np.array_equal(want["input_ids"], got["input_ids"])
        assert np.array_equal(want["labels"], got["labels"])
    if "mindrecord" in formats:
        mr = open_samples(tmp_path / "ds", "mindrecord")
        assert isinstance(mr, MindRecordSamples) and len(mr) == 2017
        count = 0
        for want, got in zip(expected, mr, strict=True):
            assert np.array_equal(want["input_ids"], got["input_ids"])
            assert np.array_equal(want["labels"], got["labels"])
            count += 1
        assert count == 2017
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temporary folder left


def test_mindrecord_schema_matches_the_seed(alpaca_file: Path, llama2_tok, tmp_path: Path) -> None:
    if not mindspore_available():
        pytest.skip("MindSpore is not installed")
    from mindspore.mindrecord import FileReader

    head = tmp_path / "head.json"
    head.write_text(json.dumps(json.loads(alpaca_file.read_text())[:20]))
    prepare("code-alpaca", input=head, tokenizer=llama2_tok, seq_length=64, output=tmp_path / "mr",
            formats=("mindrecord",), progress=False)
    reader = FileReader(str(tmp_path / "mr" / "samples.mindrecord"))
    try:
        assert reader.schema() == {
            "input_ids": {"type": "int32", "shape": [-1]},
            "labels": {"type": "int32", "shape": [-1]},
        }
        assert reader.len() == 20
    finally:
        reader.close()
