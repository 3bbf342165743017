"""YAML run configs: structure, overrides, and errors naming file, key and values."""

from __future__ import annotations

from pathlib import Path

import pytest

from codellama_zoo import ConfigError
from codellama_zoo.config import GenerateConfig, RunConfig, apply_overrides, load_config, structure


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_load_nested_config(tmp_path: Path) -> None:
    path = _write(tmp_path, 'model: codellama-7b\ndtype: bf16\ngenerate:\n  temperature: 0.2\n  stop: ["\\ndef"]\n')
    cfg = load_config(path, RunConfig)
    assert cfg.model == "codellama-7b"
    assert cfg.dtype == "bf16"
    assert cfg.generate == GenerateConfig(temperature=0.2, stop=("\ndef",))


def test_unknown_key_names_file_key_and_suggestion(tmp_path: Path) -> None:
    path = _write(tmp_path, "generate:\n  temprature: 0.2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, RunConfig)
    message = str(info.value)
    assert str(path) in message
    assert "'generate.temprature'" in message
    assert "did you mean 'temperature'" in message


def test_bad_choice_lists_allowed_values(tmp_path: Path) -> None:
    path = _write(tmp_path, "dtype: float64\n")
    with pytest.raises(ConfigError, match=r"key 'dtype': got 'float64'; allowed values: 'auto', 'fp32', 'bf16', 'fp16'"):
        load_config(path, RunConfig)


def test_bad_type_names_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "generate:\n  max_new_tokens: many\n")
    with pytest.raises(ConfigError, match="'generate.max_new_tokens': expected an integer, got 'many'"):
        load_config(path, RunConfig)


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "model: [unclosed\nother: 1\n")
    with pytest.raises(ConfigError, match=r"run.yaml: line \d+: invalid YAML"):
        load_config(path, RunConfig)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml", RunConfig)


def test_overrides_apply_before_validation(tmp_path: Path) -> None:
    path = _write(tmp_path, "model: codellama-7b\n")
    cfg = load_config(path, RunConfig, ["generate.top_k=40", "backend=torch"])
    assert cfg.generate.top_k == 40
    assert cfg.backend == "torch"
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["novalue"])


def test_structure_reports_nested_constructor_errors() -> None:
    from codellama_zoo.specs import LlamaConfig

    with pytest.raises(ConfigError, match="not divisible by n_heads"):
        structure({"dim": 10, "n_layers": 1, "n_heads": 3, "vocab_size": 5}, LlamaConfig, source="x.yaml")
