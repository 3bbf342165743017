"""Documents → BOS/EOS-delimited token stream → fixed-length samples.

Samples hold ``seq_length + 1`` tokens, as the seed's ``llama_preprocess.py``
writes them: the model reads the first ``seq_length`` and predicts the last
``seq_length``. The tail that does not fill a sample is dropped and counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np


def pack(token_docs: Iterable[list[int]], sample_length: int, stats: dict[str, Any]) -> Iterator[dict[str, np.ndarray]]:
    """Concatenate already delimited documents and cut them into ``sample_length`` chunks."""
    buffer: list[int] = []
    stats.setdefault("documents", 0)
    stats.setdefault("tokens", 0)
    stats.setdefault("samples", 0)
    for ids in token_docs:
        stats["documents"] += 1
        stats["tokens"] += len(ids)
        buffer.extend(ids)
        start = 0
        while len(buffer) - start >= sample_length:
            stats["samples"] += 1
            yield {"input_ids": np.asarray(buffer[start : start + sample_length], dtype=np.int32)}
            start += sample_length
        if start:
            del buffer[:start]
    stats["dropped_tokens"] = len(buffer)


def delimit(tokenizer: Any, text: str) -> list[int]:
    """``[BOS] + encode(text) + [EOS]``: one document in the packed stream."""
    return [tokenizer.bos_id, *tokenizer.encode(text), tokenizer.eos_id]
