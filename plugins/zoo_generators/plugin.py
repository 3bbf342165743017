"""Registers the greedy and sampling generators, plain completion, and `zoo run` / `zoo download`."""

from __future__ import annotations

from typing import Any

from codellama_zoo import hookimpl
from codellama_zoo.hookspecs import Register
from codellama_zoo.specs import GeneratorSpec, PromptFormatSpec


def _greedy(config: Any) -> Any:
    from zoo_generators.loop import Decoder
    from zoo_generators.sampling import Greedy

    return Decoder(config, Greedy(config))


def _sample(config: Any) -> Any:
    from zoo_generators.loop import Decoder
    from zoo_generators.sampling import Sampler

    return Decoder(config, Sampler(config))


def build_completion(tokenizer: Any, text: str) -> list[int]:
    """Plain completion: BOS then the text, as base models were trained."""
    return list(tokenizer.encode(text, bos=True))


@hookimpl
def register_generators(register: Register) -> None:
    register(GeneratorSpec(name="greedy", description="the most likely token each step", factory=_greedy))
    register(
        GeneratorSpec(
            name="sample",
            description="sampling with temperature, top-k, top-p, min-p and a seed",
            factory=_sample,
        )
    )


@hookimpl
def register_prompt_formats(register: Register) -> None:
    register(
        PromptFormatSpec(
            name="completion",
            kind="completion",
            description="<s> followed by the text; the model continues it",
            build=build_completion,
        )
    )


@hookimpl
def register_commands(cli: Any) -> None:
    from zoo_generators.commands import download_command, run_command

    cli.add_command(run_command)
    cli.add_command(download_command)
