"""Registers the datasets and the ``zoo data`` commands.

Imports nothing heavy at module level: reader modules are imported only when
the registry first collects datasets, so ``zoo --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from codellama_zoo import hookimpl
from codellama_zoo.hookspecs import Register
from codellama_zoo.specs import DatasetSpec


def _resolve(module: str, name: str) -> Callable[..., Any]:
    """``zoo_datasets.<module>.<name>``, imported only when datasets are first looked up."""
    import importlib

    function: Callable[..., Any] = getattr(importlib.import_module(f"zoo_datasets.{module}"), name)
    return function


def dataset_specs() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            name="wikitext",
            description="WikiText .tokens files → articles, BOS/EOS-delimited and packed into seq_length+1 samples",
            read=_resolve("wikitext", "read"),
            preprocess=_resolve("code", "preprocess"),
            options={
                "documents": "article (default) or paragraph (the seed's unit: headings dropped)",
                "fim_rate": "share of documents turned into fill-in-the-middle form (default 0)",
                "spm_rate": "share of FIM documents in SPM order (default 0.5)",
                "seed": "random seed for FIM (default 0)",
            },
        ),
        DatasetSpec(
            name="code-alpaca",
            description="code-alpaca instruction JSON → conversations → input_ids + prompt-masked labels",
            read=_resolve("alpaca", "read"),
            preprocess=_resolve("alpaca", "preprocess"),
            options={"template": "vicuna (default, as the seed) or inst (Code Llama Instruct [INST] ... [/INST])"},
        ),
        DatasetSpec(
            name="code",
            description="a directory tree of source files → packed samples, optional FIM (PSM/SPM)",
            read=_resolve("code", "read"),
            preprocess=_resolve("code", "preprocess"),
            options={
                "extensions": "comma-separated file extensions (default .py)",
                "max_files": "read at most this many files (sorted order)",
                "fim_rate": "share of documents turned into fill-in-the-middle form (default 0)",
                "spm_rate": "share of FIM documents in SPM order (default 0.5)",
                "seed": "random seed for FIM (default 0)",
            },
        ),
        DatasetSpec(
            name="docstrings",
            description="Python source → (docstring + signature → function code) instruction pairs, split by file",
            read=_resolve("docstrings", "read"),
            preprocess=_resolve("docstrings", "preprocess"),
            options={
                "split": "train (default), heldout or all: files are split by a hash of their relative path",
                "heldout_percent": "share of files held out, in percent (default 5)",
                "skip_dirs": "comma-separated directory names to skip (default test,tests,idle_test,...)",
                "template": "inst (default, Code Llama Instruct [INST] ... [/INST]) or vicuna",
                "drop_truncated": "drop pairs longer than seq_length+1 tokens instead of truncating (default true)",
            },
        ),
        DatasetSpec(
            name="humaneval",
            description="the 164 HumanEval problems: prompt (masked) → canonical solution",
            read=_resolve("humaneval", "read"),
            preprocess=_resolve("humaneval", "preprocess"),
            options={},
        ),
    ]


@hookimpl
def register_datasets(register: Register) -> None:
    for spec in dataset_specs():
        register(spec)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from zoo_datasets.cli import data_group

    cli.add_command(data_group)
