"""The generation driver: problems in, ``samples.jsonl`` out, batch by batch, resumable.

It talks to the library API's model object (``codellama_zoo.load(...)``):
``generate(prompts, ...) -> list[str]`` (the text after each prompt) and
``infill(prefix, suffix, ...) -> str``. Options the model's methods do not
accept are not passed, so any object with those methods works.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from codellama_zoo.errors import UsageError
from zoo_humaneval.postprocess import STOP_SEQUENCES, postprocess_completion, postprocess_infill
from zoo_humaneval.problems import Problem
from zoo_humaneval.records import Appender, progress_bar, read_records


def _check_temperature(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise UsageError(f"--temperature must be >= 0 (0 = greedy), got {value}")


def _check_top_p(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0 < value <= 1:
        raise UsageError(f"--top-p must be in (0, 1], got {value}")


def _check_positive(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if value < 1:
        raise UsageError(f"--{attribute.name.replace('_', '-')} must be at least 1, got {value}")


@attrs.frozen(kw_only=True)
class GenerationOptions:
    """Decoding settings; Meta's paper: greedy for pass@1, T=0.8 and top-p 0.95 for pass@10/100."""

    max_new_tokens: int = attrs.field(default=512, validator=_check_positive)
    temperature: float = attrs.field(default=0.0, validator=_check_temperature)
    top_p: float = attrs.field(default=0.95, validator=_check_top_p)
    seed: int = 0
    batch_size: int = attrs.field(default=8, validator=_check_positive)


def _accepted(method: Callable[..., Any], options: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``options`` that ``method`` takes (all of them if it takes ``**kwargs``)."""
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return options
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return options
    return {key: value for key, value in options.items() if key in parameters}


def _decoding(options: GenerationOptions, seed: int) -> dict[str, Any]:
    return {
        "max_new_tokens": options.max_new_tokens,
        "temperature": options.temperature,
        "top_p": options.top_p,
        "seed": seed,
    }


def _pending(problems: Mapping[str, Problem], samples_path: Path, n_samples: int) -> tuple[list[tuple[str, int]], int]:
    """``(task_id, sample number)`` still to generate, and how many exist already."""
    if n_samples < 1:
        raise UsageError(f"--n-samples must be at least 1, got {n_samples}")
    have: Counter[str] = Counter()
    if samples_path.exists():
        for record in read_records(samples_path):
            have[str(record.get("task_id"))] += 1
    work = [(task_id, i) for task_id in problems for i in range(have[task_id], n_samples)]
    existing = sum(min(have[t], n_samples) for t in problems)
    return work, existing


def _generate_into(
    problems: Mapping[str, Problem],
    samples_path: str | Path,
    n_samples: int,
    options: GenerationOptions,
    quiet: bool,
    label: str,
    length: Callable[[Problem], int],
    run_batch: Callable[[list[Problem], int], list[tuple[str, str]]],
) -> int:
    """The samples still missing, generated in batches and appended as each batch is done.

    ``run_batch(problems, seed)`` returns a ``(completion, raw)`` pair per
    problem. Work is sorted by ``length`` so similar lengths batch with little
    padding; the seed is per position, so sampling is reproducible across
    resumed runs.
    """
    samples_path = Path(samples_path)
    work, existing = _pending(problems, samples_path, n_samples)
    work.sort(key=lambda item: length(problems[item[0]]))
    with Appender(samples_path) as out:
        bar = progress_bar(existing + len(work), existing, label, quiet)
        try:
            for start in range(0, len(work), options.batch_size):
                batch = work[start : start + options.batch_size]
                results = run_batch([problems[task_id] for task_id, _ in batch], options.seed + existing + start)
                for (task_id, number), (completion, raw) in zip(batch, results, strict=True):
                    out.write({"task_id": task_id, "sample": number, "completion": completion, "raw": raw})
                bar.update(len(batch))
        finally:
            bar.close()
    return len(work)


def generate_completions(
    model: Any,
    problems: Mapping[str, Problem],
    samples_path: str | Path,
    n_samples: int = 1,
    options: GenerationOptions | None = None,
    quiet: bool = False,
) -> int:
    """Complete each HumanEval prompt ``n_samples`` times into ``samples_path``; returns how many were new.

    The prompt goes to the model exactly as the benchmark has it (not
    stripped: Meta's evaluation keeps its trailing newline and indentation).
    Prompts are batched across problems; each batch is appended to the file
    as soon as it is generated, so an interrupted run loses at most one batch.
    """
    options = options or GenerationOptions()

    def run_batch(batch: list[Problem], seed: int) -> list[tuple[str, str]]:
        prompts = [problem.prompt for problem in batch]
        kwargs = {**_decoding(options, seed), "stop": STOP_SEQUENCES}
        texts = model.generate(prompts, **_accepted(model.generate, kwargs))
        if len(texts) != len(prompts):
            raise UsageError(f"the model returned {len(texts)} completions for {len(prompts)} prompts")
        return [(postprocess_completion(text, prompt), text) for prompt, text in zip(prompts, texts, strict=True)]

    return _generate_into(problems, samples_path, n_samples, options, quiet, "generating",
                          lambda problem: len(problem.prompt), run_batch)


def _infill_batch(model: Any, pairs: list[tuple[str, str]], kwargs: dict[str, Any]) -> list[str]:
    """Infill several (prefix, suffix) pairs, in one batch when the model object allows it.

    ``codellama_zoo``'s ``Model.infill`` takes one pair; its ``encode_infill``,
    ``settings`` and ``decoder`` let the same prompts run as one left-padded
    batch. Any other object is asked pair by pair.
    """
    parts: list[Any] = [getattr(model, name, None) for name in ("encode_infill", "settings", "decoder")]
    if len(pairs) > 1 and all(callable(part) for part in parts) and hasattr(model, "lm"):
        encode, settings, decoder = parts
        encoded = [encode(prefix, suffix) for prefix, suffix in pairs]
        stop_ids = encoded[0][1]
        results = decoder(settings(**kwargs)).generate(
            model.lm, model.tokenizer, [ids for ids, _ in encoded], stop_ids=stop_ids
        )
        return [result.text for result in results]
    return [model.infill(prefix, suffix, **_accepted(model.infill, kwargs)) for prefix, suffix in pairs]


def generate_infills(
    model: Any,
    problems: Mapping[str, Problem],
    samples_path: str | Path,
    split: str,
    n_samples: int = 1,
    options: GenerationOptions | None = None,
    quiet: bool = False,
) -> int:
    """Fill each problem's middle ``n_samples`` times into ``samples_path``; returns how many were new.

    Batches of ``options.batch_size`` are appended as soon as they are done.
    """
    options = options or GenerationOptions()

    def run_batch(batch: list[Problem], seed: int) -> list[tuple[str, str]]:
        pairs = [(problem.prompt, problem.suffix or "") for problem in batch]
        texts = _infill_batch(model, pairs, _decoding(options, seed))
        if len(texts) != len(pairs):
            raise UsageError(f"the model returned {len(texts)} infills for {len(pairs)} prompts")
        return [(postprocess_infill(text, split), text) for text in texts]

    return _generate_into(problems, samples_path, n_samples, options, quiet, "infilling",
                          lambda problem: len(problem.prompt) + len(problem.suffix or ""), run_batch)
