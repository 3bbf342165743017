"""Registers the codelet models (base and instruct) and the ``zoo codelet`` commands."""

from __future__ import annotations

import functools

import attrs
import click

from codellama_zoo import hookimpl
from codellama_zoo.hookspecs import Register
from codellama_zoo.specs import ModelSpec
from zoo_codelet.presets import (
    BASE_NAME,
    CODELET_CONFIG,
    FAMILY,
    INSTRUCT_NAME,
    SEQ_LENGTH,
    SIZE,
    shipped_weights,
)

_SOURCE = "trained by codellama-zoo: zoo/zoo_codelet/configs/*.yaml, `make default-model`; see docs/model-card-codelet.md"


def codelet_specs() -> list[ModelSpec]:
    base = ModelSpec(
        name=BASE_NAME,
        family=FAMILY,
        size=SIZE,
        variant="base",
        config=CODELET_CONFIG,
        aliases=("codelet", "zoo-codelet"),
        tokenizer="sentencepiece",
        prompt_format="completion",
        infill_formats=("infill-psm", "infill-spm"),
        capabilities=frozenset({"completion", "infill"}),
        context_length=SEQ_LENGTH,
        published_params=CODELET_CONFIG.param_count() / 1e9,
        description="zoo-codelet 5M (not Code Llama): Code Llama architecture, pretrained with FIM on the "
        "Python standard library",
        weights=functools.partial(shipped_weights, BASE_NAME),
        source=_SOURCE,
    )
    instruct = attrs.evolve(
        base,
        name=INSTRUCT_NAME,
        variant="instruct",
        aliases=("codelet-instruct",),
        prompt_format="codellama-instruct",
        capabilities=frozenset({"completion", "infill", "chat"}),
        description="zoo-codelet 5M Instruct (not Code Llama): the base model finetuned on docstring → "
        "function pairs from the standard library; [INST] chat; the default model of `zoo run`",
        weights=functools.partial(shipped_weights, INSTRUCT_NAME),
    )
    return [base, instruct]


@hookimpl
def register_models(register: Register) -> None:
    for spec in codelet_specs():
        register(spec)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from zoo_codelet.commands import codelet_group

    cli.add_command(codelet_group)
