"""The contract between a backend's model and everything that drives it.

Generators, prompt formats, ``zoo run`` and evaluations talk to any backend
through :class:`LanguageModel`; token ids and logits cross the boundary as
numpy arrays so that decoding code is written once for torch and MindSpore.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from codellama_zoo.specs import LlamaConfig


@runtime_checkable
class LanguageModel(Protocol):
    """A loaded causal LM with a static KV cache.

    ``start`` allocates (or reuses) a cache for ``batch_size`` sequences of at
    most ``max_len`` tokens. ``prefill`` takes left-padded ids ``(B, T)`` with
    ``attention_mask`` ``(B, T)`` (1 = token, 0 = padding) and returns the fp32
    logits of each row's last position, ``(B, vocab)``. ``decode`` appends one
    token per row, ``(B,)``, and returns the next logits ``(B, vocab)``.
    Positions are tracked per row, so padding never shifts RoPE.
    """

    config: LlamaConfig
    backend: str
    device: str
    dtype: str
    attention: str

    def start(self, batch_size: int, max_len: int) -> None: ...

    def prefill(self, ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray: ...

    def decode(self, next_ids: np.ndarray) -> np.ndarray: ...
