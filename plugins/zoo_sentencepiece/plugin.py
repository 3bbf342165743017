"""Registers the SentencePiece tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codellama_zoo import hookimpl
from codellama_zoo.hookspecs import Register
from codellama_zoo.specs import TokenizerSpec

TOKENIZER_FILE = "tokenizer.model"


def load_tokenizer(path: str | Path) -> Any:
    """A tokenizer from a ``tokenizer.model`` file or a folder holding one."""
    from zoo_sentencepiece.tokenizer import SentencePieceTokenizer

    p = Path(path)
    return SentencePieceTokenizer(p / TOKENIZER_FILE if p.is_dir() else p)


@hookimpl
def register_tokenizers(register: Register) -> None:
    register(
        TokenizerSpec(
            name="sentencepiece",
            description="SentencePiece (Llama 2 vocabulary, Code Llama infill pieces)",
            files=(TOKENIZER_FILE,),
            load=load_tokenizer,
        )
    )
