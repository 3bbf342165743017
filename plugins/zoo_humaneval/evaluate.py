"""End-to-end evaluations: resolve the model, check capabilities, generate, execute, summarize.

These are the ``run`` callables of the registered :class:`EvaluationSpec`s
and what ``zoo eval humaneval`` / ``humaneval-infilling`` call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from codellama_zoo.errors import BackendUnavailableError, CapabilityError
from zoo_humaneval.execute import execute_samples
from zoo_humaneval.generate import GenerationOptions, generate_completions, generate_infills
from zoo_humaneval.passk import DEFAULT_KS
from zoo_humaneval.problems import Problem, load_humaneval, load_infilling
from zoo_humaneval.records import write_json
from zoo_humaneval.sandbox import SandboxLimits


@attrs.frozen(kw_only=True)
class LoadOptions:
    """How to load the model; passed to ``codellama_zoo.load``."""

    weights: str | None = None
    backend: str | None = None
    device: str | None = None
    dtype: str | None = None

    def kwargs(self) -> dict[str, Any]:
        return {key: value for key, value in attrs.asdict(self).items() if value is not None}


def check_capabilities(model_name: str, requires: tuple[str, ...]) -> None:
    """Refuse a model that lacks a capability, before any weight is read."""
    from codellama_zoo.registry import get_registry

    spec = get_registry().model(model_name)
    missing = [cap for cap in requires if not spec.supports(cap)]
    if missing:
        able = [s.name for s in get_registry().models if all(s.supports(c) for c in requires)]
        raise CapabilityError(
            f"model {spec.name!r} cannot {', '.join(missing)} (its capabilities: {', '.join(sorted(spec.capabilities))}); "
            f"use one of: {', '.join(able) or 'none registered'}"
        )


def load_model(model_name: str, load: LoadOptions) -> Any:
    import codellama_zoo

    loader = getattr(codellama_zoo, "load", None)
    if loader is None:
        raise BackendUnavailableError(
            "codellama_zoo.load is not available in this installation, so no model can generate; "
            "run `zoo eval execute` on samples produced elsewhere"
        )
    return loader(model_name, **load.kwargs())


def _limit(problems: dict[str, Problem], limit: int | None) -> dict[str, Problem]:
    if limit is None:
        return problems
    return dict(list(problems.items())[:limit])


def _finish(output: Path, samples: Path, problems: dict[str, Problem], total: int, workers: int,
            limits: SandboxLimits, quiet: bool, meta: dict[str, Any], ks: tuple[int, ...]) -> dict[str, Any]:
    summary = execute_samples(
        samples, problems, results_path=output / "results.jsonl", summary_path=output / "summary.json",
        workers=workers, limits=limits, total_problems=total, quiet=quiet, ks=ks,
    )
    summary = {**meta, **summary}
    write_json(output / "summary.json", summary)
    return summary


def _checked_name(model: str | Any, capability: str) -> str:
    """The model's display name; a registered name lacking ``capability`` is refused before any loading."""
    if isinstance(model, str):
        check_capabilities(model, (capability,))
        return model
    return str(getattr(model, "name", type(model).__name__))


def _loaded(model: str | Any, load: LoadOptions | None) -> Any:
    """A registered name is loaded here; an already loaded model object is used as it is."""
    return load_model(model, load or LoadOptions()) if isinstance(model, str) else model


def run_humaneval(
    model: str | Any,
    *,
    output: str | Path,
    n_samples: int = 1,
    options: GenerationOptions | None = None,
    load: LoadOptions | None = None,
    limit: int | None = None,
    workers: int = 4,
    limits: SandboxLimits | None = None,
    ks: tuple[int, ...] = DEFAULT_KS,
    quiet: bool = False,
) -> dict[str, Any]:
    """HumanEval: ``model`` is a registered name (loaded here) or an already loaded model object."""
    options = options or GenerationOptions()
    problems = _limit(load_humaneval(), limit)
    output = Path(output)
    samples = output / "samples.jsonl"
    name = _checked_name(model, "completion")
    model = _loaded(model, load)
    generate_completions(model, problems, samples, n_samples, options, quiet)
    meta = {"benchmark": "humaneval", "model": name, "n_samples": n_samples, **attrs.asdict(options)}
    return _finish(output, samples, problems, len(problems), workers, limits or SandboxLimits(), quiet, meta, ks)


def run_humaneval_infilling(
    model: str | Any,
    *,
    split: str,
    output: str | Path,
    data_dir: str | Path | None = None,
    n_samples: int = 1,
    options: GenerationOptions | None = None,
    load: LoadOptions | None = None,
    limit: int | None = None,
    workers: int = 4,
    limits: SandboxLimits | None = None,
    ks: tuple[int, ...] = DEFAULT_KS,
    quiet: bool = False,
) -> dict[str, Any]:
    """HumanEval-infilling on one split; an infill-incapable model is refused before loading."""
    options = options or GenerationOptions()
    name = _checked_name(model, "infill")
    problems = _limit(load_infilling(split, data_dir), limit)
    output = Path(output)
    samples = output / "samples.jsonl"
    model = _loaded(model, load)
    generate_infills(model, problems, samples, split, n_samples, options, quiet)
    meta = {"benchmark": f"humaneval-infilling:{split}", "model": name, "n_samples": n_samples,
            **attrs.asdict(options)}
    return _finish(output, samples, problems, len(problems), workers, limits or SandboxLimits(), quiet, meta, ks)
