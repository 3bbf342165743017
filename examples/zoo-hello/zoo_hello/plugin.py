"""Registers the `hello-llama` family and a `zoo hello` command.

Shows the two things most plugins do: add models through ``register_models``
and add a subcommand through ``register_commands``.
"""

from __future__ import annotations

import click

from codellama_zoo import LlamaConfig, ModelSpec, hookimpl
from codellama_zoo.hookspecs import Register

# A tiny Llama-architecture model: 4 layers, 256 wide, grouped-query attention.
HELLO_CONFIG = LlamaConfig(
    dim=256, n_layers=4, n_heads=8, n_kv_heads=2, vocab_size=32000, multiple_of=64,
    rope_theta=1e6, max_seq_len=2048,
)


@hookimpl
def register_models(register: Register) -> None:
    register(
        ModelSpec(
            name="hello-llama-tiny",
            family="hello",
            size="tiny",
            variant="base",
            config=HELLO_CONFIG,
            aliases=("hello:tiny",),
            capabilities=frozenset({"completion"}),
            context_length=2048,
            description="A tiny Llama-architecture model from the zoo-hello example plugin",
            source="examples/zoo-hello (made up for the example)",
        )
    )


@hookimpl
def register_commands(cli: click.Group) -> None:
    @cli.command("hello")
    @click.argument("name", default="world")
    def hello(name: str) -> None:
        """Say hello (added by the zoo-hello example plugin)."""
        click.echo(f"Hello, {name}, from a codellama-zoo plugin!")
