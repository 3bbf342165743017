"""Exact masks and sampling statistics on fixed logits."""

from __future__ import annotations

import numpy as np
import pytest

from codellama_zoo.config import GenerateConfig
from codellama_zoo.errors import ConfigError
from zoo_generators.sampling import Greedy, Sampler, min_p_filter, repetition_penalty, top_k_filter, top_p_filter

PROBS = np.array([[0.5, 0.2, 0.15, 0.1, 0.05]])
LOGITS = np.log(PROBS).astype(np.float32)


def kept(logits: np.ndarray) -> list[int]:
    return np.flatnonzero(np.isfinite(logits[0])).tolist()


def test_top_k_mask_is_exact() -> None:
    logits = np.array([[1.0, 5.0, 3.0, 2.0, 4.0]], dtype=np.float32)
    assert kept(top_k_filter(logits, 2)) == [1, 4]
    assert kept(top_k_filter(logits, 1)) == [1]
    assert kept(top_k_filter(logits, 0)) == [0, 1, 2, 3, 4]  # off
    assert kept(top_k_filter(logits, 9)) == [0, 1, 2, 3, 4]
    assert top_k_filter(logits, 2)[0, 1] == 5.0  # kept logits untouched


@pytest.mark.parametrize(
    ("p", "expected"), [(0.45, [0]), (0.6, [0, 1]), (0.72, [0, 1, 2]), (0.9, [0, 1, 2, 3]), (0.96, [0, 1, 2, 3, 4])]
)
def test_top_p_mask_is_exact(p: float, expected: list[int]) -> None:
    shuffled = [3, 0, 4, 1, 2]  # order in the vocabulary must not matter
    logits = LOGITS[:, shuffled]
    assert sorted(shuffled[i] for i in kept(top_p_filter(logits, p))) == expected


def test_min_p_mask_is_exact() -> None:
    assert kept(min_p_filter(LOGITS, 0.25)) == [0, 1, 2]  # threshold 0.125
    assert kept(min_p_filter(LOGITS, 0.35)) == [0, 1]  # threshold 0.175
    assert kept(min_p_filter(LOGITS, 0.5)) == [0]
    assert kept(min_p_filter(LOGITS, 0.0)) == [0, 1, 2, 3, 4]


def test_repetition_penalty_values() -> None:
    logits = np.array([[2.0, -2.0, 1.0, 0.5]], dtype=np.float32)
    out = repetition_penalty(logits, [[0, 1, 1]], 2.0)
    np.testing.assert_allclose(out, [[1.0, -4.0, 1.0, 0.5]])
    assert Greedy(GenerateConfig(repetition_penalty=4.0)).choose(logits, [[0]]).tolist() == [2]


def test_sampling_frequencies_follow_filtered_distribution() -> None:
    config = GenerateConfig(temperature=1.0, top_k=3, seed=0)
    sampler = Sampler(config)
    n = 40_000
    picks = sampler.choose(np.repeat(LOGITS, n, axis=0), [[]] * n)
    freq = np.bincount(picks, minlength=5) / n
    expected = np.array([0.5, 0.2, 0.15, 0, 0]) / 0.85
    np.testing.assert_allclose(freq, expected, atol=0.01)
    assert freq[3] == 0 and freq[4] == 0


def test_temperature_sharpens() -> None:
    cold = Sampler(GenerateConfig(temperature=0.5, seed=1)).probabilities(LOGITS, [[]])[0]
    expected = PROBS[0] ** 2 / (PROBS[0] ** 2).sum()
    np.testing.assert_allclose(cold, expected, rtol=1e-5)


def test_seed_reproduces_and_differs() -> None:
    logits = np.repeat(LOGITS, 64, axis=0)
    a = Sampler(GenerateConfig(temperature=1.0, seed=7)).choose(logits, [[]] * 64)
    b = Sampler(GenerateConfig(temperature=1.0, seed=7)).choose(logits, [[]] * 64)
    c = Sampler(GenerateConfig(temperature=1.0, seed=8)).choose(logits, [[]] * 64)
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature": -1.0},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"top_k": -1},
        {"min_p": 1.0},
        {"repetition_penalty": 0.0},
        {"max_new_tokens": -1},
    ],
)
def test_bad_knobs_are_config_errors(bad: dict[str, float]) -> None:
    config = GenerateConfig(**{"temperature": 1.0, **bad})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=next(iter(bad))):
        Sampler(config)


@pytest.mark.parametrize(
    "knobs",
    [
        {"temperature": 0.7},
        {"temperature": 1.0, "top_k": 40},
        {"temperature": 0.8, "top_p": 0.9},
        {"temperature": 1.3, "top_k": 2000, "top_p": 0.5, "min_p": 0.02},
        {"temperature": 1.0, "min_p": 0.1},
        {"temperature": 5.0, "top_p": 0.99},  # flat: the candidate shortcut must fall back to the full sort
    ],
)
def test_fast_row_distribution_equals_the_dense_filters(knobs: dict[str, float]) -> None:
    sampler = Sampler(GenerateConfig(seed=0, **knobs))  # type: ignore[arg-type]
    logits = np.random.default_rng(1).standard_normal((3, 32016)).astype(np.float32) * 3
    dense = sampler.probabilities(logits, [[]] * 3)
    for row in range(3):
        ids, probs = sampler.distribution(logits[row])
        assert sorted(ids.tolist()) == np.flatnonzero(dense[row] > 0).tolist()
        np.testing.assert_allclose(probs, dense[row, ids], rtol=1e-6, atol=1e-12)
