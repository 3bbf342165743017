"""Tokenizers for the dataset tests: the real Llama 2 model, Code Llama's 32,016-piece layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from codellama_vocab import codellama_tokenizer_model
from shared_assets import asset
from zoo_datasets.tokenizer import SentencePieceTokenizer

__all__ = ["codellama_tokenizer_model"]

shared_asset = asset


@pytest.fixture(scope="module")
def alpaca_file() -> Path:
    return shared_asset("code-alpaca/code_alpaca_2k.json")


@pytest.fixture
def llama2_tok(llama2_tokenizer_model: Path) -> SentencePieceTokenizer:
    return SentencePieceTokenizer(llama2_tokenizer_model)


@pytest.fixture
def codellama_tok(codellama_tokenizer_model: Path) -> SentencePieceTokenizer:
    return SentencePieceTokenizer(codellama_tokenizer_model)


class CharTokenizer:
    """One id per character (offset past the specials): packing boundaries are easy to predict."""

    bos_id, eos_id, pad_id = 1, 2, 0
    vocab_size = 300

    def encode(self, text: str) -> list[int]:
        return [3 + (ord(c) % 290) for c in text]

    def describe(self) -> dict[str, str]:
        return {"type": "chars"}


@pytest.fixture
def char_tok() -> CharTokenizer:
    return CharTokenizer()
