"""Choosing the next token from fp32 logits, in numpy, for any backend.

Each filter takes logits ``(B, V)`` and returns them with the excluded
tokens set to ``-inf``; the order is repetition penalty, temperature,
top-k, top-p, min-p, as in Hugging Face's ``generate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from codellama_zoo.errors import ConfigError

NEG_INF = np.float32(-np.inf)


def check_config(config: Any) -> None:
    """Reject knob values that cannot work, naming the knob and the allowed range."""
    if config.temperature < 0:
        raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {config.temperature}")
    if config.top_k < 0:
        raise ConfigError(f"top_k must be >= 0 (0 = off), got {config.top_k}")
    if not 0 < config.top_p <= 1:
        raise ConfigError(f"top_p must be in (0, 1] (1 = off), got {config.top_p}")
    if not 0 <= config.min_p < 1:
        raise ConfigError(f"min_p must be in [0, 1) (0 = off), got {config.min_p}")
    if config.repetition_penalty <= 0:
        raise ConfigError(f"repetition_penalty must be > 0 (1 = off), got {config.repetition_penalty}")
    if config.max_new_tokens < 0:
        raise ConfigError(f"max_new_tokens must be >= 0, got {config.max_new_tokens}")


def repetition_penalty(logits: np.ndarray, history: Sequence[Sequence[int]], penalty: float) -> np.ndarray:
    """CTRL's penalty: seen tokens' positive logits divided, negative multiplied."""
    if penalty == 1.0:
        return logits
    out = logits.copy()
    for row, seen in enumerate(history):
        ids = np.unique(np.asarray(seen, dtype=np.int64))
        ids = ids[(ids >= 0) & (ids < out.shape[1])]
        values = out[row, ids]
        out[row, ids] = np.where(values > 0, values / penalty, values * penalty)
    return out


def top_k_filter(logits: np.ndarray, k: int) -> np.ndarray:
    """Keep the ``k`` largest logits per row (ties with the k-th are kept too)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = np.partition(logits, -k, axis=-1)[:, -k][:, None]
    return np.where(logits < kth, NEG_INF, logits)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted, dtype=np.float64)
    return exp / exp.sum(axis=-1, keepdims=True)


def top_p_filter(logits: np.ndarray, p: float) -> np.ndarray:
    """Keep the smallest most-likely set whose probability reaches ``p``."""
    if p >= 1.0:
        return logits
    probs = softmax(logits)
    order = np.argsort(-probs, axis=-1, kind="stable")
    sorted_probs = np.take_along_axis(probs, order, axis=-1)
    before = np.cumsum(sorted_probs, axis=-1) - sorted_probs  # mass of strictly more likely tokens
    drop_sorted = before >= p
    drop = np.zeros_like(drop_sorted)
    np.put_along_axis(drop, order, drop_sorted, axis=-1)
    return np.where(drop, NEG_INF, logits)


def min_p_filter(logits: np.ndarray, min_p: float) -> np.ndarray:
    """Drop tokens less likely than ``min_p`` times the most likely one."""
    if min_p <= 0:
        return logits
    probs = softmax(logits)
    threshold = min_p * probs.max(axis=-1, keepdims=True)
    return np.where(probs < threshold, NEG_INF, logits)


class Greedy:
    """The most likely token (after the repetition penalty)."""

    def __init__(self, config: Any) -> None:
        check_config(config)
        self.config = config

    def reset(self) -> None:
        """Nothing random to reseed."""

    def choose(self, logits: np.ndarray, history: Sequence[Sequence[int]]) -> np.ndarray:
        logits = repetition_penalty(np.asarray(logits, dtype=np.float32), history, self.config.repetition_penalty)
        return logits.argmax(axis=-1).astype(np.int64)


class Sampler:
    """Samples from the filtered, temperature-scaled distribution; seeded for reproducibility."""

    def __init__(self, config: Any) -> None:
        check_config(config)
        if config.temperature == 0:
            raise ConfigError("sampling needs temperature > 0; use the greedy generator for temperature 0")
        self.config = config
        self.rng = np.random.default_rng(config.seed)

    def reset(self) -> None:
        """Restart the random stream, so a seeded call repeats exactly."""
        self.rng = np.random.default_rng(self.config.seed)

    def filtered(self, logits: np.ndarray, history: Sequence[Sequence[int]]) -> np.ndarray:
        c = self.config
        logits = repetition_penalty(np.asarray(logits, dtype=np.float32), history, c.repetition_penalty)
        logits = logits / np.float32(c.temperature)
        logits = top_k_filter(logits, c.top_k)
        logits = top_p_filter(logits, c.top_p)
        return min_p_filter(logits, c.min_p)

    def probabilities(self, logits: np.ndarray, history: Sequence[Sequence[int]]) -> np.ndarray:
        return softmax(self.filtered(logits, history))

    # Top-p first looks among this many most likely tokens, then more: sorting a
    # whole 32k vocabulary every step costs milliseconds, and the nucleus is
    # usually a few hundred tokens.
    CANDIDATES = (1024, 8192)

    def distribution(self, row_logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(token ids, probabilities)`` of one row after all filters; same result as :meth:`probabilities`."""
        c = self.config
        x = row_logits / np.float32(c.temperature)
        vocab = x.shape[0]
        if 0 < c.top_k < vocab:
            ids = np.flatnonzero(x >= np.partition(x, vocab - c.top_k)[vocab - c.top_k])  # ties with the k-th stay
        else:
            ids = np.arange(vocab)
        top = x[ids].max()
        z = np.exp((x[ids] - top).astype(np.float64)).sum()  # normaliser over the whole top-k set
        if c.top_p < 1.0:
            for width in (*self.CANDIDATES, len(ids)):
                pool = ids
                if len(ids) > width:  # the `width` most likely tokens (ties included), sorted
                    cut = len(ids) - width
                    pool = ids[np.flatnonzero(x[ids] >= np.partition(x[ids], cut)[cut])]
                pool = pool[np.argsort(-x[pool], kind="stable")]
                probs = np.exp((x[pool] - top).astype(np.float64)) / z
                before = np.cumsum(probs) - probs
                if len(pool) == len(ids) or before[-1] + probs[-1] >= c.top_p:
                    break  # enough mass among the candidates: the cut lies inside them
            n = max(int(np.searchsorted(before, c.top_p, side="left")), 1)
            ids, probs = pool[:n], probs[:n]
        else:
            probs = np.exp((x[ids] - top).astype(np.float64)) / z
        if c.min_p > 0:
            keep = probs >= c.min_p * probs.max()
            ids, probs = ids[keep], probs[keep]
        return ids, probs / probs.sum()


    def choose(self, logits: np.ndarray, history: Sequence[Sequence[int]]) -> np.ndarray:
        logits = repetition_penalty(np.asarray(logits, dtype=np.float32), history, self.config.repetition_penalty)
        picks = np.empty(logits.shape[0], dtype=np.int64)
        for row in range(logits.shape[0]):
            ids, probs = self.distribution(logits[row])
            cumulative = np.cumsum(probs)
            draw = self.rng.random() * cumulative[-1]
            picks[row] = ids[min(int(np.searchsorted(cumulative, draw, side="right")), len(ids) - 1)]
        return picks
