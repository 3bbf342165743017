"""The unbiased pass@k estimator (Chen et al., 2021) and the benchmark summary."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import Any

from codellama_zoo.errors import UsageError

DEFAULT_KS: tuple[int, ...] = (1, 10, 100)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of ``k`` samples drawn from ``n`` (``c`` correct) passes.

    ``1 - C(n-c, k) / C(n, k)``, computed exactly with integers, so it does
    not lose precision for large ``n``.
    """
    if not 0 <= c <= n:
        raise UsageError(f"pass@k needs 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise UsageError(f"pass@{k} needs 1 <= k <= n samples per problem, got n={n}")
    if n - c < k:
        return 1.0
    return float(1 - Fraction(math.comb(n - c, k), math.comb(n, k)))


def applicable_ks(counts: Iterable[int], ks: Iterable[int] = DEFAULT_KS) -> list[int]:
    """The ``k`` that every problem has enough samples for."""
    fewest = min(counts, default=0)
    return [k for k in ks if 1 <= k <= fewest]


def summarize(
    per_problem: Mapping[str, tuple[int, int]],
    ks: Iterable[int] = DEFAULT_KS,
    results: Iterable[str] = (),
    total_problems: int | None = None,
) -> dict[str, Any]:
    """pass@k (mean over problems) for the applicable ``k``, problems solved, result counts.

    ``per_problem`` maps task id to ``(n samples, c correct)``.
    """
    counts = [n for n, _ in per_problem.values()]
    chosen = applicable_ks(counts, ks)
    scores = {
        f"pass@{k}": (sum(pass_at_k(n, c, k) for n, c in per_problem.values()) / len(per_problem))
        for k in chosen
    }
    solved = sum(1 for _, c in per_problem.values() if c > 0)
    return {
        **scores,
        "solved": solved,
        "problems": len(per_problem),
        "total_problems": total_problems if total_problems is not None else len(per_problem),
        "samples": sum(counts),
        "samples_per_problem": sorted(set(counts)),
        "results": dict(Counter(results).most_common()),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """A short human-readable block."""
    lines = []
    for key, value in summary.items():
        if key.startswith("pass@"):
            lines.append(f"{key:<9} {100 * value:6.2f}%")
    lines.append(f"solved    {summary['solved']}/{summary['problems']}")
    if summary["total_problems"] != summary["problems"]:
        lines[-1] += f" (samples cover {summary['problems']} of {summary['total_problems']} problems)"
    counts = ", ".join(f"{name}: {count}" for name, count in summary["results"].items())
    if counts:
        lines.append(f"results   {counts}")
    return "\n".join(lines)
