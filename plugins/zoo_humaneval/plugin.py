"""Registers the HumanEval evaluations and the ``zoo eval`` commands."""

from __future__ import annotations

from typing import Any

import click

from codellama_zoo import hookimpl
from codellama_zoo.hookspecs import Register
from codellama_zoo.specs import EvaluationSpec


def _run_humaneval(model: Any, **options: Any) -> Any:
    from zoo_humaneval.evaluate import run_humaneval

    return run_humaneval(model, **options)


def _run_infilling(model: Any, **options: Any) -> Any:
    from zoo_humaneval.evaluate import run_humaneval_infilling

    return run_humaneval_infilling(model, **options)


@hookimpl
def register_evaluations(register: Register) -> None:
    register(EvaluationSpec(
        name="humaneval",
        description="HumanEval (164 Python problems): completion, sandboxed execution, unbiased pass@k",
        run=_run_humaneval,
        requires=("completion",),
    ))
    register(EvaluationSpec(
        name="humaneval-infilling",
        description="HumanEval-infilling (single-line, multi-line, random-span splits): fill-in-the-middle, pass@k",
        run=_run_infilling,
        requires=("infill",),
    ))


@hookimpl
def register_commands(cli: click.Group) -> None:
    from zoo_humaneval.cli import build_eval_group

    cli.add_command(build_eval_group())
