"""The Code Llama tokenizer fixtures, shared with the other tokenizer-using tests."""

from __future__ import annotations

from codellama_vocab import codellama70b_tokenizer_model, codellama_tokenizer_model

__all__ = ["codellama70b_tokenizer_model", "codellama_tokenizer_model"]
