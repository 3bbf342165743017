"""Tiny LanguageModel stand-ins that follow the runtime contract in numpy."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np

from codellama_zoo.specs import LlamaConfig

CONFIG = LlamaConfig(dim=8, n_layers=1, n_heads=1, vocab_size=32000, max_seq_len=256)


class HashLM:
    """Logits are a fixed pseudo-random function of each row's real tokens, padding ignored."""

    backend, device, dtype, attention = "fake", "cpu", "fp32", "none"

    def __init__(self, vocab_size: int = 32000, max_seq_len: int = 256) -> None:
        self.config = attrs.evolve(CONFIG, vocab_size=vocab_size, max_seq_len=max_seq_len)
        self.rows: list[list[int]] = []
        self.calls: list[tuple[str, tuple[int, ...]]] = []

    def start(self, batch_size: int, max_len: int) -> None:
        self.rows = [[] for _ in range(batch_size)]
        self.max_len = max_len

    def _logits(self) -> np.ndarray:
        out = np.empty((len(self.rows), self.config.vocab_size), dtype=np.float32)
        for i, row in enumerate(self.rows):
            seed = hash(tuple(row[-4:]) + (len(row),)) % 2**32
            out[i] = np.random.default_rng(seed).standard_normal(self.config.vocab_size) * 4
        return out

    def prefill(self, ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        self.calls.append(("prefill", ids.shape))
        assert ids.shape == attention_mask.shape and ids.shape[0] == len(self.rows)
        for i in range(ids.shape[0]):
            real = ids[i][attention_mask[i] == 1].tolist()
            assert attention_mask[i].tolist() == [0] * (ids.shape[1] - len(real)) + [1] * len(real)  # left padding
            self.rows[i] = real
        return self._logits()

    def decode(self, next_ids: np.ndarray) -> np.ndarray:
        self.calls.append(("decode", next_ids.shape))
        for row, token in zip(self.rows, next_ids.tolist(), strict=True):
            row.append(int(token))
            assert len(row) <= self.max_len
        return self._logits()


class ScriptedLM(HashLM):
    """Each row emits its script of ids, then ``then`` (EOS by default) forever."""

    def __init__(self, scripts: Sequence[Sequence[int]], then: int = 2, vocab_size: int = 32000) -> None:
        super().__init__(vocab_size)
        self.scripts = [list(s) for s in scripts]
        self.then = then
        self.prompt_lens: list[int] = []

    def prefill(self, ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        super().prefill(ids, attention_mask)
        self.prompt_lens = [len(r) for r in self.rows]
        return self._logits()

    def _logits(self) -> np.ndarray:
        out = np.full((len(self.rows), self.config.vocab_size), -10.0, dtype=np.float32)
        for i, row in enumerate(self.rows):
            step = len(row) - self.prompt_lens[i] if self.prompt_lens else 0
            script = self.scripts[i % len(self.scripts)]
            out[i, script[step] if step < len(script) else self.then] = 10.0
        return out
