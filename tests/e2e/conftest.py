"""End-to-end fixtures: tiny Code Llama variants and random checkpoints on disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tiny_zoo import install_plugin_manager, write_checkpoint

from codellama_vocab import codellama70b_tokenizer_model, codellama_tokenizer_model

__all__ = ["codellama70b_tokenizer_model", "codellama_tokenizer_model"]

_written: dict[str, Path] = {}


@pytest.fixture
def tiny_zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The tiny variants registered; $ZOO_HOME empty."""
    pytest.importorskip("torch")
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "zoo-home"))
    install_plugin_manager()
    yield


def _checkpoint(key: str, factory: pytest.TempPathFactory, tokenizer: Path, vocab: int) -> Path:
    if key not in _written:
        _written[key] = write_checkpoint(factory.mktemp(key), tokenizer, vocab)
    return _written[key]


@pytest.fixture
def infill_checkpoint(codellama_tokenizer_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 7B-layout checkpoint: 32,016 pieces, infill-capable tokenizer."""
    pytest.importorskip("transformers")
    return _checkpoint("ckpt-7b", tmp_path_factory, codellama_tokenizer_model, 32016)


@pytest.fixture
def python_checkpoint(llama2_tokenizer_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Python-variant checkpoint: plain Llama 2 vocabulary, no infill pieces."""
    pytest.importorskip("transformers")
    return _checkpoint("ckpt-python", tmp_path_factory, llama2_tokenizer_model, 32000)


@pytest.fixture
def chat70b_checkpoint(codellama70b_tokenizer_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 70B-Instruct-layout checkpoint whose tokenizer has <step>."""
    pytest.importorskip("transformers")
    return _checkpoint("ckpt-70b", tmp_path_factory, codellama70b_tokenizer_model, 32016)
