"""Bad input: errors name the file, the record and the field, and leave nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from zoo_datasets.errors import DatasetError
from zoo_datasets.prepare import prepare

GOOD = {"instruction": "Add two numbers.", "input": "", "output": "def add(a, b):\n    return a + b"}


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _assert_nothing_written(tmp_path: Path, inputs: set[str]) -> None:
    assert {p.name for p in tmp_path.iterdir()} == inputs


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("", r"bad\.json: file is empty"),
        ("  \n", r"bad\.json: file is empty"),
        ("[]", r"bad\.json: the JSON array is empty"),
        (json.dumps([GOOD, GOOD])[:-30] + "]", r"bad\.json: record 2: malformed JSON at line 1 column \d+"),
        (json.dumps([GOOD, {"input": "", "output": "x"}]), r"bad\.json: record 2, field 'instruction': missing field"),
        (json.dumps([GOOD, GOOD, {"instruction": "x", "input": ""}]), r"record 3, field 'output': missing field"),
        (json.dumps([GOOD, {**GOOD, "output": 5}]), r"record 2, field 'output': expected a string, got int"),
        (json.dumps([GOOD, {**GOOD, "instruction": "  "}]), r"record 2, field 'instruction': is empty"),
        (json.dumps([GOOD, ["not", "an", "object"]]), r"record 2: expected a JSON object, got list"),
        (json.dumps(GOOD) + "\n{broken\n", r"record 2: malformed JSON Lines record \(line 2\)"),
        (json.dumps([{"conversations": [{"from": "gpt", "value": "x"}]}]),
         r"record 1, field 'conversations\[0\]\.from': expected from='human', got 'gpt'"),
    ],
)
def test_alpaca_errors_leave_no_output(tmp_path: Path, char_tok, text: str, pattern: str) -> None:
    bad = _write(tmp_path, "bad.json", text)
    with pytest.raises(DatasetError, match=pattern):
        prepare("code-alpaca", input=bad, tokenizer=char_tok, seq_length=32, output=tmp_path / "out", progress=False)
    _assert_nothing_written(tmp_path, {"bad.json"})


def test_failure_midway_removes_partial_output(tmp_path: Path, char_tok) -> None:
    # 300 good records are written before record 301 fails: the partial folder must vanish.
    records = [GOOD] * 300 + [{"instruction": "x"}]
    bad = _write(tmp_path, "bad.json", json.dumps(records))
    with pytest.raises(DatasetError, match="record 301, field 'output'"):
        prepare("code-alpaca", input=bad, tokenizer=char_tok, seq_length=32, output=tmp_path / "out", progress=False)
    _assert_nothing_written(tmp_path, {"bad.json"})


def test_existing_output_is_kept_on_failure(tmp_path: Path, char_tok) -> None:
    good = _write(tmp_path, "good.json", json.dumps([GOOD] * 3))
    prepare("code-alpaca", input=good, tokenizer=char_tok, seq_length=32, output=tmp_path / "out", progress=False)
    before = (tmp_path / "out" / "samples.bin").read_bytes()
    bad = _write(tmp_path, "bad.json", json.dumps([GOOD, {}]))
    with pytest.raises(DatasetError):
        prepare("code-alpaca", input=bad, tokenizer=char_tok, seq_length=32, output=tmp_path / "out",
                overwrite=True, progress=False)
    assert (tmp_path / "out" / "samples.bin").read_bytes() == before
    _assert_nothing_written(tmp_path, {"good.json", "bad.json", "out"})
    with pytest.raises(Exception, match="already exists; pass --overwrite"):
        prepare("code-alpaca", input=good, tokenizer=char_tok, seq_length=32, output=tmp_path / "out", progress=False)


def test_too_little_data_is_an_error_not_an_empty_dataset(tmp_path: Path, char_tok) -> None:
    wiki = _write(tmp_path, "w.tokens", " = T = \n \n Short . \n")
    with pytest.raises(DatasetError, match=r"w\.tokens: produced no samples .* use a smaller --seq-length"):
        prepare("wikitext", input=wiki, tokenizer=char_tok, seq_length=512, output=tmp_path / "out", progress=False)
    _assert_nothing_written(tmp_path, {"w.tokens"})


def test_humaneval_errors(tmp_path: Path, char_tok) -> None:
    bad = _write(tmp_path, "he.jsonl", json.dumps({"task_id": "a", "prompt": "p"}) + "\n")
    with pytest.raises(DatasetError, match=r"he\.jsonl: record 1, field 'canonical_solution': missing or not a string"):
        prepare("humaneval", input=bad, tokenizer=char_tok, seq_length=32, output=tmp_path / "out", progress=False)
    _assert_nothing_written(tmp_path, {"he.jsonl"})


def test_cli_prints_one_line_and_fails(tmp_path: Path, llama2_tokenizer_model: Path) -> None:
    from codellama_zoo.cli import cli

    bad = _write(tmp_path, "bad.json", json.dumps([GOOD, {"instruction": "x", "output": None}]))
    result = CliRunner().invoke(cli, [
        "data", "prepare", "code-alpaca", "--input", str(bad), "--tokenizer", str(llama2_tokenizer_model),
        "--seq-length", "64", "--output", str(tmp_path / "out"),
    ])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if not line.startswith("zoo: warning")]
    assert lines == [f"zoo: error: {bad}: record 2, field 'output': expected a string, got NoneType"]
    _assert_nothing_written(tmp_path, {"bad.json"})


def test_unknown_option_names_the_allowed_ones(tmp_path: Path, char_tok) -> None:
    good = _write(tmp_path, "good.json", json.dumps([GOOD]))
    with pytest.raises(Exception, match="dataset 'code-alpaca' has no option 'fim_rate'; its options: template"):
        prepare("code-alpaca", input=good, tokenizer=char_tok, seq_length=32, output=tmp_path / "out",
                options={"fim_rate": 0.5}, progress=False)
